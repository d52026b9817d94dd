"""Re-train runs that notebooks 01-06 and 09 committed at the quick size and check that they reproduce.

    python scripts/check_reproduction.py                 # a default selection (about 5 minutes on 2 cores)
    python scripts/check_reproduction.py --all           # every FCN run of notebooks 01-06 and 09

Each run is built through `learners.make` exactly as its notebook builds it (same seed, options, schedule)
and its whole test-accuracy curve is compared with the committed results file. On the CPU the curves
must be identical to the last digit: a refactor of helpers/ must change no number. Prints one line per run.
"""
import argparse
import dataclasses
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers import config, data, learners, models, training  # noqa: E402

ASYNC = config.async_size("quick")["iterations"]   # notebook 09's shorter runs

# (results file, method in that file, layers, registry method, options, iterations or None for the size's)
RUNS = [
    ("01_backprop_baselines", "backprop", 3, "backprop", {}, None),
    ("01_backprop_baselines", "nobackprop", 4, "nobackprop", {}, None),
    ("02_dni", "dni", 3, "dni", {"hidden_layers": 1}, None),
    ("03_cdni", "cdni", 3, "cdni", {}, None),
    ("04_synthetic_loss", "critic", 3, "critic", {}, None),
    ("05_understanding_sg", "fa", 3, "fa", {}, None),
    ("06_full_unlock", "full_unlock", 3, "full_unlock", {"input_hidden_layers": 1, "input_hidden": 256}, None),
    ("09_asynchronous", "cdni_p50", 3, "stochastic_cdni", {"p": 0.5}, ASYNC),
    ("09_asynchronous", "multirate_k5", 4, "multirate", {"cut": 2, "every": 5}, ASYNC),
]
# Threads each notebook's committed run used (a matrix product's summation order, and so its last bits,
# depends on the thread count); the rest ran with torch's default on a 2-core CPU.
THREADS = {"09_asynchronous": 1}
MORE = [
    ("03_cdni", "dni", 6, "dni", {}, None),
    ("04_synthetic_loss", "synthetic_loss", 3, "synthetic_loss", {}, None),
    ("05_understanding_sg", "dfa", 3, "dfa", {}, None),
    ("09_asynchronous", "backprop_p20", 3, "stochastic_backprop", {"p": 0.2}, ASYNC),
    ("09_asynchronous", "dni_p50", 3, "stochastic_dni", {"p": 0.5}, ASYNC),
]


def committed(notebook, method, layers):
    record = json.loads((ROOT / "results" / f"{notebook}.json").read_text())
    if record["size"] != "quick":
        raise SystemExit(f"results/{notebook}.json is at size {record['size']}, not quick")
    return next(r for r in record["runs"] if r["method"] == method and r["layers"] == layers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    size = config.run_size("quick")
    mnist = data.load_mnist(config.device())
    failures, default_threads = 0, torch.get_num_threads()
    for notebook, method, layers, name, options, iterations in RUNS + (MORE if args.all else []):
        torch.set_num_threads(THREADS.get(notebook, default_threads))
        schedule = dataclasses.replace(size, iterations=iterations) if iterations else size
        config.seed_everything(0)
        learner = learners.make(name, models.fcn(layers).to(mnist.x_train.device), schedule.lr, **options)
        history = training.train(learner, mnist, schedule, seed=0, progress=False)
        expected = committed(notebook, method, layers)["history"]["test_accuracy"]
        same = history.test_accuracy == expected
        failures += not same
        print(f"{'same' if same else 'DIFFERENT':9s} {notebook:22s} {method:14s} {layers} layers: "
              f"{history.final_test_accuracy:.4%} (committed {expected[-1]:.4%}), {history.seconds[-1]:.0f} s",
              flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
