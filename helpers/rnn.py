"""Recurrent networks with synthetic gradients: truncated BPTT whose window boundary gets a predicted
gradient from the future (Jaderberg et al. 2016, the recurrent-network experiments and their figure).

An LSTM reads an endless stream in windows of T steps. Plain truncated BPTT carries the state (h, c)
from one window to the next but cuts the graph there, so no loss more than T steps ahead ever reaches a
state: the network cannot learn longer dependencies. With DNI, at the end of each window a synthesizer
M predicts the gradient of all *future* loss with respect to the boundary state s, and that prediction is
injected as the incoming gradient (scaled by 0.1, as in the paper and dni-pytorch).

Detach boundaries and targets, as `WindowedTrainer.backward` does them:
- the window starts from a *leaf* copy of the carried state (requires_grad), so after backward its
  `.grad` is the true gradient of this window's loss plus the injected gradient pushed back through the
  window: dL_window/ds_start + J^T (0.1 M(s_end)) / B;
- that is the bootstrapped target for M's prediction at s_start (the previous window's boundary), the
  same TD-like bootstrap as the feed-forward case (notebook 02). Because the injected term carries the 0.1,
  M learns a *discounted* sum of future gradients, each further window weighted 0.1 more: the scale acts
  as a discount factor (with scale 1 and an exact M this is full BPTT, which is what the oracle test checks);
- M predicts the per-example gradient (B x dL/ds for a batch-mean loss) and the injection divides by B,
  as every synthesizer in this series does (see helpers/synthesizers.py for why).
The optional auxiliary task (DNI + Aux) asks the LSTM, through a small linear head on its first output in
the window, to predict the synthetic gradient it will receive at the window's end (T-1 steps ahead); its
loss trains the LSTM and the head, so it shapes the LSTM's state, but it is kept out of the synthesizer's
target: M regresses onto the window's own gradient plus the injected future, as in plain DNI.
"""
import copy
import math
import os
import pathlib
import tempfile
import time
from collections import deque

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import config
from .probe import flat_cosine, forget_momentum
from .synthesizers import zero_output_mlp
from .tasks import CopyStream, TextStream
from .training import Adam, DivergenceError, History

LN2 = math.log(2.0)
METHODS = ("tbptt", "dni", "dni_aux")


class RecurrentModel(nn.Module):
    """One LSTM layer and a linear read-out. The state is one tensor s = [h, c] of shape (B, 2*hidden),
    so a synthesizer sees (and predicts a gradient for) both the output and the memory cell."""

    def __init__(self, inputs, outputs, hidden=128):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, outputs)

    @property
    def state_size(self):
        return 2 * self.hidden

    def initial_state(self, batch):
        weight = self.readout.weight
        return torch.zeros(batch, self.state_size, dtype=weight.dtype, device=weight.device)

    def forward(self, x, state):
        """x (B, T, inputs), state (B, 2H) -> logits (B, T, outputs), end state (B, 2H), LSTM outputs."""
        if x.dim() != 3 or state.shape != (x.shape[0], self.state_size):
            raise ValueError(f"expected x (B, T, features) and state (B, {self.state_size}), "
                             f"got {tuple(x.shape)} and {tuple(state.shape)}.")
        h, c = state.chunk(2, dim=1)
        outputs, (h, c) = self.lstm(x, (h[None].contiguous(), c[None].contiguous()))
        return self.readout(outputs), torch.cat([h[0], c[0]], dim=1), outputs


def bits_loss(logits, y, mask):
    """Copy tasks. Loss: binary cross-entropy (nats) summed over bits and scored steps, mean over the
    batch, so that a sequence's loss is the sum of its windows' losses. Also returns the batch-mean error
    of each step in bits (T,)."""
    per_step = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)
    return (per_step * mask).sum(1).mean(), per_step.detach().mean(0) / LN2


