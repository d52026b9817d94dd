"""The full unlock follows the data, not the rounding: its run is the same at any thread count and kernel.

How a sum is grouped (the thread count, the CPU's vector kernels) changes its last digits, so a run that
depends on last digits is a different run on another machine. The full unlock once was one: its input
synthesizers started at zero, every block above the first saw identical rows, and BatchNorm of identical
rows passes on only the rounding residue of the batch mean, which Adam turns into full-size steps
(helpers/synthesizers.py, `InputSynthesizer`). The other methods stay within ~1e-11 of each other across
thread counts; this checks the full unlock's regression run (float64, tests/test_regression.py) at 1, 2 and
3 threads and with torch's non-vectorised kernels (ATEN_CPU_CAPABILITY=default, read at start-up, so in a
process of its own). With the zero start the runs differ from the first evaluation on (test accuracy
0.09 / 0.19 / 0.14 after 30 steps at 1 / 2 / 3 threads).
"""
import json
import os
import pathlib
import subprocess
import sys

import test_regression as regression

ROOT = pathlib.Path(__file__).resolve().parent.parent


def agree(a, b, where=""):
    """a and b agree to rounding: every number within 1e-9 relative (1e-12 absolute)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            agree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            agree(x, y, f"{where}[{k}]")
    else:
        assert abs(a - b) <= 1e-12 + 1e-9 * abs(a), f"{where}: {a!r} and {b!r} differ by more than rounding"


def full_unlock(threads, small=None):
    """The full unlock's regression run at `threads` threads, with input synthesizers 64 wide (1024 in the
    record: the same arithmetic, a fifth of the time)."""
    with regression.float64(threads):
        run = regression.fcn_run("full_unlock", small or regression.small_mnist(), input_hidden=64)
    return json.loads(json.dumps(run))


def test_the_full_unlock_is_the_same_run_at_any_thread_count_and_kernel():
    with regression.float64():
        small = regression.small_mnist()
    one = full_unlock(1, small)
    for threads in (2, 3):
        agree(one, full_unlock(threads, small), f"{threads} threads")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env=env, capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "DEFAULT", "torch ignored ATEN_CPU_CAPABILITY: the kernels were not switched"
    script = "import json, test_rounding; print(json.dumps(test_rounding.full_unlock(1)))"
    done = subprocess.run([sys.executable, "-c", script], env={**env, "PYTHONPATH": str(ROOT / "tests")},
                          capture_output=True, text=True, check=True, cwd=ROOT)
    agree(one, json.loads(done.stdout.strip().splitlines()[-1]), "default kernels")
