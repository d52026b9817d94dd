"""Blocks that update rarely, or at their own rate: stochastic and multi-rate updates (notebook 09).

A decoupled interface means a block never waits for the others, so nothing forces every block to update
at every step. The paper's multi-network experiments (Jaderberg et al. 2016) and
Nitarshan Rajkumar's notebook (each layer updates with probability 0.2 per step) test exactly this.
Here it is a thin layer over the existing learners: each block's optimizer (and its synthesizer's) is
wrapped in a `Gate` that lets a step through or not. Gradients are still computed for every block, so
on one device a skipped update saves no time; the point is how much learning survives rare updates,
which is what asynchronous workers that fall behind (helpers.pipeline) would see.

- `StochasticBackprop(model, lr, p)`: backprop in which each block's update happens with probability p.
- `StochasticDNI(model, lr, p, ...)`: DNI/cDNI in which each block and its synthesizer update with
  probability p (one coin per block per step).
- `MultiRate(model, lr, cut, every)`: two networks joined by a DNI at block `cut`; the lower one updates
  every `every` steps from the synthetic gradients it accumulated meanwhile, the upper one every step.

Everything here runs in one process: it simulates what workers that update at different times would do.
The real thing, one process per group of blocks, is helpers/pipeline.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .dni import DNI
from .training import Adam


class Gate:
    """An optimizer whose `step` happens only when `open` is True. With `accumulate`, gradients are
    kept (summed) across closed steps and cleared only after a real step, so an update uses every batch
    since the last one; without it, each step's gradient replaces the last (a skipped step is lost)."""

    def __init__(self, optimizer, accumulate=False):
        self.optimizer, self.accumulate = optimizer, accumulate
        self.open, self.stepped, self.updates = True, True, 0

    @property
    def param_groups(self):   # training.train sets the learning rate through these
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none=True):
        if not self.accumulate or self.stepped:
            self.optimizer.zero_grad(set_to_none=set_to_none)
        self.stepped = False

    def step(self):
        if self.open:
            self.optimizer.step()
            self.stepped = True
            self.updates += 1


def _check_probability(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is the probability that a block updates at a step; it must be in [0, 1], got {p!r}.")


class _Coins:
    """One coin per block per step, from its own generator: the same seed gives the same update pattern
    whatever the learner, so runs with different methods skip the same steps."""

    def __init__(self, blocks, p, seed):
        _check_probability(p)
        self.blocks, self.p = blocks, p
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self):
        return (torch.rand(self.blocks, generator=self.generator) < self.p).tolist()


class StochasticBackprop:
    """Backprop in which block i's update happens with probability p at each step (one Adam per block;
    Adam is per parameter, so with p = 1 this is exactly `training.Backprop`)."""

    def __init__(self, model, lr, p=1.0, seed=0, optimizer=Adam):
        self.model, self.p = model, p
        self.method = "backprop" if p == 1 else f"backprop_p{round(100 * p)}"
        self.gates = [Gate(optimizer(block.parameters(), lr=lr)) for block in model]
        self.optimizers = self.gates
        self.coins = _Coins(len(self.gates), p, seed)

    def step(self, x, y):
        for gate, update in zip(self.gates, self.coins.draw()):
            gate.open = update
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        for gate in self.gates:
            gate.zero_grad()
        loss.backward()
        for gate in self.gates:
            gate.step()
        return loss, logits

    def update_fraction(self):
        return [gate.updates for gate in self.gates]


class StochasticDNI(DNI):
    """DNI (or cDNI with conditioned=True) in which each block and its synthesizer update with
    probability p at each step, one coin per block. A block that skips still runs forward (the blocks
    above need its output) and its synthesizer still predicts; neither changes. p = 1 is `dni.DNI`."""

    separate_optimizers = True   # one gate per block and per synthesizer

    def __init__(self, model, lr, p=1.0, seed=0, **dni_options):
        super().__init__(model, lr, **dni_options)
        self.p = p
        if p != 1:
            self.method += f"_p{round(100 * p)}"
        self.block_optimizers = [Gate(o) for o in self.block_optimizers]
        self.synthesizer_optimizers = [None if o is None else Gate(o) for o in self.synthesizer_optimizers]
        self.coins = _Coins(len(self.block_optimizers), p, seed)

    def step(self, x, y):
        updates = self.coins.draw()
        for gate, update in zip(self.block_optimizers, updates):
            gate.open = update
        for gate, update in zip(self.synthesizer_optimizers, updates):
            if gate is not None:
                gate.open = update
        return super().step(x, y)


class MultiRate(DNI):
    """Two networks joined by one decoupled interface: blocks [0, cut) form the lower network, the rest
    the upper one. The upper network learns from the loss at every step; the lower one from the
    synthetic gradient at the interface, but applies an update only every `every` steps (summing the
    synthetic gradients of the batches in between). The synthesizer learns at every step from the true
    gradient the upper network sends down, so it stays current while the lower network is slow."""

    separate_optimizers = True   # the lower network's optimizer is gated

    def __init__(self, model, lr, cut=1, every=1, conditioned=True, **dni_options):
        if not 0 < cut < len(model):
            raise ValueError(f"cut must split the {len(model)} blocks into two non-empty networks (1..{len(model) - 1}), got {cut}.")
        if every < 1:
            raise ValueError(f"every must be >= 1 (1 = update at every step), got {every!r}.")
        lower, upper = nn.Sequential(*list(model)[:cut]), nn.Sequential(*list(model)[cut:])
        super().__init__(nn.Sequential(lower, upper), lr, conditioned=conditioned, **dni_options)
        self.original, self.every, self.steps = model, every, 0
        self.method = f"multirate_k{every}"
        self.block_optimizers[0] = Gate(self.block_optimizers[0], accumulate=True)

    def step(self, x, y):
        self.steps += 1
        self.block_optimizers[0].open = self.steps % self.every == 0
        return super().step(x, y)
