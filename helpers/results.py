"""Results files: one JSON per notebook, in one format, written atomically.

`results/<notebook-stem>.json` holds what a notebook measured, so tables and checks read one format:
{"notebook", "size", "device", "torch", "seconds", "runs": [{"method", "layers", "iterations",
"test_accuracy", "history", ...}]}. Smoke runs (CI) write under `results/smoke/` so that they never
replace a real run; a file from a different run size is kept beside the new one, never overwritten.
Every notebook that trains (01-09) writes one; scripts/results_table.py reads them all.
"""
import json
import os
import pathlib
import re
import tempfile
import time

import torch

RESULTS_DIR = pathlib.Path(os.environ.get("SG_RESULTS", pathlib.Path(__file__).resolve().parent.parent / "results"))
METHOD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def run_record(history, **extra):
    """One entry of "runs" from a training `History`, plus any extra fields (e.g. the learning rate)."""
    return {"method": history.method, "layers": history.layers,
            "iterations": history.iteration[-1] if history.iteration else 0,
            "test_accuracy": history.final_test_accuracy, **extra, "history": history.as_dict()}


def _check_run(run):
    for key in ("method", "layers", "iterations", "test_accuracy"):
        if key not in run:
            raise ValueError(f"A run record needs {key!r}; got keys {sorted(run)}.")
    if not METHOD_NAME.match(str(run["method"])):
        raise ValueError(f"method {run['method']!r} must be one short lowercase name, e.g. 'backprop' or 'cdni'.")
    if not 0.0 <= run["test_accuracy"] <= 1.0:
        raise ValueError(f"test_accuracy must be a fraction in [0, 1], got {run['test_accuracy']!r}.")


def results_path(notebook, size, directory=None):
    directory = pathlib.Path(directory or RESULTS_DIR)
    return (directory / "smoke" if size == "smoke" else directory) / f"{notebook}.json"


def save_results(notebook, size, runs, seconds, device, directory=None, **extra):
    """Write the results of `notebook` (its file stem) atomically and return the path.

    The file is written to a temporary name in the same folder and renamed into place, so a crash never
    leaves half a file. If a file from another run size is already there, it is first renamed to
    `<notebook>.<its size>.json`.
    """
    for run in runs:
        _check_run(run)
    path = results_path(notebook, size, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"notebook": notebook, "size": size, "device": str(device), "torch": torch.__version__,
              "seconds": round(float(seconds), 2), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
              **extra, "runs": runs}
    if path.exists():
        try:
            old_size = json.loads(path.read_text()).get("size")
        except ValueError:
            old_size = "unreadable"
        if old_size != size:
            os.replace(path, path.with_name(f"{notebook}.{old_size}.json"))
    return write_json(path, record)


def write_json(path, record):
    """Write `record` to `path` as JSON atomically (a temporary file in the same folder, then a rename), so a
    crash never leaves half a file. Used for every results file and for scripts/run_notebooks.py's timings."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False)
    try:
        with handle:
            json.dump(record, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)   # temporary files are private; results are for everyone
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise
    return path


def load_results(path):
    return json.loads(pathlib.Path(path).read_text())


COMMITTED = pathlib.Path(__file__).resolve().parent.parent / "results"   # the results that ship with the series


def seeds(size="quick"):
    """The seeds experiment (scripts/seeds.py, `make seeds`): every 3-layer MNIST FCN method of notebooks 01-06
    over seeds 0-2. Read from the committed results/seeds_<size>.json, wherever $SG_RESULTS points, so that a
    notebook can show the spread over seeds without training anything. Returns (accuracies, synthesizers,
    iterations): {label: [test accuracy of seed 0, 1, 2, ...]}, {label: synthesizer description}, iterations."""
    path = COMMITTED / f"seeds_{size}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make seeds SG_SIZE={size}` to make it.")
    runs = sorted((r for r in json.loads(path.read_text())["runs"] if r.get("layers", 3) == 3),
                  key=lambda r: r["seed"])       # the long size's file also holds 4-6 layers (helpers.reference)
    accuracies, synthesizers = {}, {}
    for run in runs:
        accuracies.setdefault(run["label"], []).append(run["test_accuracy"])
        synthesizers[run["label"]] = run.get("synthesizer", "")
    return accuracies, synthesizers, runs[0]["schedule"]["iterations"]


def seeds_verdict(accuracies, a, b):
    """A difference between two methods only where every seed of one is above every seed of the other."""
    if min(accuracies[a]) > max(accuracies[b]):
        return f"{a} higher than {b} on every seed"
    if max(accuracies[a]) < min(accuracies[b]):
        return f"{a} lower than {b} on every seed"
    return f"{a} vs {b}: no clear difference at this size (the seeds overlap)"
