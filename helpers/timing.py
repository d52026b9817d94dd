"""Timing: one step timer, and the two timing experiments the notebooks show.

- `step_seconds(step, steps)`: wall seconds of each call of `step()`, after warm-up calls, with the GPU
  synchronised around every call on CUDA (kernels run asynchronously; without it a timer measures only
  the launch). Every timing in the series goes through it: `make bench`, `make bench-cnn`, and
- `full_unlock_times` (notebook 06): backprop, the fully unlocked units one after another, the same
  units in one process each, and the ideal for the concurrent version;
- `pipeline_throughput` (notebook 09, `make bench-pipeline`): samples per second of the locked and the
  decoupled pipeline, one process per stage.
"""
import os
import statistics
import time

import torch

from . import pipeline
from .models import fcn
from .training import Backprop
from .unlock import ConcurrentFullUnlock, make_units, step_units


def step_seconds(step, steps, warmup=1, device=None):
    """Seconds taken by each of `steps` calls of `step()` after `warmup` untimed ones. `device`: where the
    work runs (default: the CPU); on CUDA the device is synchronised before and after each call."""
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median_ms(step, steps, warmup=1, device=None):
    """The median of `step_seconds`, in milliseconds."""
    return 1e3 * statistics.median(step_seconds(step, steps, warmup, device))


def full_unlock_times(widths, layers=3, steps=10, batch_size=256, workers_threads=1, seed=0):
    """Median ms per training step on the CPU, for each hidden width: backprop, the fully unlocked units
    one after another, the same units in one process each, and the ideal for the concurrent version.

    The ideal is what perfect parallelism on this machine could give: the slowest unit, or all units'
    single-threaded work spread over the cores, whichever is longer. Returns a list of dicts.
    """
    cores = os.cpu_count() or 1
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(batch_size, 1, 28, 28, generator=g), torch.randint(0, 10, (batch_size,), generator=g)
    rows = []
    for width in widths:
        torch.manual_seed(seed)
        backprop = Backprop(fcn(layers, hidden=width), 1e-4)
        units = make_units(fcn(layers, hidden=width), 1e-4)
        row = {"width": width, "backprop_ms": median_ms(lambda: backprop.step(x, y), steps),
               "sequential_ms": median_ms(lambda: step_units(units, x, y), steps)}
        threads = torch.get_num_threads()
        torch.set_num_threads(workers_threads)
        try:   # each unit's own work, single-threaded, as a worker does it
            messages = [u.run(x, y) for u in units]
            unit_ms = []
            for i, u in enumerate(units):
                below = messages[i - 1][0] if i > 0 else None
                above = messages[i + 1][1] if i + 1 < len(units) else None
                unit_ms.append(median_ms(lambda: (u.run(x, y), u.learn(below, above)), steps))
        finally:
            torch.set_num_threads(threads)
        row["ideal_ms"] = max(max(unit_ms), sum(unit_ms) / cores)
        with ConcurrentFullUnlock(units) as runner:
            row["concurrent_ms"] = median_ms(lambda: runner.step(x, y), steps)
        rows.append(row)
    return rows


def pipeline_steps_for(width, stages):
    """Enough pipeline steps for about two seconds of locked work at this width on a 2-core CPU (>= 12)."""
    return max(12, int(120 * (256 / width) ** 1.5 * 2 / stages))


def pipeline_throughput(stages, width, data, blocks=pipeline.BLOCKS_PER_STAGE, repeats=3, steps=None):
    """Median samples/s of the locked and the decoupled pipeline over `repeats` short runs, and their ratio."""
    row = {"stages": stages, "width": width, "layers": blocks * stages + 1}
    for mode in pipeline.MODES:
        config = pipeline.PipelineConfig(stages=stages, mode=mode, hidden=width, layers=blocks * stages + 1,
                                         steps=steps or pipeline_steps_for(width, stages), keep_state=False,
                                         timeout=60)
        row[mode] = statistics.median(pipeline.throughput(config, pipeline.launch(config, data))
                                      for _ in range(repeats))
    row["ratio"] = row["decoupled"] / row["locked"]
    return row