def char_loss(logits, y, mask):
    """Character model: cross-entropy of the next character, summed over steps, mean over the batch;
    and each step's batch-mean loss in bits per character."""
    per_step = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    return (per_step * mask).sum(1).mean(), per_step.detach().mean(0) / LN2


class WindowedTrainer:
    """Truncated BPTT in windows of `window` steps; `method` "tbptt", "dni" or "dni_aux".

    synthesizer: for DNI, a callable s -> per-example dL_future/ds; by default a zero-initialised linear
    map (or MLP, `hidden_layers`), trained on the bootstrapped target. Any other callable (the test's
    oracle) is used as given and not trained. scale: the factor on the injected synthetic gradient.
    """

    def __init__(self, model, window, method="tbptt", lr=1e-3, loss=bits_loss, scale=0.1, synthesizer=None,
                 hidden_layers=0, hidden=256, aux_weight=1.0, synthesizer_lr=None, optimizer=Adam):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if window < 1:
            raise ValueError(f"the window must be at least 1 step, got {window}.")
        self.model, self.window, self.method, self.loss, self.scale = model, window, method, loss, scale
        self.aux_weight = aux_weight
        size = model.state_size
        if method != "tbptt" and synthesizer is None:
            synthesizer = zero_output_mlp(size, size, hidden_layers, hidden).to(model.readout.weight)
        self.synthesizer = synthesizer if method != "tbptt" else None
        self.aux = None
        if method == "dni_aux":
            self.aux = nn.Linear(model.hidden, size).to(model.readout.weight)
            nn.init.zeros_(self.aux.weight)
            nn.init.zeros_(self.aux.bias)
        parameters = list(model.parameters()) + (list(self.aux.parameters()) if self.aux else [])
        self.optimizer = optimizer(parameters, lr=lr)
        self.learns_synthesizer = isinstance(self.synthesizer, nn.Module)
        self.synthesizer_optimizer = optimizer(self.synthesizer.parameters(), lr=synthesizer_lr or lr) if self.learns_synthesizer else None
        self.optimizers = [o for o in (self.optimizer, self.synthesizer_optimizer) if o is not None]
        self.state = None

    def reset(self, batch):
        self.state = self.model.initial_state(batch)

    def backward(self, x, y, mask):
        """Forward one window from the carried state and backpropagate into the parameters (gradients
        accumulate; no update). Returns (loss, per-step errors in bits, per-example gradient at the
        window's start state, that start state)."""
        batch = x.shape[0]
        if self.state is None or self.state.shape[0] != batch:
            self.reset(batch)
        start = self.state.detach().requires_grad_()          # a leaf: .grad = gradient reaching the window start
        logits, end, outputs = self.model(x, start)
        loss, errors = self.loss(logits, y, mask)
        total = loss
        aux_loss = None
        if self.synthesizer is not None:
            predicted = self.synthesizer(end.detach()).detach()        # per-example dL_future/ds_end
            total = total + (end * (self.scale * predicted / batch)).sum()   # end's incoming gradient
            if self.aux is not None:
                guess = self.aux(outputs[:, 0])                        # T-1 steps before the boundary
                aux_loss = self.aux_weight * F.mse_loss(guess, predicted)
        total.backward(retain_graph=aux_loss is not None)
        target = start.grad * batch    # the window's loss + the injected future: M's target, never the aux loss
        if aux_loss is not None:
            target = target.clone()
            aux_loss.backward()        # shapes the LSTM and trains the aux head; adds nothing to `target`
        self.state = end.detach()                                      # carried, cut from this graph
        return loss.detach(), errors, target, start.detach()

    def step(self, x, y, mask):
        """One window: update the LSTM (and aux head) at once, then the synthesizer towards the target
        at the window's start. Returns (loss, per-step errors in bits)."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss, errors, target, start = self.backward(x, y, mask)
        if not torch.isfinite(loss):
            raise DivergenceError(f"{self.method} (T={self.window}) diverged: the window loss is {loss.item()}",
                                  None, None)
        self.optimizer.step()
        if self.learns_synthesizer:
            synthesizer_loss = F.mse_loss(self.synthesizer(start), target)
            synthesizer_loss.backward()
            self.synthesizer_optimizer.step()
        return loss, errors


class Curriculum:
    """The copy tasks' curriculum: the sequence length N starts at `level` and goes up by one whenever
    the mean error over the last `episodes` episodes' scored steps at this level falls below `threshold`
    bits per character (vector). `solved` is the longest N that passed."""

    def __init__(self, threshold=0.15, episodes=10, level=1, outputs_per_length=1.0):
        self.threshold, self.episodes, self.level, self.outputs_per_length = threshold, episodes, level, outputs_per_length
        self.recent = deque(maxlen=self.needed())

    def needed(self):
        return max(1, round(self.episodes * self.level * self.outputs_per_length))

    @property
    def solved(self):
        return self.level - 1

    def update(self, errors, mask, levels):
        """Feed one window's per-step errors; returns True when the level went up."""
        scored = errors[(mask > 0) & (levels == self.level)]
        self.recent.extend(scored.tolist())
        if len(self.recent) == self.recent.maxlen and sum(self.recent) / len(self.recent) < self.threshold:
            self.level += 1
            self.recent = deque(maxlen=self.needed())
            return True
        return False


