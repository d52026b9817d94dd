"""Synthetic *loss* and critics: learn a model of the loss, and let a block follow its slope.

Instead of predicting dL/dh directly (a synthetic gradient, `dni`), a loss model L̂(h, y) predicts the
per-example loss from a block's output h and the one-hot label y, and the block descends ∂L̂/∂h.

- `SyntheticLoss` trains L̂ by regression on loss *values* only (S. Pitis, r2rt.com, "Synthetic
  Gradients with Tensorflow": its "synthetic loss" did worse than no backprop). Matching values says
  nothing direct about the slope, and the slope is all the block ever sees.
- `Critic` trains L̂ on values *and* on its input-gradient (Sobolev training, Czarnecki et al. 2017,
  arXiv 1706.04859, section 2): ∂L̂/∂h is regressed onto the same per-example targets that cDNI's
  synthesizer is, so ∂L̂/∂h is a synthetic gradient and L̂ itself is an interpretable predicted loss.

Targets, per example and per hidden block i (the analogue of DNI's bootstrapping, Jaderberg et al. 2016,
supplementary A):

- value: at the top block the true per-example cross-entropy; below, the loss model above evaluated on
  the next block's output, L̂_{i+1}(h_{i+1}, y) (the lower model learns to predict the upper model's
  prediction, which in turn predicts the loss);
- gradient (critic only): at the top the true per-example gradient, batch size x dL/dh; below, the loss
  model above's gradient ∂L̂_{i+1}/∂h_{i+1} backpropagated through block i+1 alone.

Scale: L̂ predicts the per-example loss, so ∂L̂_n/∂h_n is the per-example gradient (batch size x dL/dh of
the batch-mean loss); the block receives it divided by the batch size, exactly as in `dni`
(`synthesizers.to_block` and `target_from`). Notebook 04.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .probe import gradient_metrics, hidden_outputs
from .synthesizers import target_from, to_block
from .training import Adam


class LossModel(nn.Module):
    """L̂(h, y): a per-example predicted loss, shape (N,), from h (N, features) and one-hot y (N, classes).

    hidden_layers=0: a quadratic form, L̂ = ½ hᵀQh + hᵀ(Uy + v) + uᵀy + b. Its input-gradient
    ½(Q + Qᵀ)h + Uy + v is exactly a linear label-conditioned synthetic gradient (cDNI's synthesizer,
    with a symmetric matrix): the "implicit loss model" of a linear synthesizer (Czarnecki et al. 2017,
    "Understanding Synthetic Gradients and DNIs"). hidden_layers=1 or 2: an MLP on [h, y] with
    `hidden` Softplus units per layer (smooth, so its slope is defined everywhere) and a linear output.

    Every parameter that reaches the output last (the whole quadratic form; the MLP's last layer) starts
    at zero, so a fresh model predicts loss 0 and gives every block exactly zero gradient.
    """

    def __init__(self, features, num_classes=10, hidden_layers=0, hidden=256):
        super().__init__()
        if hidden_layers not in (0, 1, 2):
            raise ValueError(f"hidden_layers must be 0 (quadratic), 1 or 2, got {hidden_layers!r}.")
        self.features, self.num_classes, self.hidden_layers = features, num_classes, hidden_layers
        if hidden_layers == 0:
            self.Q = nn.Parameter(torch.zeros(features, features))
            self.U = nn.Parameter(torch.zeros(num_classes, features))
            self.v = nn.Parameter(torch.zeros(features))
            self.u = nn.Parameter(torch.zeros(num_classes))
            self.b = nn.Parameter(torch.zeros(()))
        else:
            layers, width = [], features + num_classes
            for _ in range(hidden_layers):
                layers += [nn.Linear(width, hidden), nn.Softplus()]
                width = hidden
            output = nn.Linear(width, 1)
            nn.init.zeros_(output.weight)
            nn.init.zeros_(output.bias)
            self.net = nn.Sequential(*layers, output)

    def forward(self, h, y_onehot):
        if h.dim() != 2 or h.shape[1] != self.features:
            raise ValueError(f"expected h of shape (N, {self.features}), got {tuple(h.shape)}.")
        if y_onehot.shape != (h.shape[0], self.num_classes):
            raise ValueError(f"expected one-hot labels of shape ({h.shape[0]}, {self.num_classes}), "
                             f"got {tuple(y_onehot.shape)}.")
        if self.hidden_layers == 0:
            return (0.5 * (h @ self.Q * h).sum(1) + (h * (y_onehot @ self.U + self.v)).sum(1)
                    + y_onehot @ self.u + self.b)
        return self.net(torch.cat([h, y_onehot], dim=1)).squeeze(1)


def value_and_gradient(loss_model, h, y_onehot, create_graph=False):
    """(L̂(h, y) per example, ∂L̂_n/∂h_n per example). With create_graph=True the gradient can itself be
    trained (Sobolev training); the value keeps its graph either way, so it can be trained too. h is
    treated as a leaf, so nothing flows into whatever produced it."""
    with torch.enable_grad():
        h = h.detach().requires_grad_()
        value = loss_model(h, y_onehot)
        gradient, = torch.autograd.grad(value.sum(), h, create_graph=create_graph, retain_graph=True)
    return value, gradient


def sobolev_loss(value, gradient, value_target, gradient_target, value_weight=1.0, gradient_weight=1.0):
    """Sobolev training of first order (Czarnecki et al. 2017, section 2): squared error of the
    values (mean over examples) plus squared error of the gradients (per-example squared norm, mean over
    examples). Returns (total, value term, gradient term)."""
    value_term = F.mse_loss(value, value_target)
    gradient_term = (gradient - gradient_target).pow(2).sum(1).mean()
    return value_weight * value_term + gradient_weight * gradient_term, value_term, gradient_term


class SyntheticLoss:
    """Update-unlocked training from a learned loss model per hidden block, trained on values only.

    Same structure as `dni.DNI`: every block's input is detached; a block updates from ∂L̂_i/∂h_i as soon
    as it has run; the output layer learns from the true loss; then the loss models learn (targets in the
    module docstring). `Critic` is the same learner with a gradient term.

    hidden_layers, hidden: the loss model (`LossModel`). value_weight, gradient_weight: the weights of the
    two terms of `sobolev_loss` (value_weight=None: 1 / width of each block). With gradient_weight=0 (the
    default here) the slope error is still computed and recorded by `measure` as `gradient_loss/{i}`, but
    nothing learns from it.
    """

    method = "synthetic_loss"

    def __init__(self, model, lr, hidden_layers=0, hidden=256, value_weight=1.0, gradient_weight=0.0,
                 optimizer=Adam, loss_model_lr=None, num_classes=10):
        blocks = list(model)
        widths = [_width(block) for block in blocks[:-1]]
        value_weights = [1.0 / w for w in widths] if value_weight is None else [value_weight] * len(widths)
        if min(value_weights) < 0 or gradient_weight < 0 or min(value_weights) + gradient_weight == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got value_weight={value_weight!r}, "
                             f"gradient_weight={gradient_weight!r}.")
        self.model, self.num_classes = model, num_classes
        self.value_weights, self.gradient_weight = value_weights, gradient_weight
        device = next(model.parameters()).device
        self.loss_models = [LossModel(w, num_classes, hidden_layers, hidden).to(device) for w in widths]
        self.block_optimizers = [optimizer(block.parameters(), lr=lr) for block in blocks]
        self.loss_model_optimizers = [optimizer(m.parameters(), lr=loss_model_lr or lr) for m in self.loss_models]
        self.optimizers = self.block_optimizers + self.loss_model_optimizers
        self.terms = [(torch.zeros((), device=device), torch.zeros((), device=device)) for _ in self.loss_models]
        self.probe = None

    def step(self, x, y):
        """One update-unlocked step. Returns (loss, logits) of the output layer."""
        batch = x.shape[0]
        onehot = F.one_hot(y, self.num_classes).to(torch.get_default_dtype())
        hidden, output = list(self.model)[:-1], self.model[-1]
        inputs, outputs, values, gradients = [], [], [], []
        h = x
        for i, block in enumerate(hidden):
            h_in = h.detach().requires_grad_(i > 0)   # leaf: nothing flows below this block
            h = block(h_in)
            inputs.append(h_in)
            outputs.append(h)
            value, gradient = value_and_gradient(self.loss_models[i], h, onehot, create_graph=self.gradient_weight > 0)
            values.append(value)
            gradients.append(gradient)
        top = h.detach().requires_grad_()
        logits = output(top)
        per_example = F.cross_entropy(logits, y, reduction="none")
        loss = per_example.mean()
        for optimizer in self.block_optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(outputs + [loss], [to_block(g, batch) for g in gradients] + [None])
        for optimizer in self.block_optimizers:
            optimizer.step()
        value_targets = [values[i + 1].detach() for i in range(len(hidden) - 1)] + [per_example.detach()]
        gradient_targets = [target_from(inputs[i + 1].grad, batch) for i in range(len(hidden) - 1)] + \
            [target_from(top.grad, batch)]
        total = 0
        for i, optimizer in enumerate(self.loss_model_optimizers):
            optimizer.zero_grad(set_to_none=True)
            loss_i, value_term, gradient_term = sobolev_loss(values[i], gradients[i], value_targets[i],
                                                             gradient_targets[i].detach(),
                                                             self.value_weights[i], self.gradient_weight)
            total = total + loss_i
            self.terms[i] = (value_term.detach(), gradient_term.detach())
        total.backward()   # disjoint loss models: each gets its own term's gradient
        for optimizer in self.loss_model_optimizers:
            optimizer.step()
        return loss, logits

    def measure(self, x, y):
        """Predicted vs true gradients and losses on copies of the networks (never used for learning).

        Uses `self.probe` = (x, y) if set. Per hidden block i: whole-batch and mean per-example cosine of
        ∂L̂_i/∂h_i with the true per-example gradient, relative error, and the last training terms; for the
        top block also the RMS error of the predicted per-example loss.
        """
        if self.probe is not None:
            x, y = self.probe
        onehot = F.one_hot(y, self.num_classes).to(torch.get_default_dtype())
        predicted, true, values, losses = predicted_and_true(self.model, self.loss_models, x, y, onehot)
        metrics = gradient_metrics(predicted, true)
        for i in range(len(predicted)):
            metrics[f"value_loss/{i}"] = self.terms[i][0].item()
            metrics[f"gradient_loss/{i}"] = self.terms[i][1].item()
        top = len(predicted) - 1
        metrics[f"value_rmse/{top}"] = (values[top] - losses).pow(2).mean().sqrt().item()
        return metrics

    @torch.no_grad()
    def predicted_loss(self, x, y, block=-1):
        """The loss model of hidden block `block` (default: the top one) on (x, y), per example, in eval
        mode (BatchNorm uses running statistics), beside the true per-example loss. Both shape (N,)."""
        was_training = self.model.training
        self.model.eval()
        hs, h = [], x
        for b in list(self.model)[:-1]:
            h = b(h)
            hs.append(h)
        true = F.cross_entropy(self.model[-1](h), y, reduction="none")
        predicted = self.loss_models[block](hs[block], F.one_hot(y, self.num_classes).to(torch.get_default_dtype()))
        self.model.train(was_training)
        return predicted, true


class Critic(SyntheticLoss):
    """`SyntheticLoss` with Sobolev training: each loss model also matches its input-gradient to the
    per-example synthetic-gradient targets (true at the top, bootstrapped below), so ∂L̂/∂h is a learned
    synthetic gradient and L̂ a predicted loss (Czarnecki et al. 2017, arXiv 1706.04859).

    The value term must not dominate: the gradient term sums the squared errors of a block's `width`
    gradient components, and with value weight 1 the value takes over the shared parameters of a
    quadratic loss model (½ hᵀQh sums width² terms) and the slope is fitted badly (on MNIST after 60
    steps the top block's cosine to the true gradient was 0.08 with weight 1, about 0.7 with 1 / 256).
    value_weight=None gives 1 / width. The default, 1e-3, is smaller still: on the MNIST FCN at the
    quick size, over seeds 0-2, it left the critic 0.48 points behind cDNI on average (0.45-0.50),
    against 0.61 (0.51-0.72) for 1 / width, with an equally readable predicted loss (correlation with
    the true test loss 0.80 against 0.81).
    """

    method = "critic"

    def __init__(self, model, lr, gradient_weight=1.0, value_weight=1e-3, **options):
        if gradient_weight <= 0:
            raise ValueError(f"a critic needs gradient_weight > 0 (0 is SyntheticLoss), got {gradient_weight!r}.")
        super().__init__(model, lr, gradient_weight=gradient_weight, value_weight=value_weight, **options)


def predicted_and_true(model, loss_models, x, y, onehot):
    """Per hidden block: ∂L̂_i/∂h_i and the true per-example gradient (both batch size x dL/dh), plus the
    top loss model's predicted per-example loss and the true one. Works on deep copies in training mode
    (as during training), so the real networks and their BatchNorm statistics are untouched."""
    model, loss_models = copy.deepcopy(model), copy.deepcopy(loss_models)
    hs, logits = hidden_outputs(model, x)
    losses = F.cross_entropy(logits, y, reduction="none")
    true = torch.autograd.grad(losses.mean(), hs)
    predicted, values = [], []
    for m, h in zip(loss_models, hs):
        value, gradient = value_and_gradient(m, h, onehot)
        predicted.append(gradient.detach())
        values.append(value.detach())
    batch = x.shape[0]
    return predicted, [g.detach() * batch for g in true], values, losses.detach()


def _width(block):
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("loss models need Linear blocks (the MNIST FCN); got a block without nn.Linear.")
    return linears[-1].out_features
