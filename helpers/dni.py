"""Update-unlocked training with synthetic gradients: DNI and cDNI (Jaderberg et al. 2016, feed-forward nets).

`DNI` is a learner for `training.train`. A decoupled interface sits after every hidden block. Each block
updates as soon as it has run forward, from its synthetic gradient M_i(h_i); its input is detached, so
nothing flows further down. The synthesizers learn afterwards, by regression onto (paper, supp. A, BP(0)):

- top hidden block: the true gradient dL/dh from the output layer;
- lower block i: block i+1's synthetic gradient backpropagated through block i+1 alone (bootstrapping).

The bootstrap costs nothing extra: block i+1's input is a detached leaf that requires grad, so its
`h.backward(synthetic gradient)` leaves exactly that target in `input.grad`.

The interface's arithmetic (what a block receives, what a synthesizer regresses onto) is
`synthesizers.to_block` / `target_from` / `regression_loss`; the critic (critics.py), the full unlock
(unlock.py) and the pipeline's decoupled stage (pipeline.py) use the same three, each arranging the step
its own way (here one backward call for every block; there one block at a time, or targets that arrive
later from another process). Notebooks 02 and 03 build this step in the open; 04-09 use it.
"""
import torch
import torch.nn.functional as F

from .probe import gradient_metrics, synthetic_and_true_gradients
from .synthesizers import regression_loss, synthesizer_for, target_from, to_block
from .training import Adam


