"""Run sizes, device and seeding: the one place every notebook reads them from (all notebooks, 00-10).

A run size is a schedule, not a different experiment: `smoke` (CI, seconds), `quick` (the default on a
CPU, minutes, still meaningful accuracy), `long` (r2rt's 25k iterations, for the seeds experiment on a CPU)
and `paper` (Jaderberg et al. 2016, appendix: Adam, batch 256, 500k iterations, learning rate 3e-5
divided by 10 at 300k and 400k). Smaller sizes only shorten the same
code path; every figure and results file says which size produced it.

Choose the size with the environment variable ``SG_SIZE`` (``smoke``, ``quick``, ``long`` or ``paper``).

Every table that depends on the size is here: `SIZES` (the MNIST FCN schedule, notebooks 01-06 and 09),
`FCN_DEPTHS` (01, 03, 06), `CNN_SIZES` (07), `RECURRENT_SIZES` (08), `ASYNC_SIZES` (09) and `AFTER_SIZES` (10),
each read through a function of the same size name (`fcn_depths()`, `cnn_size()`, `recurrent_size()`,
`async_size()`, `after_size()`).
"""
import os
import pathlib
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

SIZE_VARIABLE = "SG_SIZE"
DEFAULT_SIZE = "quick"


@dataclass(frozen=True)
class RunSize:
    """A training schedule. The learning rate is divided by 10 at each fraction in `decay_at`.
    `checkpoint_every` (iterations, a multiple of eval_every; 0 = never): how often `training.train`
    saves a run it can resume after a disconnect (see `checkpoint_folder`)."""

    name: str
    iterations: int
    lr: float
    batch_size: int = 256
    eval_every: int = 250
    decay_at: tuple = (0.6, 0.8)
    checkpoint_every: int = 0

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
    # S. Pitis's (r2rt.com) schedule, the one published schedule a CPU can run: 25k iterations of batch 256.
    # lr 1e-4 as at the quick size (r2rt used 3e-5 without decay; see scripts/seeds.py and results/README.md).
    "long": RunSize("long", iterations=25_000, lr=1e-4, eval_every=1_000),
    "paper": RunSize("paper", iterations=500_000, lr=3e-5, eval_every=5_000, checkpoint_every=25_000),
}


def run_size(name=None):
    """The run size named by `name`, else by $SG_SIZE, else `quick`. An unknown name is an error."""
    name = name if name is not None else os.environ.get(SIZE_VARIABLE, DEFAULT_SIZE)
    key = name.strip().lower()
    if key not in SIZES:
        raise ValueError(f"Unknown run size {name!r} (from ${SIZE_VARIABLE} or the argument). "
                         f"Choose one of {', '.join(SIZES)}, e.g. `export {SIZE_VARIABLE}=quick`.")
    return SIZES[key]


# Notebook 07: the CNN's schedule, its filters and the synthesizers' hidden filters. The CPU sizes shorten
# the paper's (128 filters, batch 256, 500k iterations at lr 3e-5) as notebook 07 explains.
CNN_SIZES = {
    "smoke": dict(schedule=RunSize("smoke", iterations=20, lr=1e-3, batch_size=64, eval_every=10),
                  channels=8, synthesizer_filters=8),
    "quick": dict(schedule=RunSize("quick", iterations=600, lr=1e-3, batch_size=128, eval_every=100),
                  channels=16, synthesizer_filters=16),
    "paper": dict(schedule=SIZES["paper"], channels=128, synthesizer_filters=128),
}
# The CNN rows of the reference tier (issue 26; scripts/seeds.py, the paper's Table 1 MNIST CNN at 3 and 4 layers:
# backprop, no backprop, DNI, cDNI over seeds 0-2): notebook 07's CNN and synthesizers (DNI: two hidden conv layers,
# cDNI: none, as 07 builds them) at 16 filters, for 5,000 iterations (8x notebook 07's quick size). Measured steps,
# one thread on this 2-core CPU, batch 128, 3 / 4 layers: backprop 32 / 35 ms, no backprop 19 / 20, DNI 92 / 92,
# cDNI 52 / 69 (32 filters: 2.3-2.6x as long), so the 24 runs take ~2 core-hours. The paper's 128 filters and 500k
# iterations are a GPU's work.
CNN_TIER = {
    "long": dict(schedule=RunSize("long-cnn", iterations=5_000, lr=1e-3, batch_size=128, eval_every=500),
                 channels=16, synthesizer_filters=16),
    "smoke": dict(schedule=RunSize("smoke-cnn", iterations=20, lr=1e-3, batch_size=64, eval_every=10),
                  channels=8, synthesizer_filters=8),
}