def quiet():
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def train_windows(trainer, stream, steps, log_every=100, curriculum=None, desc=None, progress=True, probe=None,
                  align=False, evaluate=None):
    """Train `trainer` on `stream` for `steps` windows of `trainer.window` steps: the one loop behind the
    copy tasks and the character model. Returns a `training.History`:

    - iteration: the window steps at which it logged; train_loss: the mean error in bits per scored step
      (per vector for the copy tasks, per character for text) over the windows since the last log;
    - extra["level"] (with a curriculum): the copy length being trained at each log;
    - meta: the window, "level_at" (window step each level was reached) and "solved" (longest length
      passed) with a curriculum; `seconds` the wall time at each log;
    - extra["cos_future"] (DNI with a `probe` = (x, y, mask), a stretch several windows long, or a function
      of the current copy length that returns one): at each log, the mean whole-batch cosine between the
      synthesizer's prediction at the probe's window boundaries and the true discounted future gradient
      there (`synthetic_gradient_cosine`; measured on a copy of nothing, never learned from);
    - with `align` and a `probe` (any method), extra["upd_cos"], ["upd_step_cos"] (and, for DNI,
      ["upd_step_cos_cut"]) at each log: `update_alignment` on the probe's stretch, on copies;
    - with `evaluate` (a function of the model returning {name: number}; the character model's held-out bits per
      character), extra[name] at each log.

    A NaN or infinite loss raises `training.DivergenceError` naming the window step.
    """
    history = History(trainer.method, 1)
    history.meta.update(window=trainer.window)
    if curriculum is not None:
        history.meta["level_at"] = [0]
    weight = trainer.model.readout.weight      # streams are made on the CPU in float32; the model may be elsewhere
    device, dtype = weight.device, weight.dtype
    errors_sum, scored, start = 0.0, 0.0, time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=desc or f"{trainer.method} T={trainer.window}", leave=False,
               disable=not progress or quiet())
    for step in bar:
        x, y, mask, *levels = stream.next_window(trainer.window)   # the copy streams also give each step's level
        try:
            y = y.to(device, dtype) if y.is_floating_point() else y.to(device)
            _, errors = trainer.step(x.to(device, dtype), y, mask.to(device, dtype))
            errors = errors.cpu()
        except DivergenceError as error:
            raise DivergenceError(f"{error} at window step {step:,}; try a smaller learning rate. The history up to "
                                  "the previous log is in this error's .history.", step, history) from None
        errors_sum += float((errors * mask).sum())
        scored += float(mask.sum())
        if curriculum is not None and curriculum.update(errors, mask, levels[0]):
            stream.level = curriculum.level
            history.meta["level_at"].append(step)
        if step % log_every == 0 or step == steps:
            history.iteration.append(step)
            history.train_loss.append(errors_sum / max(scored, 1.0))
            history.seconds.append(time.perf_counter() - start)
            if curriculum is not None:
                history.extra.setdefault("level", []).append(curriculum.level)
                bar.set_postfix(level=curriculum.level)
            if probe is not None:
                stretch = probe(curriculum.level if curriculum else None) if callable(probe) else probe
                boundaries = stretch[0].shape[1] // trainer.window - 2
                if trainer.synthesizer is not None:
                    cosines = synthetic_gradient_cosine(trainer, *stretch, boundaries=boundaries)
                    history.extra.setdefault("cos_future", []).append(sum(cosines) / len(cosines))
                if align:
                    for key, value in update_alignment(trainer, *stretch, boundaries=boundaries).items():
                        history.extra.setdefault(key, []).append(value)
            if evaluate is not None:
                for key, value in evaluate(trainer.model).items():
                    history.extra.setdefault(key, []).append(value)
            errors_sum, scored = 0.0, 0.0
    if curriculum is not None:
        history.meta["solved"] = curriculum.solved
    return history


