"""Decoupled greedy learning (Belilovsky et al., "Decoupled Greedy Learning of CNNs", arXiv 1901.08164).

Where DNI gives each block a *predicted gradient* of the global loss, DGL gives each block a *local loss*:
an auxiliary classifier (a head) on the block's output, trained with the block on the cross-entropy of the
labels. Every block's input is detached, so no gradient crosses a block boundary and each block updates
as soon as it has run forward (update-unlocked, like DNI, with no synthesizer to learn). The output layer
is the last block's own head. What a block optimises is different, though: it makes its output linearly
(or nearly) separable for its head, not useful for the blocks above; a DNI block follows an estimate of
what the blocks above need. Notebook 10.

- `DGL(model, lr)`: the synchronous version; heads are linear after a fully connected block, and a small
  convolutional head (a 1x1 convolution, averaging to 2x2, a linear layer) after a block ending in a map.
- `BufferedDGL(model, lr, buffer_size)`: the asynchronous version simulated in one process: between two
  blocks sits a bounded buffer of the lower block's recent outputs (with their labels), and the upper block
  trains on an entry drawn from it, so it sees inputs up to `buffer_size - 1` steps stale, as when the
  blocks run at their own pace. With buffer_size=1 it is exactly `DGL`.

Both follow the learner protocol (helpers/learners.py) and measure, with the same probe as every other
learner, how close the gradient a block follows (its head's) is to the true gradient of the global loss.
"""
import collections

import torch
import torch.nn as nn
import torch.nn.functional as F

from .probe import gradient_metrics, hidden_outputs, true_gradients
from .training import Adam


def aux_head(block, num_classes=10):
    """The auxiliary classifier for a block's output: linear after a Linear block, small and convolutional
    after a block whose last layer is a Conv2d."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        c = convs[-1].out_channels
        return nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                             nn.Flatten(), nn.Linear(4 * c, num_classes))
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("no default head for a block without Linear or Conv2d layers.")
    return nn.Linear(linears[-1].out_features, num_classes)


class DGL:
    """Each hidden block trains with its own head on the labels; the output layer on the true loss."""

    method = "dgl"

    def __init__(self, model, lr, optimizer=Adam, num_classes=10):
        blocks = list(model)
        device = next(model.parameters()).device
        self.model, self.num_classes = model, num_classes
        self.heads = [aux_head(block, num_classes).to(device) for block in blocks[:-1]]
        # One optimizer for every block and head: Adam is per parameter, so this is the update of one Adam per
        # block, with one call per step instead of one per block.
        self.optimizers = [optimizer([p for block, head in zip(blocks[:-1], self.heads)
                                      for p in list(block.parameters()) + list(head.parameters())]
                                     + list(blocks[-1].parameters()), lr=lr)]
        self.head_losses = [torch.zeros((), device=device) for _ in self.heads]
        self.probe, self.snapshots = None, []

    def inputs(self, i, h, y):
        """The input and labels block i trains on (here: what the block below computed now)."""
        return h, y

    def keep(self, i, h, y):
        """Block i's output, for the block above (here: passed on at once)."""

    def step(self, x, y):
        hidden, output = list(self.model)[:-1], self.model[-1]
        losses, h = [], x
        for i, (block, head) in enumerate(zip(hidden, self.heads)):
            h_in, y_in = self.inputs(i, h, y) if i > 0 else (x, y)
            h = block(h_in.detach())                     # cut: nothing flows below this block
            losses.append(F.cross_entropy(head(h), y_in))
            self.keep(i, h.detach(), y_in)
        top, y_top = self.inputs(len(hidden), h, y)
        logits = output(top.detach())
        loss = F.cross_entropy(logits, y_top)
        report = (loss, logits)
        if y_top is not y:                               # the output layer trains on a stale input: report
            with torch.no_grad():                        # on the current batch, as every learner does
                current = output(h.detach())
                report = (F.cross_entropy(current, y), current)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.stack(losses + [loss]).sum().backward()   # disjoint graphs: each block gets its own loss only
        for optimizer in self.optimizers:
            optimizer.step()
        self.head_losses = [l.detach() for l in losses]
        return report

    def head_gradients(self, model, heads, x, y):
        """Per-example gradient each hidden block's output receives from its own head's loss."""
        hs, _ = hidden_outputs(model, x)
        received = []
        for h, head in zip(hs, heads):
            h = h.detach().requires_grad_()
            received.append(torch.autograd.grad(F.cross_entropy(head(h), y), h)[0] * x.shape[0])
        return received

    def measure(self, x, y):
        """The head's gradient against the true gradient of the global loss, per hidden block, on copies;
        also each head's last loss. Snapshots feed the gradient explorer, as for DNI."""
        import copy
        if self.probe is not None:
            x, y = self.probe
        model, heads = copy.deepcopy(self.model), copy.deepcopy(self.heads)
        received = self.head_gradients(model, heads, x, y)
        true = true_gradients(self.model, x, y)
        metrics = gradient_metrics(received, true)
        for i, loss in enumerate(self.head_losses):
            metrics[f"head_loss/{i}"] = loss.item()
        self.snapshots.append([(g_hat.cpu(), g.cpu()) for g_hat, g in zip(received, true)])
        return metrics


class BufferedDGL(DGL):
    """DGL with a buffer of `buffer_size` recent (output, labels) pairs between every two blocks; the block
    above trains on an entry drawn uniformly from it (its own generator, seeded by `seed`). Once the buffer is
    full an input is 0 to buffer_size - 1 steps old, (buffer_size - 1) / 2 on average; `ages` counts them."""

    method = "dgl_buffer"

    def __init__(self, model, lr, buffer_size=4, seed=0, **options):
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1 (1: no staleness), got {buffer_size!r}.")
        super().__init__(model, lr, **options)
        self.buffer_size, self.seed = buffer_size, seed          # both part of a stored run's key (train(reuse=True))
        self.buffers = [collections.deque(maxlen=buffer_size) for _ in self.heads]
        self.generator = torch.Generator().manual_seed(seed)
        self.ages = collections.Counter()                       # age in steps -> how many inputs were that stale

    def keep(self, i, h, y):
        self.buffers[i].append((h, y))

    def inputs(self, i, h, y):
        buffer = self.buffers[i - 1]
        k = int(torch.randint(len(buffer), (1,), generator=self.generator)) if len(buffer) > 1 else 0
        self.ages[len(buffer) - 1 - k] += 1
        return buffer[k]

    def mean_age(self):
        """How many steps old, on average, the inputs the blocks above trained on were (notebook 10's x-axis)."""
        return sum(age * n for age, n in self.ages.items()) / max(1, sum(self.ages.values()))
