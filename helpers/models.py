"""The paper's networks, built as an ordered list of blocks.

Each model is an `nn.Sequential` whose items are the blocks between which a network can be cut: a
decoupled neural interface sits after any block but the last. Depth is counted as the paper counts it
(Jaderberg et al. 2016, the feed-forward experiments): the output layer is included, so a "3-layer FCN" has two hidden
blocks and one output block, and `layers` in every results file means this count. Notebooks 00-09;
the recurrent model of notebook 08 is `rnn.RecurrentModel`.
"""
import torch.nn as nn


def _check_layers(layers):
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 2:
        raise ValueError(f"layers must be an int >= 2 (hidden blocks + the output layer), got {layers!r}. "
                         "The paper's MNIST FCNs have 3 to 6 layers.")


def fcn(layers=3, hidden=256, in_features=784, num_classes=10):
    """Fully connected network: (layers - 1) blocks of Linear -> BatchNorm -> ReLU, then Linear to classes.

    The first block flattens its input, so every model takes images of shape (N, C, H, W).
    """
    _check_layers(layers)
    if hidden < 1 or in_features < 1 or num_classes < 2:
        raise ValueError(f"hidden, in_features must be >= 1 and num_classes >= 2; got {hidden}, "
                         f"{in_features}, {num_classes}.")
    blocks = []
    width = in_features
    for i in range(layers - 1):
        head = [nn.Flatten()] if i == 0 else []
        blocks.append(nn.Sequential(*head, nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()))
        width = hidden
    blocks.append(nn.Sequential(nn.Linear(width, num_classes)))
    return nn.Sequential(*blocks)


def cnn(layers=3, channels=128, in_channels=1, image_size=28, num_classes=10):
    """Convolutional network: (layers - 1) blocks of 5x5 conv (same padding) -> BatchNorm -> ReLU -> 3x3
    pooling (max after the first block, average after the others; stride 2), then Linear to classes.

    The paper's CIFAR-10 CNN uses 128 filters (Jaderberg et al. 2016, appendix); `channels` is smaller in
    shortened runs on a CPU.
    """
    _check_layers(layers)
    if channels < 1 or in_channels < 1 or image_size < 1:
        raise ValueError(f"channels, in_channels and image_size must be >= 1; got {channels}, "
                         f"{in_channels}, {image_size}.")
    blocks = []
    width, size = in_channels, image_size
    for i in range(layers - 1):
        pool = nn.MaxPool2d(3, stride=2, padding=1) if i == 0 else nn.AvgPool2d(3, stride=2, padding=1)
        blocks.append(nn.Sequential(nn.Conv2d(width, channels, 5, padding=2), nn.BatchNorm2d(channels),
                                    nn.ReLU(), pool))
        width, size = channels, (size + 1) // 2
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(width * size * size, num_classes)))
    return nn.Sequential(*blocks)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