def train_copy(method, window, steps, hidden=128, batch=32, lr=config.RECURRENT_LR, repeat=False, max_repeats=3,
               bits=8, threshold=0.15, log_every=100, seed=0, progress=True, device=None, length=None, measure=False,
               align=False, checkpoint=None, checkpoint_every=None, **trainer_options):
    """An LSTM on the copy (or repeat-copy) stream for `steps` windows, on `device` (default:
    config.device()). With `length=None` the curriculum starts at length 1 and moves up; with a `length`
    every episode has that length and there is no curriculum. `measure=True` (DNI) records at each log the
    cosine of the synthetic gradient to the true discounted future gradient, on a fixed stretch of 64
    sequences at the length being trained (`probe_stretch`); `align=True` (any method) records there the update
    alignment with full BPTT (`update_alignment`). Returns (trainer, history); see
    `train_windows` for the history.

    `checkpoint` (a file; the long recurrent tier, scripts/recurrent.py): train in pieces of `checkpoint_every`
    windows (a multiple of `log_every`; default: one piece) and save the run whole after each piece. Called
    again with the same arguments after the process was killed, it resumes from the last piece saved and
    returns what an uninterrupted run returns, to the bit on a CPU (tests/test_recurrent_tier.py).

    Why pieces of `train_windows` rather than a hook inside its loop: that loop keeps nothing between log
    points but the trainer (model, synthesizer, optimizers, carried state), the stream (its generator and
    the part of an episode not yet read), the curriculum and the history. A piece that ends on a log point
    leaves exactly those, so they are saved as they are (torch.save of the objects; written to a temporary
    file and renamed, so a kill during a save leaves the previous piece whole) and the existing loop is used
    unchanged. The file also holds the arguments: a checkpoint is only ever resumed by the run that wrote it."""
    every = checkpoint_every or steps
    if every % log_every and every < steps:
        raise ValueError(f"checkpoint_every ({every}) must be a multiple of log_every ({log_every}), so that a piece "
                         "ends on a log point.")
    arguments = repr((method, window, steps, every, hidden, batch, lr, repeat, max_repeats, bits, threshold, log_every,
                      seed, length, measure, sorted(trainer_options.items())) + ((align,) if align else ()))
    torch.manual_seed(seed)
    stream = CopyStream(batch, bits, level=length or 1, repeat=repeat, max_repeats=max_repeats, seed=seed)
    model = RecurrentModel(stream.inputs, bits, hidden).to(device or config.device())
    trainer = WindowedTrainer(model, window, method, lr=lr, loss=bits_loss, **trainer_options)
    curriculum = None if length else Curriculum(threshold, outputs_per_length=(1 + max_repeats) / 2 if repeat else 1.0)
    probe = None
    if measure or align:
        def probe(level):
            return probe_stretch(level or length, window, bits, repeat, max_repeats)
    state = dict(trainer=trainer, stream=stream, curriculum=curriculum)
    history = _in_pieces(checkpoint, arguments, state, steps, every, lambda n: train_windows(
        state["trainer"], state["stream"], n, log_every, state["curriculum"], progress=progress, probe=probe,
        align=align))
    trainer = state["trainer"]
    history.meta["task"] = "repeat_copy" if repeat else "copy"
    history.meta["seed"] = seed
    if length:
        history.meta["length"] = length
    return trainer, history