# Notebook 08. Every copy run reads the same number of characters (time steps) whatever its window T, so
# that windows compare at equal data; each grid runs every method over `seeds`. `fixed`: the experiment at
# one copy length without a curriculum (does M learn the future's gradient?); `repeat_*`: the repeat-copy
# curriculum; `text_*`: the character model. One learning rate for every recurrent run (Adam).
RECURRENT_LR = 1e-3
TEXT_LR = 2e-3   # train_text's default when called on its own; notebook 08 uses RECURRENT_LR for both
RECURRENT_SIZES = {
    "smoke": dict(windows=[2, 3], characters=240, hidden=16, batch=8, seeds=[0, 1, 2],
                  fixed=dict(window=2, length=2, characters=120),
                  repeat_windows=[2, 3], repeat_characters=240,
                  text_window=4, text_characters=200, text_chars_max=40_000),
    # quick: the curricula at T = 5 only (the fixed-length runs show T = 2), so notebook 08 fits minutes on 2 cores
    "quick": dict(windows=[5], characters=24_000, hidden=128, batch=32, seeds=[0, 1, 2],
                  fixed=dict(window=2, length=2, characters=8_000),
                  repeat_windows=[5], repeat_characters=12_000,
                  text_window=5, text_characters=20_000, text_chars_max=None),
    "paper": dict(windows=[2, 3, 4, 5, 8], characters=2_000_000, hidden=256, batch=32, seeds=[0, 1, 2],
                  fixed=dict(window=2, length=4, characters=200_000),
                  repeat_windows=[2, 3, 4, 5, 8], repeat_characters=2_000_000,
                  text_window=5, text_characters=2_000_000, text_chars_max=None),
}

# The recurrent tier (issue 27), trained once by `make recurrent SG_SIZE=long` (scripts/recurrent.py) and
# loaded by notebook 08 (helpers.recurrent_tier): both curricula at T = 2-5, 3 methods, seeds 0-2 (72 runs) at the
# paper's 256 units. Cost per run of 250k characters, one thread on this 2-core CPU while it trained other runs
# (upper bounds; cosine probe included): at T = 2 truncated BPTT ~12 min (355 characters/s), DNI ~16 (273/s),
# DNI + Aux ~25 (167/s); at T = 5 ~6, ~10 and ~12 min (672, 443, 376/s). The grid ~15 core-hours (~8 h on two
# workers), T = 2 and 3 (first in the queue) ~9. The learning rate is the tier's own, chosen by measurement (DNI,
# copy, T = 2, seed 0, 256 units): at notebook 08's Adam 1e-3 DNI solved N = 2 within ~25k characters and then sat at
# N = 3 with an error of ~0.4-0.5 bits per vector (the curriculum asks < 0.15) for the other ~225k: the step size, not
# the budget, was the limit. At 3e-4 it solved N = 3 within 120k characters and its error at N = 4 was still falling;
# at 1e-4 the same N = 3, later. Scale 0.2 behaved as 0.1; 0.5 and 1.0, and a synthesizer with one hidden layer,
# solved nothing in 80k. Truncated BPTT at 3e-4: nothing in 120k, as at 1e-3. The lr 1e-3 runs stay in the results
# file under their own settings (notebook 08 reads them as the evidence). Not a notebook size: notebook 08 at
# SG_SIZE=long keeps the quick settings above; `recurrent_tier_size` reads this table.
RECURRENT_TIER = {
    "long": dict(windows=[2, 3, 4, 5], characters=250_000, hidden=256, batch=32, lr=3e-4, seeds=[0, 1, 2],
                 fixed=dict(window=2, length=2, characters=8_000),
                 repeat_windows=[2, 3, 4, 5], repeat_characters=250_000,
                 text_windows=[2, 5], text_characters=150_000, text_lr=RECURRENT_LR, text_chars_max=None),
}
# The character model in the tier (recurrent_tier.TEXT; truncated BPTT and DNI, seeds 0-2, at T = 2 and 5): 256 units
# on 418k characters of training text overfit within a few passes, so the tier stops early on a validation half of the
# held-out text, as the paper did on Penn Treebank, and the budget only has to pass the validation minimum. Measured at
# T = 5, seed 0 (one thread, 30 evaluations per run): at Adam 1e-3 (notebook 08's) the validation bits fell to ~2.0 by
# 50k characters and then wandered within ~0.05 to 90k, with training bits 0.55 below them; at 3e-4 they were still
# 2.23 at 80k. So 1e-3 and 150k characters (~4-5 min a run at T = 5, ~8-10 at T = 2; ~1.4 core-hours for the 12 runs).

