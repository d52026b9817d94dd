"""The training loop: one visible `for` loop, a `History` of what it saw, and the two baselines.

A learner (the protocol in helpers/learners.py) holds a model and its optimizers and has
`step(x, y) -> (loss, logits)`. `train` draws batches, applies the learning-rate schedule to every
optimizer the learner has, evaluates on the full test set now and then, and records a `History`.
Backprop and the paper's "no backprop" baseline live here; every other method is built by
`learners.make(name, ...)`. Used by every notebook that trains (01-09); the recurrent loop
(helpers/rnn.py) records the same `History` and raises the same `DivergenceError`.
"""
import functools
import hashlib
import os
import pathlib
import random
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import amp_dtype, checkpoint_folder, runs_folder
from .data import random_batches
from .probe import update_metrics


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite. `.iteration` is the first bad step; `.history` what came before."""

    def __init__(self, message, iteration, history):
        super().__init__(message)
        self.iteration = iteration
        self.history = history


@dataclass
class History:
    """What a run recorded at each evaluation point. Accuracies are fractions in [0, 1].

    `train_loss` and `train_accuracy` average the training batches since the previous point; `extra`
    holds a learner's own measurements (e.g. how close synthetic gradients are to the true ones), one
    value per point; `meta` what is said once about the run (e.g. a recurrent run's window and the
    longest copy length it solved).
    """

    method: str
    layers: int
    iteration: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def label(self):
        return f"{self.method} ({self.layers} layers)"

    @property
    def final_test_accuracy(self):
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")

    def as_dict(self):
        return asdict(self)


@torch.no_grad()
def evaluate(model, x, y, batch_size=256):
    """Accuracy (a fraction) of `model` on all of (x, y), in eval mode (BatchNorm uses running stats).
    Batches of 256: on a CPU the CNN's convolutions run about twice as fast as in batches of 2,000 (the
    activations stay in cache); the FCN does not care."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)


def Adam(params, lr, **options):
    """Adam as every learner in helpers/ builds it: `torch.optim.Adam` with `foreach=True`.

    The default on a CPU updates one parameter tensor at a time in Python; `foreach` hands the whole list
    to one call per operation. Same arithmetic in the same order, so the same numbers to the last bit
    (tests/test_training.py checks it), with fewer Python round trips per step where one optimizer holds
    many tensors: DNI, cDNI and DGL put every module in one (`make bench` shows the step times).
    On a GPU `foreach` is already torch's default. Pass `optimizer=torch.optim.Adam` to a learner for the
    per-tensor loop, e.g. to compare."""
    return torch.optim.Adam(params, lr=lr, foreach=True, **options)


class Backprop:
    """Ordinary training: one loss, one backward pass through every block, one optimizer."""

    method = "backprop"

    def __init__(self, model, lr, optimizer=Adam):
        self.model = model
        self.optimizers = [optimizer(model.parameters(), lr=lr)]

    def step(self, x, y):
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[0].step()
        return loss, logits


class NoBackprop:
    """The paper's "no backprop" baseline: only the output layer learns.

    The hidden blocks keep their random initial weights (their BatchNorm statistics still track the data),
    so this measures what a linear classifier on random features can do: the floor that any method which
    trains the hidden layers should beat (Jaderberg et al. 2016, table 1).
    """

    method = "nobackprop"

    def __init__(self, model, lr):
        self.model = model
        self.optimizers = [Adam(model[-1].parameters(), lr=lr)]

    def step(self, x, y):
        with torch.no_grad():
            features = self.model[:-1](x)
        logits = self.model[-1](features)
        loss = F.cross_entropy(logits, y)
        self.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[0].step()
        return loss, logits


def learning_rate(size, iteration):
    """The schedule's learning rate at `iteration` (1-based): divided by 10 after each milestone."""
    return size.lr * 0.1 ** sum(iteration > m for m in size.milestones())