class DNI:
    """Decoupled training of `model` (a list of blocks, last = output layer).

    hidden_layers: synthesizer depth (0 = linear); hidden: its width (default 1024 units, or 128
    filters after a convolutional block, whose synthesizer is convolutional). conditioned: give each
    synthesizer the one-hot label (cDNI). scale: multiplies every synthetic gradient handed to a block (the paper's RNNs use 0.1; under
    Adam a constant scale barely matters). synthesizers: your own list of modules M(h, context) to use
    instead (e.g. an oracle); those without parameters are not trained. optimizer: a torch.optim class;
    one instance holds every block, the output layer and every trainable synthesizer (one per module where a
    subclass sets `separate_optimizers`, to gate modules one by one).
    """

    separate_optimizers = False   # True in update_rates' learners, which gate each block's optimizer on its own

    def __init__(self, model, lr, hidden_layers=0, conditioned=False, scale=1.0, synthesizers=None,
                 optimizer=Adam, synthesizer_lr=None, num_classes=10, hidden=None):
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
        self.trained = [i for i, s in enumerate(self.synthesizers) if any(True for _ in s.parameters())]
        if self.separate_optimizers:
            self.block_optimizers = [optimizer(block.parameters(), lr=lr) for block in blocks]
            self.synthesizer_optimizers = [optimizer(s.parameters(), lr=synthesizer_lr or lr) if i in self.trained
                                           else None for i, s in enumerate(self.synthesizers)]
            self.optimizers = self.block_optimizers + [o for o in self.synthesizer_optimizers if o is not None]
        else:
            # One optimizer for every block and synthesizer: Adam updates each parameter from its own gradient
            # and state, so this is the same update as one Adam per module, with one call per step instead of
            # one per module (the per-call cost dominated the difference to backprop's step; `make bench`).
            # One parameter group where the learning rates agree: Adam's cost per call grows with the groups.
            network = [p for block in blocks for p in block.parameters()]
            synthesizers = [p for i in self.trained for p in self.synthesizers[i].parameters()]
            if synthesizer_lr in (None, lr) or not synthesizers:
                groups = [{"params": network + synthesizers}]
            else:
                groups = [{"params": network}, {"params": synthesizers, "lr": synthesizer_lr}]
            self.optimizers = [optimizer(groups, lr=lr)]
        device = next(model.parameters()).device
        self.synthesizer_losses = [torch.zeros((), device=device) for _ in self.synthesizers]
        self.probe = None
        self.snapshots = []

    def context(self, y):
        return F.one_hot(y, self.num_classes).to(torch.get_default_dtype()) if self.conditioned else None

    def step(self, x, y):
        """One update-unlocked step. Returns (loss, logits) of the output layer.

        Written for speed, with the same numbers as the block-by-block version in notebook 02: every
        block's input is a detached leaf, so the blocks' graphs are disjoint and one backward call
        delivers each block its own synthetic gradient (and the output layer its true one) without
        mixing them; no block reads another's parameters within a step, so applying the updates
        together at the end changes nothing.
        """
        factor = self.batch_factor(x.shape[0])
        context = self.step_context(y)
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
        optimizers = self.stepped_optimizers()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        synthetic = [to_block(p, factor, self.scale) for p in predictions]
        torch.autograd.backward(outputs + [loss], synthetic + [None])   # gradients reach the blocks only
        targets = self.targets(inputs, top, factor, x, y)
        if self.trained:
            losses = [regression_loss(predictions[i], targets[i]) for i in self.trained]
            torch.stack(losses).sum().backward()   # disjoint synthesizers: each gets its own loss's gradient
            for i, synthesizer_loss in zip(self.trained, losses):
                self.synthesizer_losses[i] = synthesizer_loss.detach()
        # Every update at the end: the synthesizers' losses never read the blocks' weights (their inputs are
        # detached), so updating the blocks before or after them gives the same numbers.
        for optimizer in optimizers:
            optimizer.step()
        return loss, logits

    # The three parts of a step that playground.PlaygroundDNI (notebooks 02 and 03b) can switch off, one hook
    # each; as written here, a step is the paper's.
    def batch_factor(self, batch):
        """Synthesizers predict per-example gradients (batch size x dL/dh); a block receives prediction / B."""
        return batch

    def step_context(self, y):
        """What the synthesizers are conditioned on this step: the batch's own labels (cDNI), or nothing."""
        return self.context(y)

    def targets(self, inputs, top, factor, x, y):
        """The synthesizers' regression targets once the backward call has run: block i+1's input gradient
        (bootstrapped) below, the true gradient at the top (`x`, `y`: for learners that recompute them)."""
        return [target_from(inputs[i + 1].grad, factor, self.scale) for i in range(len(inputs) - 1)] + \
            [target_from(top.grad, factor)]

    def stepped_optimizers(self):
        """What one step zeroes and steps: the one optimizer, or each module's (gated) optimizer."""
        if not self.separate_optimizers:
            return self.optimizers
        return self.block_optimizers + [o for o in self.synthesizer_optimizers if o is not None]

    def measure(self, x, y):
        """Synthetic vs true gradients on a copy of the networks (never used for learning).

        Uses `self.probe` = (x, y) if set, else the batch given. Per hidden block i it returns the
        whole-batch cosine (the batch x units gradient as one vector), the mean per-example cosine, the
        relative error |g_hat - g| / |g| and the synthesizer's last training loss; it also appends the
        gradients themselves to `self.snapshots` for the gradient explorer.
        """
        if self.probe is not None:
            x, y = self.probe
        return measure_synthetic(self, x, y)


def measure_synthetic(learner, x, y):
    """`probe.gradient_metrics` of the learner's synthesizers against the true gradients (on copies), plus
    each synthesizer's last training loss; appends the gradients to `learner.snapshots` for the gradient
    explorer. Shared by `DNI` and `unlock.FullUnlock`."""
    synthetic, true = synthetic_and_true_gradients(learner.model, learner.synthesizers, x, y, learner.context(y))
    metrics = gradient_metrics(synthetic, true)
    for i, loss in enumerate(learner.synthesizer_losses):
        metrics[f"synthesizer_loss/{i}"] = loss.item()
    learner.snapshots.append([(g_hat.cpu(), g.cpu()) for g_hat, g in zip(synthetic, true)])
    return metrics
