"""Update-unlocked training with synthetic gradients: DNI and cDNI (Jaderberg et al. 2016, section 3.1).

`DNI` is a learner for `training.train`. A decoupled interface sits after every hidden block. Each block
updates as soon as it has run forward, from its synthetic gradient M_i(h_i); its input is detached, so
nothing flows further down. The synthesizers learn afterwards, by regression onto (paper, supp. A, BP(0)):

- top hidden block: the true gradient dL/dh from the output layer;
- lower block i: block i+1's synthetic gradient backpropagated through block i+1 alone (bootstrapping).

The bootstrap costs nothing extra: block i+1's input is a detached leaf that requires grad, so its
`h.backward(synthetic gradient)` leaves exactly that target in `input.grad`.
"""
import copy

import torch
import torch.nn.functional as F

from .synthesizers import synthesizer_for


class DNI:
    """Decoupled training of `model` (a list of blocks, last = output layer).

    hidden_layers: synthesizer depth (0 = linear); hidden: its width (default 1024 units, or 128
    filters after a convolutional block, whose synthesizer is convolutional). conditioned: give each
    synthesizer the one-hot label (cDNI). scale: multiplies every synthetic gradient handed to a block (the paper's RNNs use 0.1; under
    Adam a constant scale barely matters). synthesizers: your own list of modules M(h, context) to use
    instead (e.g. an oracle); those without parameters are not trained. optimizer: a torch.optim class;
    every block, the output layer and every trainable synthesizer gets its own instance.
    """

    def __init__(self, model, lr, hidden_layers=0, conditioned=False, scale=1.0, synthesizers=None,
                 optimizer=torch.optim.Adam, synthesizer_lr=None, num_classes=10, hidden=None):
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale!r}.")
        self.model, self.scale, self.num_classes = model, scale, num_classes
        self.conditioned = conditioned
        self.method = "cdni" if conditioned else "dni"
        blocks = list(model)
        if synthesizers is None:
            device = next(model.parameters()).device
            context = num_classes if conditioned else 0
            synthesizers = [synthesizer_for(block, hidden_layers, context, hidden).to(device) for block in blocks[:-1]]
        if len(synthesizers) != len(blocks) - 1:
            raise ValueError(f"need one synthesizer per hidden block ({len(blocks) - 1}), got {len(synthesizers)}.")
        self.synthesizers = list(synthesizers)
        self.block_optimizers = [optimizer(block.parameters(), lr=lr) for block in blocks]
        self.synthesizer_optimizers = [optimizer(s.parameters(), lr=synthesizer_lr or lr)
                                       if any(True for _ in s.parameters()) else None for s in self.synthesizers]
        self.optimizers = self.block_optimizers + [o for o in self.synthesizer_optimizers if o is not None]
        self.synthesizer_losses = [torch.zeros(()) for _ in self.synthesizers]
        self.probe = None
        self.snapshots = []

    def context(self, y):
        return F.one_hot(y, self.num_classes).float() if self.conditioned else None

    def step(self, x, y):
        """One update-unlocked step. Returns (loss, logits) of the output layer.

        Written for speed, with the same numbers as the block-by-block version in notebook 02: every
        block's input is a detached leaf, so the blocks' graphs are disjoint and one backward call
        delivers each block its own synthetic gradient (and the output layer its true one) without
        mixing them; no block reads another's parameters within a step, so applying the updates
        together at the end changes nothing.
        """
        batch = x.shape[0]
        context = self.context(y)
        hidden, output = list(self.model)[:-1], self.model[-1]
        inputs, outputs, predictions = [], [], []
        h = x
        for i, block in enumerate(hidden):
            h_in = h.detach().requires_grad_(i > 0)   # leaf: nothing flows below this block
            h = block(h_in)
            inputs.append(h_in)
            outputs.append(h)
            predictions.append(self.synthesizers[i](h.detach(), context))   # per-example dL/dh
        top = h.detach().requires_grad_()
        logits = output(top)
        loss = F.cross_entropy(logits, y)
        for optimizer in self.block_optimizers:
            optimizer.zero_grad(set_to_none=True)
        synthetic = [p.detach() * (self.scale / batch) for p in predictions]
        torch.autograd.backward(outputs + [loss], synthetic + [None])
        for optimizer in self.block_optimizers:
            optimizer.step()
        # Targets: block i+1's input gradient (bootstrapped) below, the true gradient at the top.
        targets = [inputs[i + 1].grad * (batch / self.scale) for i in range(len(hidden) - 1)] + [top.grad * batch]
        trained = [i for i, optimizer in enumerate(self.synthesizer_optimizers) if optimizer is not None]
        if trained:
            losses = [F.mse_loss(predictions[i], targets[i].detach()) for i in trained]
            for i in trained:
                self.synthesizer_optimizers[i].zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()   # disjoint synthesizers: each gets its own loss's gradient
            for i, synthesizer_loss in zip(trained, losses):
                self.synthesizer_optimizers[i].step()
                self.synthesizer_losses[i] = synthesizer_loss.detach()
        return loss, logits

    def measure(self, x, y):
        """Synthetic vs true gradients on a copy of the networks (never used for learning).

        Uses `self.probe` = (x, y) if set, else the batch given. Per hidden block i it returns the
        whole-batch cosine (the batch x units gradient as one vector), the mean per-example cosine, the
        relative error |g_hat - g| / |g| and the synthesizer's last training loss; it also appends the
        gradients themselves to `self.snapshots` for the gradient explorer.
        """
        if self.probe is not None:
            x, y = self.probe
        synthetic, true = synthetic_and_true_gradients(self.model, self.synthesizers, x, y, self.context(y))
        metrics, snapshot = {}, []
        for i, (g_hat, g) in enumerate(zip(synthetic, true)):
            metrics[f"cos_batch/{i}"] = F.cosine_similarity(g_hat.flatten(), g.flatten(), dim=0).item()
            metrics[f"cos_example/{i}"] = F.cosine_similarity(g_hat.flatten(1), g.flatten(1), dim=1).mean().item()
            metrics[f"rel_error/{i}"] = ((g_hat - g).norm() / g.norm().clamp_min(1e-12)).item()
            metrics[f"synthesizer_loss/{i}"] = self.synthesizer_losses[i].item()
            snapshot.append((g_hat.cpu(), g.cpu()))
        self.snapshots.append(snapshot)
        return metrics


def synthetic_and_true_gradients(model, synthesizers, x, y, context=None):
    """Per-example gradients at every hidden block's output: what the synthesizers predict, and the truth.

    Both are batch size x dL/dh for the batch-mean cross-entropy. Works on deep copies in training mode
    (BatchNorm uses batch statistics, as during training), so the real networks' parameters, gradients
    and BatchNorm running statistics are untouched.
    """
    model, synthesizers = copy.deepcopy(model), copy.deepcopy(synthesizers)
    hs, h = [], x
    for block in list(model)[:-1]:
        h = block(h)
        hs.append(h)
    loss = F.cross_entropy(model[-1](h), y)
    true = torch.autograd.grad(loss, hs)
    with torch.no_grad():
        synthetic = [s(h.detach(), context) for s, h in zip(synthesizers, hs)]
    batch = x.shape[0]
    return synthetic, [g.detach() * batch for g in true]
