"""Feedback alignment (FA) and direct feedback alignment (DFA): synthetic gradients that are never learned.

Czarnecki et al. 2017 ("Understanding Synthetic Gradients and DNIs", arXiv 1703.00522) write both as
synthetic gradients whose synthesizers are *fixed random* maps of the output error e = softmax(z) - onehot(y)
(the per-example gradient of the cross-entropy with respect to the logits):

- FA (Lillicrap et al. 2016): backprop in which every Linear layer sends the error down through a fixed
  random matrix B instead of its own weights Wᵀ. The top hidden block receives e B_out; each block below
  receives the signal from above passed back through the block's BatchNorm and ReLU as usual and through
  its B in place of Wᵀ.
- DFA (Nøkland 2016): each hidden block i receives e B_i directly, through one fixed random matrix per
  block; the blocks' graphs are cut exactly as in `dni`, so nothing is backpropagated between blocks.

Both learners follow the learner protocol (helpers/learners.py) and measure what each hidden block receives
against its true gradient with the same probe as every other learner (helpers/probe.py). Notebook 05.
Scale: as in `dni`, signals are per-example (batch size x dL/dh) and divided by the batch size.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .probe import gradient_metrics, true_gradients
from .training import Adam


class FeedbackLinear(torch.autograd.Function):
    """y = x Wᵀ + b going forward; going back, the input receives grad B instead of grad W (FA's rule).
    The weight and bias gradients are the ordinary ones."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        return grad @ feedback, grad.t() @ x, grad.sum(0), None


def random_feedback(out_features, in_features, generator=None):
    """A fixed random feedback matrix of a Linear layer's weight shape (out, in), scaled like its init."""
    return torch.randn(out_features, in_features, generator=generator) / in_features ** 0.5


class FA:
    """Feedback alignment on a model of blocks (last = output layer), with one optimizer for everything.

    Every Linear layer except the first block's (whose input gradient nobody uses) propagates the error
    down through its own fixed random matrix `self.feedback[k]`, drawn from `seed`.
    """

    method = "fa"

    def __init__(self, model, lr, optimizer=Adam, seed=0):
        self.model = model
        self.optimizers = [optimizer(model.parameters(), lr=lr)]
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        self.linears = [m for block in list(model)[1:] for m in block.modules() if isinstance(m, nn.Linear)]
        self.feedback = [random_feedback(m.out_features, m.in_features, generator).to(device) for m in self.linears]
        self.probe = None

    def forward(self, model, x):
        """Logits and every hidden block's output, with FA's backward rule on the Linear layers."""
        feedback = dict(zip(map(id, self.linears), self.feedback))
        blocks = list(model)
        own = list(self.model)
        hs, h = [], x
        for i, (block, original) in enumerate(zip(blocks, own)):
            for module, module_original in zip(block, original):
                if id(module_original) in feedback:
                    h = FeedbackLinear.apply(h, module.weight, module.bias, feedback[id(module_original)])
                else:
                    h = module(h)
            if i < len(blocks) - 1:
                hs.append(h)
        return h, hs

    def step(self, x, y):
        logits, _ = self.forward(self.model, x)
        loss = F.cross_entropy(logits, y)
        self.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[0].step()
        return loss, logits

    def received_gradients(self, model, x, y):
        """Per-example signals FA delivers to every hidden block's output (on `model`, a copy of ours)."""
        logits, hs = self.forward(model, x)
        return [g.detach() * x.shape[0] for g in torch.autograd.grad(F.cross_entropy(logits, y), hs)]

    def measure(self, x, y):
        return _measure(self, x, y)


class DFA:
    """Direct feedback alignment: hidden block i learns from e B_i at once, e the output error; every
    block's input is detached (as in `dni.DNI`); the output layer learns from the true loss."""

    method = "dfa"

    def __init__(self, model, lr, optimizer=Adam, seed=0, num_classes=10):
        self.model = model
        blocks = list(model)
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        widths = [[m for m in block.modules() if isinstance(m, nn.Linear)][-1].out_features for block in blocks[:-1]]
        self.feedback = [random_feedback(num_classes, w, generator).to(device) for w in widths]
        self.block_optimizers = [optimizer(block.parameters(), lr=lr) for block in blocks]
        self.optimizers = self.block_optimizers
        self.probe = None

    def step(self, x, y):
        batch = x.shape[0]
        hidden, output = list(self.model)[:-1], self.model[-1]
        outputs, h = [], x
        for block in hidden:
            h = block(h.detach())   # cut: nothing flows below this block
            outputs.append(h)
        logits = output(h.detach())
        loss = F.cross_entropy(logits, y)
        error = self.error(logits, y)
        for optimizer in self.block_optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(outputs + [loss], [error @ B / batch for B in self.feedback] + [None])
        for optimizer in self.block_optimizers:
            optimizer.step()
        return loss, logits

    @staticmethod
    def error(logits, y):
        """The per-example output error softmax(z) - onehot(y), i.e. batch size x dL/dz."""
        return (logits.detach().softmax(1) - F.one_hot(y, logits.shape[1]).to(torch.get_default_dtype()))

    def received_gradients(self, model, x, y):
        h = x
        for block in list(model)[:-1]:
            h = block(h)
        error = self.error(model[-1](h), y)
        return [error @ B for B in self.feedback]

    def measure(self, x, y):
        return _measure(self, x, y)


def _measure(learner, x, y):
    """What each hidden block receives against the truth (`probe.gradient_metrics`), on copies."""
    if learner.probe is not None:
        x, y = learner.probe
    received = learner.received_gradients(copy.deepcopy(learner.model), x, y)
    return gradient_metrics(received, true_gradients(learner.model, x, y))
