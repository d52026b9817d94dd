"""Which alignment tracks accuracy: the gradient cosine or the update cosine? (`make alignment`)

    make alignment                     # quick size: 8 methods x seeds 0-2, one process (~30 min at one thread)
    python scripts/alignment.py --size smoke --seeds 0

Trains the 3-layer MNIST FCN with backprop, no backprop, linear DNI, cDNI, the synthetic loss, the critic, FA
and DFA (the configurations of scripts/seeds.py's labels), each seed with the same initial weights and batches
as `make seeds`, with `training.train(..., probe_update=True)`: at every evaluation the learner's own gradient
measures (`cos_batch/i`, on 256 test images) and `probe.update_metrics` (the update cosine `upd_cos/i` against
backprop's update from the same state, and the two baselines). Runs are added one by one to
results/alignment_<size>.json (atomically, under a lock), so a killed experiment resumes where it stopped;
`helpers.alignment` reads the file for notebooks 03-05 and prints the rank correlations.
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from helpers import alignment, config, data, learners, models, results, training  # noqa: E402
from seeds import METHODS, SYNTHESIZER, cpu_name, locked  # noqa: E402

LABELS = ["backprop", *alignment.LABELS]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="run size (default: $SG_SIZE, else quick)")
    parser.add_argument("--labels", nargs="+", choices=LABELS, default=LABELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    size = config.run_size(args.size)
    device = config.device()
    mnist = data.load_mnist(device)
    path = results.results_path(f"alignment_{size.name}", size.name)
    schedule = json.loads(json.dumps(size.as_dict()))
    print(f"{size.describe()}; {device}, {torch.get_num_threads()} threads; writing {path}", flush=True)
    for seed in args.seeds:
        for label in args.labels:
            record = results.load_results(path) if path.exists() else {"runs": []}
            if any(r["label"] == label and r["seed"] == seed and r.get("schedule") == schedule for r in record["runs"]):
                continue
            method, options = METHODS[label]
            options = {k: (seed if v == "seed" else v) for k, v in options.items()}
            config.seed_everything(seed)
            learner = learners.make(method, models.fcn(3).to(device), size.lr, **options)
            if hasattr(learner, "measure"):
                learner.probe = (mnist.x_test[:256], mnist.y_test[:256])
            history = training.train(learner, mnist, size, seed=seed, desc=f"{label}, seed {seed}",
                                     reuse=True, probe_update=True)
            run = results.run_record(history, label=label, seed=seed, schedule=schedule,
                                     synthesizer=SYNTHESIZER.get(label, ""), seconds=history.seconds[-1],
                                     threads=torch.get_num_threads(),
                                     cpu=cpu_name() if device.type == "cpu" else str(device))
            with locked(path):
                record = results.load_results(path) if path.exists() else {"runs": []}
                kept = [r for r in record["runs"] if r.get("schedule") == schedule
                        and (r["label"], r["seed"]) != (label, seed)] + [run]
                results.save_results(f"alignment_{size.name}", size.name, kept,
                                     sum(r.get("seconds", 0) for r in kept), device, threads=torch.get_num_threads())
            print(f"{label}, seed {seed}: {history.final_test_accuracy:.2%} ({history.seconds[-1]:.0f} s)", flush=True)
    if size.name != "smoke":
        alignment.summary(size.name)


if __name__ == "__main__":
    main()