def _in_pieces(checkpoint, arguments, state, steps, every, piece):
    """Train in pieces of `every` windows (`piece(n)` trains the next n and returns their history) up to `steps`,
    saving `state` (the objects a piece changes: {name: object}, updated in place on a resume) and the history so
    far to `checkpoint` after each piece, with `arguments` so that only the run that wrote it resumes from it.
    Returns the whole history. See `train_copy` for why pieces."""
    done, history = 0, None
    path = pathlib.Path(checkpoint) if checkpoint else None
    if path is not None and path.exists():
        saved = torch.load(path, map_location=None, weights_only=False)
        if saved["arguments"] != arguments:
            raise ValueError(f"the checkpoint {path} belongs to another run ({saved['arguments']}); delete it to "
                             "start this one afresh.")
        done, history = saved["done"], saved["history"]
        state.update({name: saved[name] for name in state})
        torch.set_rng_state(saved["rng"])
    while done < steps or history is None:
        n = min(every, steps - done)
        part = piece(n)
        history = part if history is None else _joined(history, part, done)
        done += n
        if path is not None:
            _save_atomically(dict(arguments=arguments, done=done, history=history, rng=torch.get_rng_state(), **state),
                             path)
    return history


def _joined(history, part, done):
    """`history` followed by `part`, a history of the next piece of the same run (its steps count from 1 and its
    seconds from 0 again)."""
    elapsed = history.seconds[-1] if history.seconds else 0.0
    history.iteration += [done + step for step in part.iteration]
    history.train_loss += part.train_loss
    history.seconds += [elapsed + s for s in part.seconds]
    for name, values in part.extra.items():
        history.extra.setdefault(name, []).extend(values)
    if "level_at" in part.meta:
        history.meta["level_at"] += [done + step for step in part.meta["level_at"][1:]]
        history.meta["solved"] = part.meta["solved"]
    return history