# Notebook 09: iterations of the stochastic / multi-rate runs (None: the run size's own), pipeline widths per
# number of stages, repeats of each throughput measurement, steps per measurement (None: about two seconds
# of locked work), and the timeline's and the equal-time comparison's settings.
ASYNC_SIZES = {
    "smoke": dict(iterations=60, widths={2: [64], 4: [64]}, repeats=1, steps=12, timeline_width=64,
                  equal_width=64, equal_seconds=1),
    "quick": dict(iterations=1_500, widths={2: [256, 1024, 2048], 4: [256]}, repeats=2, steps=None,
                  timeline_width=1024, equal_width=1024, equal_seconds=15),
    "paper": dict(iterations=None, widths={2: [256, 1024, 2048, 4096], 4: [256, 1024, 2048]},
                  repeats=5, steps=None, timeline_width=2048, equal_width=2048, equal_seconds=120),
}

# Notebooks 01, 03 and 06: the depths of the MNIST FCN (layers, counting the output layer). `sweep`: the depth
# comparison of 01 and 03 (the paper: 3 to 6 layers; the CPU sizes keep both ends, so that a notebook fits a few
# minutes on 2 cores); `unlock`: the depths notebook 06 trains fully unlocked.
FCN_DEPTHS = {
    "smoke": dict(sweep=[3, 6], unlock=[3]),
    "quick": dict(sweep=[3, 6], unlock=[3]),
    "paper": dict(sweep=[3, 4, 5, 6], unlock=[3, 4]),
}

# Notebook 10: DGL beside DNI. The MNIST FCN schedule (at every size the series' own, so that DGL is compared on the
# schedule of notebooks 01-06 and the runs 01 and 03 trained are reused), depths, the seeds trained in the notebook
# (quick: seed 0; seeds 0-2 of every method come from the committed seeds files at the quick and long sizes), the
# buffer sizes of the asynchronous variant, and the CNN's schedule, filters and seeds.
AFTER_SIZES = {
    "smoke": dict(schedule=SIZES["smoke"], depths=[3, 6], seeds=[0, 1], buffers=[1, 4],
                  cnn=RunSize("smoke", iterations=20, lr=1e-3, batch_size=64, eval_every=10), cnn_channels=8,
                  cnn_seeds=[0]),
    "quick": dict(schedule=SIZES["quick"], depths=[3, 6], seeds=[0],
                  buffers=[1, 4, 16], cnn=RunSize("quick", iterations=150, lr=1e-3, batch_size=64, eval_every=75),
                  cnn_channels=16, cnn_seeds=[0, 1, 2]),
    "paper": dict(schedule=SIZES["paper"], depths=[3, 6], seeds=[0, 1, 2], buffers=[1, 4, 16],
                  cnn=SIZES["paper"], cnn_channels=128, cnn_seeds=[0, 1, 2]),
}

# The pipeline's defaults (helpers/pipeline.py): Adam's learning rate and the length of a run.
PIPELINE_LR = 1e-4
PIPELINE_STEPS = 100


