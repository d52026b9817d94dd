"""The MNIST FCN methods of notebooks 01-10 over several seeds and depths, so that differences can be told from
noise, and the reference tier that notebooks load instead of training (the long size).

    make seeds SG_SIZE=quick          # every 3-layer method of 01-06, seeds 0-2, at the quick size (~30 min, 2 cores)
    make seeds SG_SIZE=long           # the reference tier at r2rt's 25k-iteration schedule (CPU hours; resumable):
                                      # two worker processes of one thread each work through one queue (PLAN)
    python scripts/seeds.py --size long --methods backprop cdni --layers 4 --seeds 0 1 2

The long size's queue (`PLAN`, in order): the paper's Table 1 block (backprop, no backprop, cDNI at 3-6 layers),
every other FCN method a notebook compares at 3 layers, DNI's synthesizer depth searched over 0, 1 and 2 hidden
layers on a validation split (the last 10,000 training images held out, never the test set; seed 0) with the paper's
MNIST CNN rows (3 and 4 layers: backprop, no backprop, DNI, cDNI; their own schedule, `config.CNN_TIER`: notebook
07's CNN at 16 filters, 5,000 iterations), DNI at 3-6 layers with the depth that search chose (each depth as soon
as its search is complete) and notebook 10's CNN comparison (DGL, DNI with one convolution; 3 layers, the CNN rows'
schedule) before the search's costly 2x1024 runs at the depths still open. A worker claims the first run nobody has finished or is running,
so `--workers 2` (two processes) share the queue; a run killed half-way resumes from its last checkpoint
(every 5,000 iterations, in checkpoints/reference/), and a finished run is never trained again.

Every run is the MNIST FCN built through `learners.make`, trained with the seed for both its initial weights and
its batch order (the CNN rows: notebook 07's CNN through the same call). Results go to results/seeds_<size>.json
(every run's accuracy, curve, seconds and threads), for the validation search results/dni_search_<size>.json and for
the CNN rows results/cnn_<size>.json; each is rewritten atomically after each run.
`scripts/results_table.py` renders them into results/README.md; `helpers.results.reference` reads them for the
notebooks.
"""
import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers import config, data, learners, models, reference, results, training  # noqa: E402

# label: (registry method, options). The label names the configuration, the method the algorithm. Options
# that depend on the seed (a buffer's or a coin's own generator) take the value "seed".
METHODS = {
    "backprop": ("backprop", {}),
    "nobackprop": ("nobackprop", {}),
    "dni_paper": ("dni", {"hidden_layers": 2}),        # the paper's DNI synthesizer: 2 x 1024, BatchNorm
    "dni_1x1024": ("dni", {"hidden_layers": 1}),
    "dni_linear": ("dni", {}),
    "cdni": ("cdni", {}),                               # the paper's cDNI synthesizer: linear, with the label
    "synthetic_loss": ("synthetic_loss", {}),
    "critic": ("critic", {}),
    "fa": ("fa", {}),
    "dfa": ("dfa", {}),
    "full_unlock": ("full_unlock", {"input_hidden_layers": 1, "input_hidden": 256}),   # as notebook 06
    "dgl": ("dgl", {}),                                                                 # notebook 10
    "dgl_buffer4": ("dgl_buffer", {"buffer_size": 4, "seed": "seed"}),
    "dgl_buffer16": ("dgl_buffer", {"buffer_size": 16, "seed": "seed"}),
    **{f"{m}_p{p}": (f"stochastic_{m}", {"p": p, "seed": "seed"})                       # notebook 09
       for m in ("backprop", "dni", "cdni") for p in (0.5, 0.2)},
}
# The CNN rows of Table 1 (split "cnn"): notebook 07's synthesizers (DNI two hidden conv layers, cDNI none), their
# filters set by config.CNN_TIER in train_one.
CNN_LABELS = {"cnn_backprop": ("backprop", {}), "cnn_nobackprop": ("nobackprop", {}),
              "cnn_dni": ("dni", {"hidden_layers": 2}), "cnn_cdni": ("cdni", {"hidden_layers": 0})}