def _save_atomically(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save(state, handle)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def probe_stretch(level, window, bits=8, repeat=False, max_repeats=3, batch=64, windows=14, seed=10_007):
    """A fixed stretch of `windows` windows of the copy stream at `level`, the same for every run: where
    `synthetic_gradient_cosine` compares M's predictions with the true future gradient."""
    stream = CopyStream(batch, bits, level=level, repeat=repeat, max_repeats=max_repeats, seed=seed)
    return stream.next_window(window * windows)[:3]


@torch.no_grad()
def copy_accuracy(model, length, episodes=4, batch=64, bits=8, repeat=False, seed=1):
    """Fraction of output bits right on fresh episodes of length `length`, each from a zero state."""
    stream = CopyStream(batch, bits, level=length, repeat=repeat, seed=seed)
    device = model.readout.weight.device
    right = total = 0.0
    for _ in range(episodes):
        x, y, mask = (t.to(device) for t in stream.episode())
        logits, _, _ = model(x, model.initial_state(batch))
        hits = ((logits > 0).float() == y).float().mean(-1)
        right += float((hits * mask).sum())
        total += float(mask.sum()) * batch
    return right / total


def train_text(method, window, steps, train_codes, test_codes, vocab, hidden=128, batch=32, lr=config.TEXT_LR,
               log_every=100, seed=0, progress=True, device=None, valid_codes=None, checkpoint=None,
               checkpoint_every=None, **trainer_options):
    """A character-level language model on a text stream, in windows of `window` steps. Returns
    (trainer, history): training bits per character at each log (`train_windows`), and in history.meta
    the held-out bits per character ("test_bpc") and next-character accuracy ("test_accuracy") at the end.

    With `valid_codes` (the long recurrent tier): held-out bits per character on the validation and the test
    text at every log (extra "valid_bpc", "test_bpc"), and early stopping as the paper reports it: meta
    "stopped_at" (the window step of the lowest validation bits) and "test_bpc_stopped" (the test bits there).
    `checkpoint`, `checkpoint_every`: resumable in pieces, as `train_copy`."""
    every = checkpoint_every or steps
    if every % log_every and every < steps:
        raise ValueError(f"checkpoint_every ({every}) must be a multiple of log_every ({log_every}), so that a piece "
                         "ends on a log point.")
    arguments = repr((method, window, steps, every, hidden, batch, lr, log_every, seed, len(train_codes),
                      len(test_codes), None if valid_codes is None else len(valid_codes), vocab,
                      sorted(trainer_options.items())))
    torch.manual_seed(seed)
    stream = TextStream(train_codes, vocab, batch)
    model = RecurrentModel(vocab, vocab, hidden).to(device or config.device())
    trainer = WindowedTrainer(model, window, method, lr=lr, loss=char_loss, **trainer_options)

    def held_out(model):
        return {"valid_bpc": text_bpc(model, valid_codes, vocab)[0], "test_bpc": text_bpc(model, test_codes, vocab)[0]}

    state = dict(trainer=trainer, stream=stream)
    history = _in_pieces(checkpoint, arguments, state, steps, every, lambda n: train_windows(
        state["trainer"], state["stream"], n, log_every, desc=f"text {method} T={window}", progress=progress,
        evaluate=held_out if valid_codes is not None else None))
    trainer = state["trainer"]
    history.meta["task"] = "text"
    history.meta["test_bpc"], history.meta["test_accuracy"] = text_bpc(trainer.model, test_codes, vocab)
    if valid_codes is not None:
        history.meta["stopped_at"], history.meta["test_bpc_stopped"] = early_stopped(history)
    return trainer, history


def early_stopped(history):
    """(window step, test bits per character) at the log point with the lowest validation bits: early stopping
    as the paper reports Penn Treebank, choosing the point on validation, never on the test text."""
    valid = history.extra["valid_bpc"]
    best = valid.index(min(valid))
    return history.iteration[best], history.extra["test_bpc"][best]


def _worker(job):
    """One run of a grid, as `run_many` hands it to a worker process (or runs it here): job = ("copy", options for `train_copy`) or
    ("text", options for `train_text`). Uses one thread, as every run of notebook 08 does, so that a run
    gives the same numbers in a worker process as in the notebook's own. For a copy run it also measures
    the copy accuracy at the next length to solve. Returns (history, the trained model's state on the CPU)."""
    kind, options = job
    if torch.device(options.get("device") or config.device()).type == "cpu":
        torch.set_num_threads(1)
    options = dict(options, progress=False)
    if kind == "copy":
        trainer, history = train_copy(**options)
        history.meta["test_accuracy"] = copy_accuracy(trainer.model, history.meta.get("length") or history.meta["solved"] + 1,
                                                      repeat=options.get("repeat", False))
    elif kind == "text":
        trainer, history = train_text(**options)
        history.meta["seed"] = options.get("seed", 0)
    else:
        raise ValueError(f"a job is ('copy' or 'text', options), got {kind!r}.")
    return history, {name: value.cpu() for name, value in trainer.model.state_dict().items()}


def run_many(jobs, workers=None, desc="runs"):
    """Run a grid of independent recurrent runs (see `_worker`), in order of the list, and return their results
    in that order. On a CPU the runs go to `workers` processes (default: one per core), each with one
    thread: these models are far too small to use several threads well, so a 2-core machine does two runs
    at a time. Processes are started with `spawn` (safe in Jupyter, on macOS and with CUDA). On a GPU the
    runs go one after the other in this process. Each run seeds itself, so the results do not depend on
    how many workers there are."""
    jobs = list(jobs)
    device = config.device()
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=desc, disable=quiet())
    if device.type != "cpu" or workers <= 1:
        results = []
        for job in jobs:
            results.append(_worker(job))
            bar.update()
    else:
        import multiprocessing
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = []
            for result in pool.imap(_worker, jobs, chunksize=1):
                results.append(result)
                bar.update()
    bar.close()
    return results


