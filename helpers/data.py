"""Datasets as whole tensors on the training device.

MNIST and CIFAR-10 are small enough to live on the device in full, so the training loop draws each
batch by indexing with a random permutation: no DataLoader, no per-batch copies. Inputs are scaled to
[0, 1] as in the paper (Jaderberg et al. 2016, appendix).

Data is read from (or downloaded into) the project's `data/` folder, or from $SG_DATA if set.
Used by notebooks 00-09.
"""
import os
import pathlib
from dataclasses import dataclass

import torch

DATA_DIR = pathlib.Path(os.environ.get("SG_DATA", pathlib.Path(__file__).resolve().parent.parent / "data"))

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class DataNotFoundError(FileNotFoundError):
    """The data set is neither on disk nor downloadable; the message says how to get it."""


@dataclass
class Dataset:
    """Train and test tensors on one device. `x` is float in [0, 1] of shape (N, C, H, W); `y` is int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10
    standin: bool = False

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        label = " (STAND-IN, not the real data)" if self.standin else ""
        return (f"Dataset({self.name}{label}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"{self.num_classes} classes, on {self.x_train.device})")


def _to_device(name, x_train, y_train, x_test, y_test, device, standin=False):
    """uint8 images (N, C, H, W) -> float in [0, 1] on `device`."""
    def prepare(x):
        return x.to(device=device).float().div_(255.0)
    return Dataset(name, prepare(x_train), y_train.to(device=device, dtype=torch.long),
                   prepare(x_test), y_test.to(device=device, dtype=torch.long), standin=standin)


def _missing_message(name, folder, how):
    return (f"{name} is not in {folder} and could not be downloaded (no internet?).\n"
            f"To fix it, either run this on a machine with internet once (torchvision downloads it into "
            f"{DATA_DIR}), or {how}")


def load_mnist(device="cpu", root=None, download=True):
    """The full MNIST (60,000 train, 10,000 test) as a `Dataset` on `device`.

    Offline and missing, raises `DataNotFoundError` naming the folder and the command that fixes it.
    """
    from torchvision.datasets import MNIST

    root = pathlib.Path(root or DATA_DIR)
    raw = root / "MNIST" / "raw"
    try:
        train = MNIST(root, train=True, download=download)
        test = MNIST(root, train=False, download=download)
    except (RuntimeError, OSError) as error:
        how = ("copy the four uncompressed files (" + ", ".join(MNIST_FILES) + f") into {raw}.\n"
               "From a copy of the .gz files (e.g. ../shared/data/mnist), from the project root:\n"
               f"    mkdir -p {raw} && for f in ../shared/data/mnist/*.gz; do "
               f"gunzip -c \"$f\" > \"{raw}/$(basename \"$f\" .gz)\"; done")
        raise DataNotFoundError(_missing_message("MNIST", raw, how)) from error
    return _to_device("mnist", train.data.unsqueeze(1), train.targets,
                      test.data.unsqueeze(1), test.targets, device)


def load_cifar10(device="cpu", root=None, download=True, allow_standin=False):
    """CIFAR-10 (50,000 train, 10,000 test, 3x32x32) as a `Dataset` on `device`.

    If the real data is absent and cannot be downloaded, `allow_standin=True` returns `cifar10_standin()`
    instead, loudly labelled; otherwise `DataNotFoundError` says how to get the real data.
    """
    from torchvision.datasets import CIFAR10

    root = pathlib.Path(root or DATA_DIR)
    try:
        train = CIFAR10(root, train=True, download=download)
        test = CIFAR10(root, train=False, download=download)
    except (RuntimeError, OSError) as error:
        if allow_standin:
            print("WARNING: CIFAR-10 is not available here; using a synthetic STAND-IN. "
                  "Numbers below say nothing about CIFAR-10 itself.")
            return cifar10_standin(device)
        how = (f"download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it in {root} "
               f"(it creates {root / 'cifar-10-batches-py'}).")
        raise DataNotFoundError(_missing_message("CIFAR-10", root / "cifar-10-batches-py", how)) from error

    def images(d):
        return torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous()
    return _to_device("cifar10", images(train), torch.tensor(train.targets),
                      images(test), torch.tensor(test.targets), device)


def cifar10_standin(device="cpu", n_train=5_000, n_test=1_000, seed=0, shift=12, noise=0.8):
    """A learnable, clearly fake stand-in with CIFAR-10's shapes: 10 smooth colour templates, each image
    one of them shifted (circularly, up to `shift` pixels), with random contrast and strong noise.

    Only for exercising CIFAR code paths where the real data cannot be had (CI has no internet). It is
    hard enough that methods differ (a linear readout of random features does far worse than backprop),
    but says nothing about CIFAR-10. Its name is `cifar10-standin` and `standin=True`, so every table
    and figure can say so.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.nn.functional.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=32, mode="bilinear")
    positions = torch.arange(32)

    def draw(n):
        y = torch.randint(0, 10, (n,), generator=g)
        down, right = (torch.randint(-shift, shift + 1, (n, 1, 1), generator=g) for _ in range(2))
        rows, cols = (positions.view(1, -1, 1) - down) % 32, (positions.view(1, 1, -1) - right) % 32
        x = templates[y.view(-1, 1, 1), :, rows, cols].permute(0, 3, 1, 2).contiguous()   # each one shifted
        contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
        x = 0.5 + contrast * (x - 0.5) + noise * torch.randn(n, 3, 32, 32, generator=g)
        return (x.clamp(0, 1) * 255).to(torch.uint8), y
    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return _to_device("cifar10-standin", x_train, y_train, x_test, y_test, device, standin=True)


def random_crop_flip(x, padding=4):
    """Data augmentation on the device: a random crop of `x` zero-padded by `padding`, and a random
    horizontal flip, drawn independently per example (the usual CIFAR-10 recipe; DGL's numbers used it).

    Vectorised (one gather for the whole batch, no Python loop over images) and drawn from torch's global
    random state, which `config.setup` seeds. x: (N, C, H, W); returns a new tensor of the same shape.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}.")
    n, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    flip = torch.rand(n, 1, 1, device=x.device) < 0.5
    across = torch.arange(width, device=x.device).view(1, 1, -1)
    rows = top + torch.arange(height, device=x.device).view(1, -1, 1)
    cols = left + torch.where(flip, width - 1 - across, across)          # a flip reads the crop backwards
    crop = padded[torch.arange(n, device=x.device).view(-1, 1, 1), :, rows, cols]   # (N, H, W, C)
    layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last     # keep x's layout
    return crop.permute(0, 3, 1, 2).contiguous(memory_format=layout)


def random_batches(n, batch_size, device, generator):
    """Endless index batches: a fresh random permutation of range(n) each epoch, cut into full batches."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} examples).")
    while True:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