# Notebook 10's CNN comparison on the same CNN and schedule (3 layers): DGL, and DNI with notebook 10's synthesizer
# (one 5x5 convolution, no hidden layer) beside the rows above.
CNN_AFTER = {"cnn_dgl": ("dgl", {}), "cnn_dni_linear": ("dni", {"hidden_layers": 0})}
METHODS.update(CNN_LABELS)
METHODS.update(CNN_AFTER)
DNI_DEPTHS = {"dni_linear": 0, "dni_1x1024": 1, "dni_paper": 2}     # the paper's search: 0-2 hidden layers
QUICK = ["backprop", "nobackprop", "dni_paper", "dni_linear", "cdni", "synthetic_loss", "critic", "fa", "dfa",
         "full_unlock", "dgl", "dgl_buffer4", "dgl_buffer16",
         "backprop_p0.5", "backprop_p0.2", "dni_p0.5", "dni_p0.2", "cdni_p0.5", "cdni_p0.2"]
SYNTHESIZER = {"dni_paper": "2 hidden x 1024, BatchNorm", "dni_1x1024": "1 hidden x 1024, BatchNorm",
               "dni_linear": "linear", "cdni": "linear + label",
               "critic": "quadratic loss model + label", "synthetic_loss": "quadratic loss model + label",
               "full_unlock": "linear + label; input synthesizers 1 hidden x 256",
               "dni_p0.5": "linear", "dni_p0.2": "linear", "cdni_p0.5": "linear + label", "cdni_p0.2": "linear + label",
               "dgl": "linear head", "dgl_buffer4": "linear head, buffer 4", "dgl_buffer16": "linear head, buffer 16",
               "cnn_dni": "2 hidden 5x5 conv layers, BatchNorm", "cnn_cdni": "5x5 conv + label",
               "cnn_dni_linear": "5x5 conv", "cnn_dgl": "1x1 conv head (dgl.aux_head)"}
SEEDS = [0, 1, 2]
VALIDATION = 10_000          # training images held out for the synthesizer-depth search
CHECKPOINT_EVERY = 5_000


def _plan():
    """The long size's queue, cheapest and most used first: (label, layers, split, seed) or, for the DNI rows,
    ("dni_chosen", layers, "test", seed), resolved once the validation search at that depth is complete. The split
    names the data and the file: "test" (the FCN runs, scored on the test set), "validation" (the DNI search, scored
    on held-out training images), "cnn" (the CNN rows, on the test set, on config.CNN_TIER's schedule)."""
    plan = [(label, layers, "test", seed) for layers in (4, 5, 6) for label in ("backprop", "nobackprop", "cdni")
            for seed in SEEDS]
    plan += [(label, 3, "test", seed) for label in ("backprop", "nobackprop", "cdni", "dni_paper") for seed in SEEDS]
    others = ["synthetic_loss", "critic", "fa", "dfa", "full_unlock",                      # notebooks 04-06
              "backprop_p0.5", "backprop_p0.2", "dni_p0.5", "dni_p0.2", "cdni_p0.5", "cdni_p0.2",   # 09
              "dni_linear",                                    # 03, 05, 09 (p = 1 of the stochastic DNI)
              "dgl", "dgl_buffer4", "dgl_buffer16"]                                           # 10
    plan += [(label, 3, "test", seed) for label in others for seed in SEEDS]
    plan += [("dgl", 6, "test", seed) for seed in SEEDS]                                   # notebook 10 at 6 layers
    plan += [("dni_linear", 6, "test", seed) for seed in SEEDS]                             # notebook 03's DNI
    plan += [(label, layers, "validation", 0) for label in ("dni_linear", "dni_1x1024") for layers in (3, 4, 5, 6)]
    plan += [("dni_paper", 3, "validation", 0)]
    # The CNN rows (~5 minutes a run) before the 2x1024 search at 4-6 layers (over an hour a run at one thread):
    # a whole block of Table 1 lands for the price of two search runs.
    plan += [(label, layers, "cnn", seed) for layers in (3, 4) for label in CNN_LABELS for seed in SEEDS]
    # DNI's test seeds at a depth as soon as the search there is complete (a worker skips a depth whose search is
    # not), so that a Table 1 cell lands before the next depth's search.
    plan += [("dni_chosen", layers, "test", seed) for layers in (3, 4, 5, 6) for seed in SEEDS]
    # Notebook 10's CNN comparison at the CNN rows' schedule (~5 minutes a run), before the hour-long search runs.
    plan += [(label, 3, "cnn", seed) for label in CNN_AFTER for seed in SEEDS]
    plan += [("dni_paper", layers, "validation", 0) for layers in (4, 5, 6)]
    return plan


PLAN = {"long": _plan()}