@torch.no_grad()
def text_bpc(model, codes, vocab, batch=16, chunk=100):
    """Held-out bits per character and next-character accuracy, reading the text in `batch` rows with
    the state carried from chunk to chunk (the model sees as much context as it can use)."""
    stream = TextStream(codes, vocab, batch)
    if stream.row_length < chunk:
        raise ValueError(f"{len(codes):,} held-out characters are too few for {batch} rows of at least {chunk}; "
                         f"use at least {batch * chunk + 1:,} (or a smaller batch or chunk).")
    state, bits, right, total = model.initial_state(batch), 0.0, 0.0, 0
    device = model.readout.weight.device
    for _ in range(stream.row_length // chunk):
        x, y, _ = (t.to(device) for t in stream.next_window(chunk))
        logits, state, _ = model(x, state)
        bits += float(F.cross_entropy(logits.transpose(1, 2), y, reduction="sum")) / LN2
        right += float((logits.argmax(-1) == y).sum())
        total += y.numel()
    return bits / total, right / total


def gradient_reach(model, x, y, mask, loss=bits_loss, lags=20, anchors=10):
    """How strongly a loss k steps later depends on the state now: the mean per-example norm of
    d loss(t+k) / d s(t) for k = 1..lags (true gradients, full backprop through time), averaged over
    `anchors` consecutive start positions t and over the scored steps only. Truncated BPTT with window T
    keeps at most the k < T part of this; a synthetic gradient at the boundary stands in for the rest."""
    batch, device = x.shape[0], model.readout.weight.device
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    if x.shape[1] < anchors + lags:
        raise ValueError(f"need at least anchors + lags = {anchors + lags} steps, got {x.shape[1]}.")
    sums, counts = [0.0] * lags, [0] * lags
    with torch.no_grad():
        _, state, _ = model(x[:, :1], model.initial_state(batch))
    for t in range(1, anchors + 1):
        start = state.detach().requires_grad_()
        logits, _, _ = model(x[:, t:t + lags], start)
        for k in range(lags):
            if float(mask[t + k]) == 0:
                continue
            step_loss, _ = loss(logits[:, k:k + 1], y[:, t + k:t + k + 1], mask[t + k:t + k + 1])
            grad, = torch.autograd.grad(step_loss, start, retain_graph=True)
            sums[k] += float((grad * batch).norm(dim=1).mean())
            counts[k] += 1
        with torch.no_grad():
            _, state, _ = model(x[:, t:t + 1], state)
    return [s / c if c else float("nan") for s, c in zip(sums, counts)]


def update_alignment(trainer, x, y, mask, boundaries=10):
    """Alignment where learning happens (notebook 08): for each of the first `boundaries` windows of the stretch
    (x, y) after its first, the LSTM's parameter update the trainer would apply in that window, against the one
    full BPTT would apply from the same parameters, the same carried state and the same optimizer state. Full
    BPTT's update is the window's own loss plus the exact gradient of *all* later loss of the stretch injected
    at the window's end (what an oracle M with scale 1 hands the window; notebook 08's oracle proof).

    Returns the mean over windows of `upd_cos` (with the optimizer's momentum) and `upd_step_cos` (momentum set
    aside in both: this window's own signal as Adam scales it; see helpers.probe.update_alignment for why both);
    for a trainer with a synthesizer also `upd_step_cos_cut`: the same window's update with the synthetic gradient
    left out (plain truncated BPTT from DNI's own state), so that the two differ only by what M adds. The
    read-out gets the same gradient in every case (its weights in this window touch this window's loss only),
    so only the LSTM's weights are compared. Everything runs on copies; the trainer is untouched. The DNI + Aux
    head's loss is left out of every update."""
    model, window, batch = trainer.model, trainer.window, x.shape[0]
    device = model.readout.weight.device
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    state, states, losses = model.initial_state(batch), [], []
    for k in range(0, x.shape[1] - window + 1, window):
        logits, state, _ = model(x[:, k:k + window], state)
        states.append(state)
        losses.append(trainer.loss(logits, y[:, k:k + window], mask[k:k + window])[0])
    found = {}
    for b in range(min(boundaries, len(states) - 2)):         # window b + 1 runs from states[b] to states[b + 1]
        true, = torch.autograd.grad(sum(losses[b + 2:]), states[b + 1], retain_graph=True)
        start, k = states[b].detach(), (b + 1) * window
        part = (x[:, k:k + window], y[:, k:k + window], mask[k:k + window])
        for momentum in (True, False):
            oracle = _window_update(trainer, start, *part, lambda end: true, momentum)
            own = _window_update(trainer, start, *part, _injected(trainer), momentum)
            key = "upd_cos" if momentum else "upd_step_cos"
            found.setdefault(key, []).append(flat_cosine(own, oracle))
            if trainer.synthesizer is not None and not momentum:
                cut = _window_update(trainer, start, *part, None, momentum)
                found.setdefault("upd_step_cos_cut", []).append(flat_cosine(cut, oracle))
    return {key: sum(values) / len(values) for key, values in found.items()}


def _injected(trainer):
    """The gradient the trainer itself hands a window's end state: its scaled, batch-divided synthetic gradient."""
    if trainer.synthesizer is None:
        return None
    return lambda end: trainer.scale * trainer.synthesizer(end.detach()).detach() / end.shape[0]


def _window_update(trainer, start, x, y, mask, injected, momentum):
    """The LSTM's parameter change after one window from `start`, with `injected(end)` (or nothing) as the end
    state's incoming gradient, taken by a copy of the trainer's model and optimizer."""
    model, optimizer = copy.deepcopy((trainer.model, trainer.optimizer))
    if not momentum:
        forget_momentum(optimizer)
    optimizer.zero_grad(set_to_none=True)
    logits, end, _ = model(x, start)
    total = trainer.loss(logits, y, mask)[0]
    if injected is not None:
        total = total + (end * injected(end)).sum()
    total.backward()
    before = torch.cat([p.detach().flatten().clone() for p in model.lstm.parameters()])
    optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.lstm.parameters()]) - before


