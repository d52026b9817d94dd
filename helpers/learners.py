"""Every training method of the series by name: one protocol, one registry.

A *learner* is whatever `training.train` can drive (the `Learner` protocol below): it holds a model (an
`nn.Sequential` of blocks) and the optimizers whose learning rates the schedule sets, and one call to
`step(x, y)` does one training step and returns the output layer's (loss, logits). A learner that can
compare what its blocks receive with the true gradients also has `measure(x, y)`; `train` records its
numbers in `History.extra` at every evaluation.

`make(method, model, lr, **options)` builds any of them; `METHODS` says what each is and which notebook
introduces it. Notebooks 01-10 and the benchmarks build their learners here, so a method's name means
one thing everywhere.
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol, runtime_checkable

import torch

from .critics import Critic, SyntheticLoss
from .dgl import DGL, BufferedDGL
from .dni import DNI
from .feedback import DFA, FA
from .training import Backprop, NoBackprop
from .training import learner_parameters as parameters  # noqa: F401  (every parameter a learner trains)
from .unlock import FullUnlock
from .update_rates import MultiRate, StochasticBackprop, StochasticDNI


@runtime_checkable
class Learner(Protocol):
    """What `training.train` relies on. `optimizers`: every optimizer the learner steps (the schedule
    sets their learning rates); `method`: the name that histories, results files and figures carry."""

    model: torch.nn.Module
    optimizers: list
    method: str

    def step(self, x: torch.Tensor, y: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        ...


@dataclass(frozen=True)
class Method:
    build: Callable
    what: str
    notebook: str


METHODS = {
    "backprop": Method(Backprop, "ordinary backpropagation (one loss, one backward pass)", "01"),
    "nobackprop": Method(NoBackprop, "only the output layer learns: the floor any method must beat", "01"),
    "dni": Method(partial(DNI, conditioned=False), "synthetic gradients M(h) after every hidden block", "02"),
    "cdni": Method(partial(DNI, conditioned=True), "synthetic gradients conditioned on the label, M(h, y)", "03"),
    "synthetic_loss": Method(SyntheticLoss, "a learned loss L(h, y) fitted on values only", "04"),
    "critic": Method(Critic, "a learned loss fitted on values and slopes (Sobolev training)", "04"),
    "fa": Method(FA, "feedback alignment: fixed random feedback weights", "05"),
    "dfa": Method(DFA, "direct feedback alignment: the output error through fixed random maps", "05"),
    "full_unlock": Method(FullUnlock, "synthetic inputs and synthetic gradients: every block runs alone", "06"),
    "stochastic_backprop": Method(StochasticBackprop, "backprop, each block updating with probability p", "09"),
    "stochastic_dni": Method(partial(StochasticDNI, conditioned=False), "DNI, each block updating with probability p", "09"),
    "stochastic_cdni": Method(partial(StochasticDNI, conditioned=True), "cDNI, each block updating with probability p", "09"),
    "multirate": Method(MultiRate, "two networks joined by cDNI, the lower one updating every k steps", "09"),
    "dgl": Method(DGL, "decoupled greedy learning: each block trains on its own auxiliary classifier", "10"),
    "dgl_buffer": Method(BufferedDGL, "DGL with a replay buffer between blocks (stale inputs)", "10"),
}


def make(method, model, lr, **options):
    """The learner called `method` for `model` at learning rate `lr`; `options` go to its class
    (e.g. hidden_layers=1 for DNI's synthesizer depth, p=0.5 for stochastic updates)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    learner = METHODS[method].build(model, lr, **options)
    if not isinstance(learner, Learner):
        raise TypeError(f"{type(learner).__name__} does not follow the learner protocol (model, optimizers, "
                        "method, step).")
    return learner