def train(learner, data, size, seed=0, progress=True, desc=None, augment=None, amp=False, checkpoint=None,
          reuse=False, probe_update=False):
    """Train `learner` on `data` for `size.iterations` steps and return its `History`.

    augment: a function applied to each training batch of images on the device (e.g.
    `data.random_crop_flip`). amp: run each step under autocast at `config.amp_dtype(device)` (bfloat16
    where the device computes it fast, else float32, i.e. no autocast); parameters and optimizer state
    stay float32.

    checkpoint: a folder (default at the paper size: `config.checkpoint_folder()`; False: never). Every
    `size.checkpoint_every` iterations the whole run (learner, optimizers, random states, history) is
    saved there, atomically; called again with the same learner, data, size and seed, `train` resumes
    from the last checkpoint and returns the same history an uninterrupted run would have.

    reuse: never train the same run twice. If this exact run (the learner's configuration and initial
    weights, the data, the size, the seed, the helpers code, torch, the device and the thread count) was
    trained before, it is loaded from `config.runs_folder()` (learner state and history, a line says so);
    otherwise it is trained and stored there. Anything that could change a number gives another key.

    probe_update: also record, at each evaluation, `probe.update_metrics` (how the update each hidden block
    applies compares with backprop's from the same state, and the gradient cosine's baselines; notebooks 03-05,
    08). It works on copies and restores the random state, so every other number of the run stays the same.

    The batch order comes from `seed` alone, so two learners trained with one seed see the same batches.
    Losses are kept on the device between evaluation points (no per-step synchronisation); at each point
    they are checked, and a NaN or infinity raises `DivergenceError` naming the first bad iteration.
    """
    layers = len(learner.model)
    history = History(learner.method, layers)
    generator = torch.Generator().manual_seed(seed)
    batches = random_batches(len(data.x_train), size.batch_size, data.x_train.device, generator)
    losses = torch.zeros(size.eval_every, device=data.x_train.device)
    correct = torch.zeros(size.eval_every, device=data.x_train.device)
    dtype = amp_dtype(data.x_train.device) if amp else torch.float32
    more = ("probe_update",) if probe_update else ()     # a run that records more is another run
    saver = Checkpoints.for_reuse(learner, data, size, seed, *more) if reuse else \
        Checkpoints.for_run(checkpoint, learner, size, seed, *more)
    begin, elapsed = 1, 0.0
    if saver is not None and saver.exists():
        begin, history, elapsed = saver.resume(learner)
        for _ in range(begin - 1):             # the batch order is replayed, not stored
            next(batches)
    model = learner.model
    model.train()
    current_lr = size.lr if begin == 1 else learning_rate(size, begin - 1)   # resumed optimizers keep theirs
    start = time.perf_counter() - elapsed
    quiet = not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")   # CI sets TQDM_DISABLE=1
    bar = tqdm(range(begin, size.iterations + 1), desc=desc or history.label, leave=False, disable=quiet,
               initial=begin - 1, total=size.iterations)
    for iteration in bar:
        lr = learning_rate(size, iteration)
        if lr != current_lr:
            for optimizer in learner.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            current_lr = lr
        index = next(batches)
        x, y = data.x_train[index], data.y_train[index]
        if augment is not None:
            x = augment(x)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss, logits = learner.step(x, y)
        slot = (iteration - 1) % size.eval_every
        losses[slot] = loss.detach()
        correct[slot] = (logits.detach().argmax(1) == y).float().mean()
        if slot == size.eval_every - 1 or iteration == size.iterations:
            window = losses[:slot + 1]
            finite = torch.isfinite(window)
            if not finite.all():
                first = iteration - slot + int((~finite).nonzero()[0])
                raise DivergenceError(
                    f"{history.label} diverged: the training loss was {window[~finite][0].item()} at iteration "
                    f"{first:,} (lr {current_lr:g}). Try a smaller learning rate; the history up to the "
                    "previous evaluation is in this error's .history.", first, history)
            history.iteration.append(iteration)
            history.train_loss.append(window.mean().item())
            history.train_accuracy.append(correct[:slot + 1].mean().item())
            history.test_accuracy.append(evaluate(model, data.x_test, data.y_test))
            history.seconds.append(time.perf_counter() - start)
            if hasattr(learner, "measure"):
                for name, value in learner.measure(x, y).items():
                    history.extra.setdefault(name, []).append(value)
            if probe_update:
                for name, value in update_metrics(learner, x, y).items():
                    history.extra.setdefault(name, []).append(value)
            bar.set_postfix(test_acc=f"{history.test_accuracy[-1]:.4f}")
            if saver is not None and saver.due(iteration):
                saver.save(learner, history, iteration, time.perf_counter() - start)
    return history