def synthetic_gradient_cosine(trainer, x, y, mask, boundaries=10, discount=None):
    """Whole-batch cosine between the synthesizer's prediction at each of the first `boundaries` window
    boundaries of the stretch (x, y) and a true gradient at that state, computed by full BPTT: the
    gradient of sum_j discount^j L_(window j after the boundary). discount=trainer.scale (the default) is
    exactly what M is trained towards (see the module docstring); discount=1 is all future loss alike.
    Make the stretch several windows longer than `boundaries` windows. Returns the list of cosines."""
    model, window, batch = trainer.model, trainer.window, x.shape[0]
    device = model.readout.weight.device
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    discount = trainer.scale if discount is None else discount
    state, states, losses = model.initial_state(batch), [], []
    for k in range(0, x.shape[1] - window + 1, window):
        logits, state, _ = model(x[:, k:k + window], state)
        states.append(state)
        losses.append(trainer.loss(logits, y[:, k:k + window], mask[k:k + window])[0])
    cosines = []
    for b in range(min(boundaries, len(states) - 1)):
        future = sum(discount ** j * loss for j, loss in enumerate(losses[b + 1:]))
        true, = torch.autograd.grad(future, states[b], retain_graph=True)
        with torch.no_grad():
            predicted = trainer.synthesizer(states[b].detach())
            cosines.append(float(F.cosine_similarity(predicted.flatten(), true.flatten(), dim=0)))
    return cosines
