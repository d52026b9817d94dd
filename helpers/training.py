"""Training loops: one visible `for` loop, and small "learner" objects that say what one step does.

A learner holds a model and its optimizers and has `step(x, y) -> (loss, logits)`. `train` draws
batches, applies the learning-rate schedule to every optimizer the learner has, evaluates on the full
test set now and then, and records a `History`. Backprop and the paper's "no backprop" baseline live
here; decoupled learners (DNI, cDNI, ...) are written the same way in later notebooks and modules.
"""
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import random_batches


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
    holds a learner's own measurements (e.g. how close synthetic gradients are to the true ones).
    """

    method: str
    layers: int
    iteration: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def label(self):
        return f"{self.method} ({self.layers} layers)"

    @property
    def final_test_accuracy(self):
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")

    def as_dict(self):
        return asdict(self)


@torch.no_grad()
def evaluate(model, x, y, batch_size=2_000):
    """Accuracy (a fraction) of `model` on all of (x, y), in eval mode (BatchNorm uses running stats)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)


class Backprop:
    """Ordinary training: one loss, one backward pass through every block, one optimizer."""

    method = "backprop"

    def __init__(self, model, lr, optimizer=torch.optim.Adam):
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
        self.optimizers = [torch.optim.Adam(model[-1].parameters(), lr=lr)]

    def step(self, x, y):
        with torch.no_grad():
            features = self.model[:-1](x)
        logits = self.model[-1](features)
        loss = F.cross_entropy(logits, y)
        self.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[0].step()
        return loss, logits


LEARNERS = {"backprop": Backprop, "nobackprop": NoBackprop}


def learning_rate(size, iteration):
    """The schedule's learning rate at `iteration` (1-based): divided by 10 after each milestone."""
    return size.lr * 0.1 ** sum(iteration > m for m in size.milestones())


def train(learner, data, size, seed=0, progress=True, desc=None, augment=None, amp=False):
    """Train `learner` on `data` for `size.iterations` steps and return its `History`.

    augment: a function applied to each training batch of images on the device (e.g.
    `data.random_crop_flip`). amp: run each step under bfloat16 autocast (mixed precision; worth it on
    recent GPUs, parameters and optimizer state stay float32).

    The batch order comes from `seed` alone, so two learners trained with one seed see the same batches.
    Losses are kept on the device between evaluation points (no per-step synchronisation); at each point
    they are checked, and a NaN or infinity raises `DivergenceError` naming the first bad iteration.
    """
    model = learner.model
    model.train()
    layers = len(model)
    history = History(learner.method, layers)
    generator = torch.Generator().manual_seed(seed)
    batches = random_batches(len(data.x_train), size.batch_size, data.x_train.device, generator)
    losses = torch.zeros(size.eval_every, device=data.x_train.device)
    correct = torch.zeros(size.eval_every, device=data.x_train.device)
    current_lr = size.lr
    start = time.perf_counter()
    quiet = not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")   # CI sets TQDM_DISABLE=1
    bar = tqdm(range(1, size.iterations + 1), desc=desc or history.label, leave=False, disable=quiet)
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
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
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
            bar.set_postfix(test_acc=f"{history.test_accuracy[-1]:.4f}")
    return history
