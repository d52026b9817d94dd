"""Synthesizers: small models that predict what a block would otherwise have to wait for.

`GradientSynthesizer` is the paper's synthetic-gradient model M(h) ≈ dL/dh (Jaderberg et al. 2016,
section 2): linear, or an MLP with hidden layers of 1024 units (Linear, BatchNorm, ReLU). Its last layer,
weights AND bias, starts at zero, so every synthesizer first predicts a zero gradient (paper, appendix):
a block then starts from where it is instead of being pushed by a random gradient.

`ConvGradientSynthesizer` does the same for feature maps (the paper's CIFAR-10 synthesizer), and
`synthesizer_for(block)` picks the right kind for a block. `InputSynthesizer` is the forward counterpart, I(x) ≈ a block's input, for the complete unlock.

Scale: a synthesizer predicts the *per-example* gradient, batch size x dL/dh for a batch-mean loss, and
the learner divides by the batch size before handing it to the block. Adam moves each weight by about
its learning rate per step whatever the loss scale, so a zero-initialised output layer regressing onto
mean-scaled targets (~1e-4 per element) overshoots them at once; per-example targets are O(1e-2..1).

The decoupled interface itself is three small functions, used by every learner that hands a block a
predicted gradient (DNI and cDNI, the critic, the full unlock, the pipeline's decoupled stage, 02-09):
`to_block` (what the block receives), `target_from` (the per-example regression target, from the gradient
that reached a block's input or output) and `regression_loss`. The batch-size factor lives only here.

Used by notebooks 02-09 (through the learners) and directly in 02, 04 and 06.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def to_block(prediction, batch, scale=1.0):
    """The gradient a block's output receives from a per-example prediction: scale x M(h) / batch (the loss
    is a batch mean). Detached: the block's update never trains the synthesizer."""
    return prediction.detach() * (scale / batch)


def target_from(gradient, batch, scale=1.0):
    """A synthesizer's per-example regression target from a gradient that reached a block: batch / scale x
    that gradient. At the top it is the true dL/dh (scale 1); below, the gradient at the input of the block
    above, which carries that block's scaled synthetic gradient, so dividing by the scale bootstraps the
    unscaled prediction (Jaderberg et al. 2016, supplementary A)."""
    return gradient.detach() * (batch / scale)


def regression_loss(prediction, target):
    """How a synthesizer learns: mean squared error to its (detached) per-example target."""
    return F.mse_loss(prediction, target.detach())


def zero_output_mlp(in_features, out_features, hidden_layers, hidden):
    """Linear, or `hidden_layers` x (Linear, BatchNorm, ReLU) then Linear, whose last layer starts at zero."""
    if hidden_layers not in (0, 1, 2):
        raise ValueError(f"hidden_layers must be 0, 1 or 2 (the paper's search range), got {hidden_layers!r}.")
    layers, width = [], in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    output = nn.Linear(width, out_features)
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    return nn.Sequential(*layers, output)


def with_context(h, context, context_features):
    """h with the context appended as extra features (a feature map gets it as constant planes).

    A synthesizer built with context_features > 0 (cDNI) needs a context of shape (N, context_features);
    one built without refuses any, so a label can never leak into a plain DNI synthesizer unnoticed.
    """
    if context_features == 0:
        if context is not None:
            raise TypeError("this synthesizer is not conditioned (context_features=0) and takes no context; "
                            "build it with context_features=num_classes for cDNI.")
        return h
    if context is None or context.shape != (h.shape[0], context_features):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"this synthesizer is conditioned: pass context of shape "
                         f"({h.shape[0]}, {context_features}) (e.g. one-hot labels), got {got}.")
    if h.dim() == 4:
        context = context[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, context], dim=1)


class GradientSynthesizer(nn.Module):
    """M(h) or, conditioned, M(h, c) ≈ per-example dL/dh, for a block output h of shape (N, features).

    hidden_layers: 0 (linear, the paper's cDNI choice) to 2 (the paper's DNI choice), each of `hidden`
    units. context_features: size of the context vector (10 for a one-hot MNIST label: cDNI); 0 for none.
    """

    def __init__(self, features, hidden_layers=0, hidden=1024, context_features=0):
        super().__init__()
        self.features, self.context_features, self.hidden_layers = features, context_features, hidden_layers
        self.net = zero_output_mlp(features + context_features, features, hidden_layers, hidden)

    @property
    def conditioned(self):
        return self.context_features > 0

    def forward(self, h, context=None):
        if h.dim() != 2 or h.shape[1] != self.features:
            raise ValueError(f"expected h of shape (N, {self.features}), got {tuple(h.shape)}.")
        return self.net(with_context(h, context, self.context_features))