def _settings(table, name):
    """A notebook's settings for a run size; `long` (a longer MNIST FCN schedule) runs the others' quick ones."""
    name = run_size(name).name
    return table[name] if name in table else table["quick"]


def fcn_depths(name=None):
    """The MNIST FCN depths of notebooks 01, 03 (`sweep`) and 06 (`unlock`) for the run size `name`."""
    return _settings(FCN_DEPTHS, name)


def cnn_size(name=None):
    """Notebook 07's settings for the run size `name` (else $SG_SIZE)."""
    return _settings(CNN_SIZES, name)


def recurrent_size(name=None):
    """Notebook 08's settings for the run size `name` (else $SG_SIZE)."""
    return _settings(RECURRENT_SIZES, name)


def recurrent_tier_size(name=None):
    """The recurrent tier's settings (scripts/recurrent.py, helpers.recurrent_tier): `RECURRENT_TIER` at the long
    size, else notebook 08's own (so that the smoke size tests the same code in seconds)."""
    name = run_size(name).name
    return RECURRENT_TIER[name] if name in RECURRENT_TIER else recurrent_size(name)


def async_size(name=None):
    """Notebook 09's settings for the run size `name` (else $SG_SIZE); iterations filled in from the size."""
    settings = dict(_settings(ASYNC_SIZES, name))
    settings["iterations"] = settings["iterations"] or run_size(name).iterations
    return settings


def after_size(name=None):
    """Notebook 10's settings for the run size `name` (else $SG_SIZE)."""
    return _settings(AFTER_SIZES, name)


def device():
    """The training device: $SG_DEVICE if set (e.g. `cpu`), else CUDA when available, else the CPU."""
    wanted = os.environ.get("SG_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_has_fast_bfloat16():
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:                      # not Linux: assume no fast bfloat16 (macOS arm64 and x86 alike)
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def amp_dtype(device):
    """The dtype for mixed precision (autocast) on `device`: bfloat16 where the hardware computes it fast
    (CUDA GPUs from Ampere on, i.e. compute capability 8.0+; CPUs with AVX512-BF16 or AMX), else float32,
    i.e. no autocast. `amp_reason(device)` says why. Used by training.train(amp=True) and notebook 07.

    Not float16 on older GPUs (a T4, Colab's usual GPU): float16 needs loss scaling, and a synthetic
    gradient is injected into a block directly, never through a loss a scaler could scale, so every
    learner would need its own scaling. Those GPUs run the series in float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_has_fast_bfloat16() else torch.float32
    return torch.float32


def amp_reason(device):
    """One sentence: which dtype `amp_dtype(device)` chose and why."""
    device = torch.device(device)
    chosen = "bfloat16" if amp_dtype(device) == torch.bfloat16 else "float32 (no autocast)"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        why = (f"compute capability {major}.{minor}: " +
               ("bfloat16 tensor cores" if (major, minor) >= (8, 0) else "no bfloat16 tensor cores"))
    elif device.type == "cpu":
        why = "this CPU " + ("has" if _cpu_has_fast_bfloat16() else "lacks") + " AVX512-BF16 / AMX"
    else:
        why = f"no mixed-precision rule for {device.type}"
    return f"{chosen}: {why}"


def checkpoint_folder():
    """Where long runs keep their checkpoints: $SG_CHECKPOINTS if set; on Colab with Google Drive mounted,
    a folder in Drive (it outlives a disconnected runtime); otherwise checkpoints/ in the project."""
    if os.environ.get("SG_CHECKPOINTS"):
        return pathlib.Path(os.environ["SG_CHECKPOINTS"])
    drive = pathlib.Path("/content/drive/MyDrive")
    if drive.is_dir():
        return drive / "synthetic-gradients-checkpoints"
    return pathlib.Path(__file__).resolve().parent.parent / "checkpoints"


def runs_folder():
    """Where `training.train(..., reuse=True)` keeps finished runs for later notebooks: $SG_RUNS if set,
    else results/runs/ in the project (not committed)."""
    if os.environ.get("SG_RUNS"):
        return pathlib.Path(os.environ["SG_RUNS"])
    return pathlib.Path(__file__).resolve().parent.parent / "results" / "runs"


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
