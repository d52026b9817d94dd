"""Median time per training step of the paper's CIFAR-10 CNN: backprop, DNI and cDNI, in float32 and with
channels-last memory and/or bfloat16 autocast (what `training.train(..., amp=True)` does).

    make bench-cnn                   # or: python benchmarks/cnn_step_time.py --channels 128 --steps 20

Inputs are random 3x32x32 images (no data needed). The default width is the paper's 128 filters on a GPU
and 32 on a CPU, where one 128-filter DNI step takes seconds. Prints figures only.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import config, learners, models, timing  # noqa: E402

VARIANTS = {"float32": (False, False), "channels last": (True, False), "bf16 autocast": (False, True),
            "both": (True, True)}


def make_learner(method, channels, device, channels_last):
    model = models.cnn(3, channels=channels, in_channels=3, image_size=32).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if method == "backprop":
        return learners.make("backprop", model, 1e-4)
    return learners.make(method, model, 1e-4, hidden_layers=2 if method == "dni" else 0, hidden=channels)


def median_ms(learner, x, y, amp, steps, device):
    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            learner.step(x, y)
    return timing.median_ms(step, steps, warmup=2, device=device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=None, help="filters (default: 128 on a GPU, 32 on a CPU)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = config.device()
    channels = args.channels or (128 if device.type == "cuda" else 32)
    config.seed_everything(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}), torch {torch.__version__}, {channels} filters, batch {args.batch_size}, "
          f"median of {args.steps} steps; speed-up over float32 in brackets")
    print(f"{'method':>9} " + " ".join(f"{name:>20}" for name in VARIANTS))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
    for method in ("backprop", "dni", "cdni"):
        cells, base = [], None
        for channels_last, amp in VARIANTS.values():
            learner = make_learner(method, channels, device, channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            ms = median_ms(learner, inputs, y, amp, args.steps, device)
            base = base or ms
            cells.append(f"{ms:.1f} ms ({base / ms:.2f}x)")
        print(f"{method:>9} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