class InputSynthesizer(nn.Module):
    """I(x) ≈ a block's input, from the flattened data x: the forward half of the complete unlock
    (Jaderberg et al. 2016, the complete unlock). Linear or an MLP; unlike the gradient synthesizers, its last
    layer keeps PyTorch's ordinary random initialisation.

    The paper zero-initialises *gradient* synthesizers so that an untrained DNI is no backprop: a zero
    gradient leaves a block where it is. An input has no such neutral value. A zero input is the same
    input for every example, and a block that starts Linear -> BatchNorm cannot normalise a batch of
    identical rows: what BatchNorm passes on is the rounding residue of the batch mean (~1e-14), whose
    signs depend on how the sum is grouped (thread count, CPU kernels), and Adam turns the resulting
    ~1e-15 gradients into steps of the learning rate's size. Such a run trains on rounding noise first:
    one and two threads gave different runs.

    A randomly initialised last layer makes I(x) a random function of x that differs from example to
    example, at the scale a layer's initialisation is chosen to keep: the same kind of input block i
    really receives at step 1, the output of a random block below. So its first steps follow the data, as
    a block above a random one does under every other method, while I(x) regresses onto the real
    activations. Scaling that start down moves towards what zero does in the limit (BatchNorm centring rows
    that differ only a little cancels more digits): in the regression run's parameters, 1 against 2 and 3
    threads differ by ~2e-14 relative with the ordinary start and ~2e-12 with 0.1x or 0.01x of it
    (tests/test_rounding.py checks the run at 1, 2, 3 threads and with torch's non-vectorised kernels).
    """

    def __init__(self, in_features, out_features, hidden_layers=0, hidden=1024):
        super().__init__()
        layers = zero_output_mlp(in_features, out_features, hidden_layers, hidden)
        layers[-1].reset_parameters()   # random, as any new Linear: see above
        self.net = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, x):
        return self.net(x)


class ConvGradientSynthesizer(nn.Module):
    """M(h) or M(h, c) ≈ per-example dL/dh for a feature map h of shape (N, channels, H, W).

    The paper's CIFAR-10 synthesizer (Jaderberg et al. 2016, appendix): `hidden_layers` 5x5 convolutions
    of `hidden` filters (BatchNorm, ReLU), then a 5x5 convolution back to `channels`, all with same
    padding; the last one's weights and bias start at zero. A context vector (the one-hot label, for
    cDNI) is broadcast over the map as `context_features` extra input channels.
    """

    def __init__(self, channels, hidden_layers=2, hidden=128, context_features=0, kernel_size=5):
        super().__init__()
        if hidden_layers not in (0, 1, 2):
            raise ValueError(f"hidden_layers must be 0, 1 or 2 (the paper's search range), got {hidden_layers!r}.")
        self.channels, self.context_features, self.hidden_layers = channels, context_features, hidden_layers
        layers, width, pad = [], channels + context_features, kernel_size // 2
        for _ in range(hidden_layers):
            layers += [nn.Conv2d(width, hidden, kernel_size, padding=pad), nn.BatchNorm2d(hidden), nn.ReLU()]
            width = hidden
        output = nn.Conv2d(width, channels, kernel_size, padding=pad)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.net = nn.Sequential(*layers, output)

    @property
    def conditioned(self):
        return self.context_features > 0

    def forward(self, h, context=None):
        if h.dim() != 4 or h.shape[1] != self.channels:
            raise ValueError(f"expected a feature map of shape (N, {self.channels}, H, W), got {tuple(h.shape)}.")
        return self.net(with_context(h, context, self.context_features))


def synthesizer_for(block, hidden_layers=0, context_features=0, hidden=None):
    """The default gradient synthesizer for a block's output: convolutional after a block that ends in a
    feature map (its last Conv2d decides the channels), otherwise fully connected (its last Linear)."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return ConvGradientSynthesizer(convs[-1].out_channels, hidden_layers, hidden or 128, context_features)
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("no default synthesizer for a block without Linear or Conv2d layers; pass synthesizers=.")
    return GradientSynthesizer(linears[-1].out_features, hidden_layers, hidden or 1024, context_features)
