"""The MNIST FCN methods of notebooks 01-06 over several seeds, so that differences can be told from noise.

    make seeds SG_SIZE=quick          # every method, seeds 0-2, at the quick size (about 30 minutes on 2 cores)
    make seeds SG_SIZE=long           # r2rt's schedule, 25k iterations: backprop, no backprop, cDNI, DNI
    python scripts/seeds.py --size long --methods backprop cdni --seeds 0 1 2 3 4
    # two cores: two processes of one thread each, different seeds or methods, one results file
    OMP_NUM_THREADS=1 python scripts/seeds.py --size long --methods dni_paper --seeds 0 1 &
    OMP_NUM_THREADS=1 python scripts/seeds.py --size long --methods backprop nobackprop cdni dni_paper --seeds 2

Every run is the 3-layer FCN of notebooks 01-06 built through `learners.make`, trained with the seed for
both its initial weights and its batch order. Results go to results/seeds_<size>.json (every seed's accuracy
and curve), rewritten atomically after each run; a run already in the file is not trained again, so an
interrupted experiment continues where it stopped, and a run a notebook already trained with the same code, size,
seed and thread count is loaded from results/runs (`train(..., reuse=True)`) instead of trained again.
`scripts/results_table.py` renders mean, standard deviation and range per method into results/README.md.
"""
import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers import config, data, learners, models, results, training  # noqa: E402

# label: (registry method, options). The label names the configuration, the method the algorithm.
METHODS = {
    "backprop": ("backprop", {}),
    "nobackprop": ("nobackprop", {}),
    "dni_paper": ("dni", {"hidden_layers": 2}),        # the paper's DNI synthesizer: 2 x 1024, BatchNorm
    "dni_linear": ("dni", {}),
    "cdni": ("cdni", {}),                               # the paper's cDNI synthesizer: linear, with the label
    "synthetic_loss": ("synthetic_loss", {}),
    "critic": ("critic", {}),
    "fa": ("fa", {}),
    "dfa": ("dfa", {}),
    "full_unlock": ("full_unlock", {"input_hidden_layers": 1, "input_hidden": 256}),   # as notebook 06
}
DEFAULT = {"smoke": ["backprop", "cdni"], "quick": list(METHODS),
           "long": ["backprop", "nobackprop", "cdni", "dni_paper"], "paper": ["backprop", "nobackprop", "cdni", "dni_paper"]}
SYNTHESIZER = {"dni_paper": "2 hidden x 1024, BatchNorm", "dni_linear": "linear", "cdni": "linear + label",
               "critic": "quadratic loss model + label", "synthetic_loss": "quadratic loss model + label",
               "full_unlock": "linear + label; input synthesizers 1 hidden x 256"}


def summary(values):
    """Mean, standard deviation (n - 1), min and max of accuracies (fractions)."""
    return {"n": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on `path`'s lock file (where the OS has fcntl), so that processes running
    different seeds of one experiment add their runs to one file without losing each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:      # Windows: one process at a time, please
            pass
        yield


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="run size (default: $SG_SIZE, else quick)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    size = config.run_size(args.size)
    device = config.device()
    methods = args.methods or DEFAULT[size.name]
    mnist = data.load_mnist(device)
    name = f"seeds_{size.name}"
    path = results.results_path(name, size.name)
    record = results.load_results(path) if path.exists() else {"runs": []}
    schedule = json.loads(json.dumps(size.as_dict()))                            # as it reads back from JSON
    runs = [r for r in record["runs"] if r.get("schedule") == schedule]          # another schedule: start over
    done = {(r["label"], r["seed"]) for r in runs}
    print(f"{size.describe()}; {device}, {torch.get_num_threads()} threads; writing {path}")
    started = time.perf_counter()
    for label in methods:
        method, options = METHODS[label]
        for seed in args.seeds:
            if (label, seed) in done:
                continue
            config.seed_everything(seed)
            learner = learners.make(method, models.fcn(3).to(device), size.lr, **options)
            history = training.train(learner, mnist, size, seed=seed, desc=f"{label} seed {seed}", reuse=True)
            run = results.run_record(history, label=label, seed=seed, schedule=size.as_dict(),
                                     synthesizer=SYNTHESIZER.get(label, ""), seconds=history.seconds[-1],
                                     threads=torch.get_num_threads())
            with locked(path):              # another process may be running other seeds into the same file
                record = results.load_results(path) if path.exists() else {"runs": []}
                runs = [r for r in record["runs"] if r.get("schedule") == schedule
                        and (r["label"], r["seed"]) != (label, seed)] + [run]
                results.save_results(name, size.name, runs, time.perf_counter() - started, device,
                                     threads=torch.get_num_threads())
            print(f"{label:15s} seed {seed}: {history.final_test_accuracy:.2%}  ({history.seconds[-1]:.0f} s)", flush=True)
    print(f"\n{'method':15s} {'n':>2} {'mean':>7} {'sd':>6} {'min':>7} {'max':>7}   per seed")
    for label in methods:
        mine = sorted((r for r in runs if r["label"] == label), key=lambda r: r["seed"])
        if mine:
            s = summary([r["test_accuracy"] for r in mine])
            print(f"{label:15s} {s['n']:2d} {s['mean']:7.2%} {100 * s['sd']:6.2f} {s['min']:7.2%} {s['max']:7.2%}   "
                  + " ".join(f"{r['test_accuracy']:.2%}" for r in mine))


if __name__ == "__main__":
    main()
