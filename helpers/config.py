"""Run sizes, device and seeding: the one place every notebook reads them from.

A run size is a schedule, not a different experiment: `smoke` (CI, seconds), `quick` (the default on a
CPU, minutes, still meaningful accuracy) and `paper` (Jaderberg et al. 2016, appendix: Adam, batch 256,
500k iterations, learning rate 3e-5 divided by 10 at 300k and 400k). Smaller sizes only shorten the same
code path; every figure and results file says which size produced it.

Choose the size with the environment variable ``SG_SIZE`` (``smoke``, ``quick`` or ``paper``).
"""
import os
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

SIZE_VARIABLE = "SG_SIZE"
DEFAULT_SIZE = "quick"


@dataclass(frozen=True)
class RunSize:
    """A training schedule. The learning rate is divided by 10 at each fraction in `decay_at`."""

    name: str
    iterations: int
    lr: float
    batch_size: int = 256
    eval_every: int = 250
    decay_at: tuple = (0.6, 0.8)

    def milestones(self):
        """Iterations at which the learning rate is divided by 10 (the paper: 300k and 400k of 500k)."""
        return [int(f * self.iterations) for f in self.decay_at]

    def describe(self):
        steps = ", ".join(f"{m:,}" for m in self.milestones())
        return (f"{self.name}: {self.iterations:,} iterations, batch {self.batch_size}, Adam lr {self.lr:g} "
                f"(/10 at {steps}), test accuracy every {self.eval_every:,}")

    def as_dict(self):
        return asdict(self)


# The paper tunes lr 3e-5 for 500k iterations; it is the slowest choice over short runs, so the shortened
# sizes use 1e-4 (independent runs on this CPU: backprop ~98.2% test accuracy after 5k iterations at 1e-4).
SIZES = {
    "smoke": RunSize("smoke", iterations=60, lr=1e-3, eval_every=20),
    "quick": RunSize("quick", iterations=5_000, lr=1e-4, eval_every=250),
    "paper": RunSize("paper", iterations=500_000, lr=3e-5, eval_every=5_000),
}


def run_size(name=None):
    """The run size named by `name`, else by $SG_SIZE, else `quick`. An unknown name is an error."""
    name = name if name is not None else os.environ.get(SIZE_VARIABLE, DEFAULT_SIZE)
    key = name.strip().lower()
    if key not in SIZES:
        raise ValueError(f"Unknown run size {name!r} (from ${SIZE_VARIABLE} or the argument). "
                         f"Choose one of {', '.join(SIZES)}, e.g. `export {SIZE_VARIABLE}=quick`.")
    return SIZES[key]


def device():
    """The training device: $SG_DEVICE if set (e.g. `cpu`), else CUDA when available, else the CPU."""
    wanted = os.environ.get("SG_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed=0):
    """Seed Python, NumPy and torch (all devices). Call once before building a model or data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed=0, size=None):
    """Set the seed, pick device and run size, print them, and return (size, device).

    Every notebook calls this in its set-up cell, so the size a run used is always printed at the top.
    """
    size = run_size(size)
    dev = device()
    seed_everything(seed)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Run size  {size.describe()}")
    print(f"Device    {dev} ({where}); torch {torch.__version__}; seed {seed}")
    return size, dev