def summary(values):
    """Mean, standard deviation (n - 1), min and max of accuracies (fractions)."""
    return {"n": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on `path`'s lock file (where the OS has fcntl), so that processes running
    different runs of one experiment add them to one file without losing each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:      # Windows: one process at a time, please
            pass
        yield


def validation_split(dataset, n=VALIDATION):
    """`dataset` with its last `n` training images as the "test" set and the rest for training: the held-out
    data the synthesizer-depth search is scored on, so the test set never chooses anything."""
    return dataclasses.replace(dataset, name=f"{dataset.name}-validation", x_train=dataset.x_train[:-n],
                               y_train=dataset.y_train[:-n], x_test=dataset.x_train[-n:], y_test=dataset.y_train[-n:])


def _paths(size):
    return {"test": results.results_path(f"seeds_{size.name}", size.name),
            "validation": results.results_path(f"dni_search_{size.name}", size.name),
            "cnn": results.results_path(f"cnn_{size.name}", size.name)}


def _run_size(size, split):
    """The schedule a run of `split` trains on: the CNN rows their own (config.CNN_TIER), every other run the size's."""
    return config.CNN_TIER[size.name]["schedule"] if split == "cnn" else size


def _schedule(size, split):
    """`_run_size` as stored in each run's record (a run counts as finished only on the schedule it was trained on)."""
    return json.loads(json.dumps(_run_size(size, split).as_dict()))


def _finished(path, schedule):
    """{(label, layers, seed): run} of the runs in `path` trained on `schedule`."""
    record = results.load_results(path) if path.exists() else {"runs": []}
    return {(r["label"], r.get("layers", 3), r["seed"]): r for r in record["runs"] if r.get("schedule") == schedule}


def chosen_dni(search, layers):
    """The DNI synthesizer label the validation search chose at `layers` (highest validation accuracy), or None
    while the search at that depth is incomplete."""
    return reference.choose_dni({label: search[label, layers, 0]["test_accuracy"] for label in DNI_DEPTHS
                                 if (label, layers, 0) in search})


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(size):
    """Under the lock, the first run of the plan that is neither finished nor being trained by a live worker;
    None when nothing is left that can start now."""
    paths = _paths(size)
    claims_path = paths["test"].with_name(f".seeds_{size.name}.claims.json")
    with locked(paths["test"]):
        done = {split: _finished(path, _schedule(size, split)) for split, path in paths.items()}
        claims = json.loads(claims_path.read_text()) if claims_path.exists() else {}
        claims = {k: pid for k, pid in claims.items() if _alive(pid)}
        for label, layers, split, seed in PLAN[size.name]:
            if label == "dni_chosen":
                label = chosen_dni(done["validation"], layers)
                if label is None:
                    continue
            key = f"{label}|{layers}|{split}|{seed}"
            if (label, layers, seed) in done[split] or key in claims:
                continue
            claims[key] = os.getpid()
            results.write_json(claims_path, claims)
            return label, layers, split, seed
    return None


def cpu_name():
    """The processor's model name (float32 results differ in their last digits from one CPU's vector units to
    another's, so every run records where it ran)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def train_one(label, layers, split, seed, size, device, mnist, checkpoint=None):
    """Train one run and add it to its results file (under the lock); returns the run's record."""
    method, options = METHODS[label]
    options = {k: (seed if v == "seed" else v) for k, v in options.items()}
    dataset = validation_split(mnist) if split == "validation" else mnist
    run_size = _run_size(size, split)
    config.seed_everything(seed)
    net = {}
    if split == "cnn":                                         # notebook 07's CNN, at config.CNN_TIER's filters
        cnn = config.CNN_TIER[size.name]
        net = {"net": "cnn", "channels": cnn["channels"]}
        model = models.cnn(layers, channels=cnn["channels"], in_channels=dataset.input_shape[0],
                           image_size=dataset.input_shape[1])
        if method in ("dni", "cdni"):
            options["hidden"] = cnn["synthesizer_filters"]
    else:
        model = models.fcn(layers)
    learner = learners.make(method, model.to(device), run_size.lr, **options)
    desc = f"{label}, {layers} layers, seed {seed}" + (" (validation)" if split == "validation" else "")
    if checkpoint is None:
        history = training.train(learner, dataset, run_size, seed=seed, desc=desc, reuse=True)
    else:                       # a long run that survives the session: checkpoints, not the finished-run store
        saving = dataclasses.replace(run_size, checkpoint_every=CHECKPOINT_EVERY)
        history = training.train(learner, dataset, saving, seed=seed, desc=desc, checkpoint=checkpoint / split)
    run = results.run_record(history, label=label, seed=seed, schedule=run_size.as_dict(), split=split,
                             synthesizer=SYNTHESIZER.get(label, ""), seconds=history.seconds[-1], **net,
                             threads=torch.get_num_threads(), cpu=cpu_name() if device.type == "cpu" else str(device))
    path = _paths(size)[split]
    name = path.stem
    schedule = _schedule(size, split)
    with locked(_paths(size)["test"]):          # another process may be adding its own runs to the same file
        record = results.load_results(path) if path.exists() else {"runs": []}
        runs = [r for r in record["runs"] if r.get("schedule") == schedule
                and (r["label"], r.get("layers", 3), r["seed"]) != (label, layers, seed)] + [run]
        results.save_results(name, size.name, runs, sum(r.get("seconds", 0) for r in runs), device,
                             threads=torch.get_num_threads())
    print(f"{desc}: {history.final_test_accuracy:.2%}  ({history.seconds[-1]:.0f} s)", flush=True)
    return run


def worker(size_name, index):
    """One worker of the queue: one thread (two workers share two cores without oversubscribing them)."""
    torch.set_num_threads(1)
    size = config.run_size(size_name)
    device = config.device()
    mnist = data.load_mnist(device)
    folder = ROOT / "checkpoints" / "reference"
    while True:
        item = _claim(size)
        if item is None:
            print(f"worker {index}: nothing left to start", flush=True)
            return
        train_one(*item, size, device, mnist, checkpoint=folder)


def report(size):
    paths = _paths(size)
    schedule = json.loads(json.dumps(size.as_dict()))
    done = _finished(paths["test"], schedule)
    print(f"\n{'method':15s} {'layers':>6} {'n':>2} {'mean':>7} {'sd':>6} {'min':>7} {'max':>7}   per seed")
    for label, layers in sorted({(k[0], k[1]) for k in done}, key=lambda k: (k[1], k[0])):
        mine = sorted((r for k, r in done.items() if k[:2] == (label, layers)), key=lambda r: r["seed"])
        s = summary([r["test_accuracy"] for r in mine])
        print(f"{label:15s} {layers:6d} {s['n']:2d} {s['mean']:7.2%} {100 * s['sd']:6.2f} {s['min']:7.2%} "
              f"{s['max']:7.2%}   " + " ".join(f"{r['test_accuracy']:.2%}" for r in mine))
    search = _finished(paths["validation"], schedule)
    for layers in sorted({k[1] for k in search}):
        found = "  ".join(f"{label} {search[label, layers, 0]['test_accuracy']:.2%}" for label in DNI_DEPTHS
                          if (label, layers, 0) in search)
        print(f"DNI synthesizer search, {layers} layers (validation accuracy): {found}; "
              f"chosen: {chosen_dni(search, layers) or 'not yet'}")
    if size.name in config.CNN_TIER:
        cnn = _finished(paths["cnn"], _schedule(size, "cnn"))
        print(f"CNN rows ({_run_size(size, 'cnn').describe()}, {config.CNN_TIER[size.name]['channels']} filters): "
              + ("; ".join(f"{label} {layers} layers {summary([r['test_accuracy'] for k, r in cnn.items() if k[:2] == (label, layers)])['mean']:.2%}"
                           for label, layers in sorted({k[:2] for k in cnn}, key=lambda k: (k[1], k[0])))
                 or "none finished yet"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="run size (default: $SG_SIZE, else quick)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None,
                        help="train these (at --layers, over --seeds) instead of the size's plan")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--workers", type=int, default=2, help="processes working through the long size's plan")
    parser.add_argument("--report", action="store_true", help="print what is finished and train nothing")
    args = parser.parse_args()
    size = config.run_size(args.size)
    if args.report:
        return report(size)
    if args.methods is None and size.name in PLAN:
        print(f"{size.describe()}; {len(PLAN[size.name])} runs in the plan; {args.workers} workers of one thread",
              flush=True)
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=worker, args=(size.name, i)) for i in range(args.workers)]
        for process in workers:
            process.start()
        for process in workers:
            process.join()
        return report(size)
    device = config.device()
    mnist = data.load_mnist(device)
    methods = args.methods or (QUICK if size.name == "quick" else ["backprop", "cdni"])
    schedule = json.loads(json.dumps(size.as_dict()))
    print(f"{size.describe()}; {device}, {torch.get_num_threads()} threads; writing {_paths(size)['test']}")
    for label in methods:
        for seed in args.seeds:
            if (label, args.layers, seed) not in _finished(_paths(size)["test"], schedule):
                train_one(label, args.layers, "test", seed, size, device, mnist)
    report(size)


if __name__ == "__main__":
    main()