class Checkpoints:
    """Saving and resuming one run of `train`: the learner with everything it holds (model, synthesizers,
    optimizers, their random generators and counters), every random state, the history, the iteration.

    The file's name carries the method, the depth, the run size, the seed and a fingerprint of the initial
    parameters, so a checkpoint is only ever resumed by the run that wrote it (another synthesizer depth
    or learning rate gives another name). Written to a temporary file and renamed: a disconnect during a
    save leaves the previous checkpoint whole.
    """

    def __init__(self, path, every, reuse=False):
        self.path, self.every, self.reuse = pathlib.Path(path), every, reuse

    @staticmethod
    def _key(learner, size, seed, *more):
        shapes = [(type(learner).__name__, tuple(p.shape), round(float(p.detach().double().sum()), 6))
                  for p in learner_parameters(learner)]
        options = {k: v for k, v in sorted(vars(learner).items()) if isinstance(v, (int, float, str, bool))}
        options["lr"] = [group["lr"] for optimizer in learner.optimizers for group in optimizer.param_groups]
        probe = getattr(learner, "probe", None)      # what measure() looks at is part of the run, too
        options["probe"] = None if probe is None else [(tuple(t.shape), round(float(t.double().sum()), 6)) for t in probe]
        key = hashlib.sha256(repr((shapes, options, asdict(size), seed) + more).encode()).hexdigest()[:12]
        return f"{learner.method}_{len(learner.model)}layers_{size.name}_seed{seed}_{key}.pt"

    @classmethod
    def for_run(cls, folder, learner, size, seed, *more):
        if folder is False or (folder is None and not size.checkpoint_every):
            return None
        every = size.checkpoint_every or size.eval_every
        if every % size.eval_every:
            raise ValueError(f"checkpoint_every ({every}) must be a multiple of eval_every ({size.eval_every}).")
        folder = checkpoint_folder() if folder is None else pathlib.Path(folder)
        return cls(folder / cls._key(learner, size, seed, *more), every)

    @classmethod
    def for_reuse(cls, learner, data, size, seed, *more):
        """The stored copy of a finished run, keyed by everything that could change one of its numbers."""
        x = data.x_train
        identity = (data.name, tuple(x.shape), round(float(x[:256].double().sum()), 6), len(data.x_test))
        machine = (torch.__version__, x.device.type, torch.get_num_threads())
        name = cls._key(learner, size, seed, identity, machine, code_version(), *more)
        return cls(runs_folder() / name, size.iterations, reuse=True)

    def exists(self):
        return self.path.exists()

    def due(self, iteration):
        return iteration % self.every == 0

    def save(self, learner, history, iteration, seconds):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        attributes = {k: v for k, v in learner.__dict__.items() if not isinstance(v, _CODE)}   # state, not code
        state = {"learner": attributes, "history": history, "iteration": iteration, "seconds": seconds,
                 "rng": _random_states()}
        handle = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".tmp",
                                             delete=False)
        try:
            with handle:
                torch.save(state, handle)
            os.replace(handle.name, self.path)
        except BaseException:
            os.unlink(handle.name)
            raise

    def resume(self, learner):
        """Load the saved state into `learner` (its attributes are replaced by the saved ones); returns
        (next iteration, history so far, seconds so far)."""
        try:
            state = torch.load(self.path, map_location=None, weights_only=False)
        except Exception as error:
            raise RuntimeError(f"the checkpoint {self.path} cannot be read ({error}); delete it to start the run "
                               "afresh.") from error
        learner.__dict__.update(state["learner"])
        _set_random_states(state["rng"])
        if self.reuse:
            print(f"{learner.method} ({len(learner.model)} layers): loaded from {self.path.name}, trained earlier with "
                  "the same code, data, size and seed (delete the file to train again)")
        else:
            print(f"resumed {learner.method} from {self.path.name} at iteration {state['iteration']:,}")
        return state["iteration"] + 1, state["history"], state["seconds"]


_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


@functools.lru_cache(maxsize=1)
def code_version():
    """A hash of every helpers/*.py file: a stored run is reused only by the code that trained it."""
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def learner_parameters(learner):
    """Every parameter a learner trains (model, synthesizers, loss models, heads), once each: what its
    optimizers hold."""
    seen, out = set(), []
    for optimizer in learner.optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def _random_states():
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda_devices"] = torch.cuda.get_rng_state_all()
    return states


def _set_random_states(states):
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda_devices" in states:
        torch.cuda.set_rng_state_all(states["cuda_devices"])
