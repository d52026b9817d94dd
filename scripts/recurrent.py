"""The long recurrent tier (issue 27): copy and repeat-copy curricula at T = 2-5 and the character model, over seeds.

    make recurrent SG_SIZE=long                         # the whole plan: two one-thread workers, CPU hours, resumable
    python scripts/recurrent.py --size long --windows 2 3   # only part of the plan (here: the small windows first)
    python scripts/recurrent.py --size long --report    # what is finished, beside the paper's cells; trains nothing
    python scripts/recurrent.py --size smoke            # seconds: the same code path, into results/smoke/

One run is one curriculum: (task, method, window, seed), task copy or repeat copy, method truncated BPTT, DNI or
DNI + Aux, at the size's characters, LSTM units and batch (`config.RECURRENT_TIER`, `recurrent_tier.settings`).
The character model comes first (`recurrent_tier.TEXT`: truncated BPTT and DNI on notebook 08's text at the tier's
text windows, early-stopped on a validation half of the held-out text, `rnn.train_text`; an hour of one core in
all). Then the plan (`plan`) goes window by window from the smallest, because T = 2 and 3 are where the paper's gap is widest
and where a solved length N >= T means that an input and its answer never share a window; within a window, copy
before repeat copy, seed by seed, every method, so that finished rows can be read while the rest trains.

Two spawned workers of one thread each share the plan: under a file lock (results/recurrent_<size>.lock) a worker
claims the first run that is neither finished nor claimed by a live worker (a dead worker's claim is dropped, so
its run is claimed again). A run is trained by `rnn.train_copy` with a checkpoint, which saves it whole `CHECKPOINTS` times
(checkpoints/recurrent/<size>/, or $SG_CHECKPOINTS/recurrent/<size>/), so a killed run resumes from its last
checkpoint and ends as an uninterrupted one would, to the bit on a CPU. A finished run is added to
results/recurrent_<size>.json (rewritten atomically, under the lock) and never trained again: its curve at each log
point (100 per run: the level, the error in bits per output vector and, with a synthesizer, the cosine of the
synthetic gradient to the true future gradient at the length being trained), the longest length solved, the copy
accuracy at the next length, seconds, threads and CPU. helpers.recurrent_tier reads the file for notebook 08 and
lays out the report.
"""
import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from helpers import config, recurrent_tier, results, rnn, tasks  # noqa: E402
from seeds import _alive, cpu_name, locked  # noqa: E402

MAX_REPEATS = recurrent_tier.MAX_REPEATS
CHECKPOINTS = 10         # checkpoints per run: a tenth of a run is the most a kill loses


plan = recurrent_tier.plan     # the queue, in order (notebook 08 counts the same plan)


def results_file(size):
    return results.results_path(f"recurrent_{size}", size)       # honours $SG_RESULTS (results.RESULTS_DIR)


def finished(size):
    """The (task, method, window, seed) of every run in the results file trained with today's settings."""
    try:
        found = recurrent_tier.runs(size, results.RESULTS_DIR)
    except FileNotFoundError:
        return set()
    return {(r["dataset"], r["method"], r["window"], r["seed"]) for r in found}


def claim(size, queue, pid=None):
    """Under the lock, the first run of `queue` that is neither finished nor claimed by a live process, claimed
    for `pid` (default: this process); None when nothing is left to start."""
    path = results_file(size)
    claims_path = path.with_name(f".{path.stem}.claims.json")
    with locked(path):
        done = finished(size)
        claims = json.loads(claims_path.read_text()) if claims_path.exists() else {}
        claims = {key: owner for key, owner in claims.items() if _alive(owner)}
        for run in queue:
            key = "|".join(map(str, run))
            if run in done or key in claims:
                continue
            claims[key] = pid or os.getpid()
            results.write_json(claims_path, claims)
            return run
    return None


def checkpoint_file(size, run):
    """Where `run` keeps its checkpoint; the name carries a fingerprint of the settings, so a run trained with
    other settings never resumes from it."""
    task, method, window, seed = run
    fingerprint = hashlib.sha256(repr(sorted(recurrent_tier.settings(size, task).items())).encode()).hexdigest()[:8]
    return config.checkpoint_folder() / "recurrent" / size / f"{task}_{method}_T{window}_seed{seed}_{fingerprint}.pt"


def train_one(size, run, device):
    """Train (or resume) one run, add its record to the results file under the lock, drop its checkpoint."""
    task, method, window, seed = run
    s = recurrent_tier.settings(size, task)
    steps = s["characters"] // window
    log_every = max(1, steps // s["logs"])
    checkpoint = checkpoint_file(size, run)
    if checkpoint.exists():
        print(f"{task} {method} T={window} seed {seed}: resuming from {checkpoint}", flush=True)
    every = max(1, s["logs"] // CHECKPOINTS) * log_every
    common = dict(checkpoint=checkpoint, checkpoint_every=every, hidden=s["hidden"], batch=s["batch"], lr=s["lr"],
                  log_every=log_every, seed=seed, progress=False, device=device)
    if task == recurrent_tier.TEXT:
        codes, vocab = text_codes(s["text_chars_max"])
        trainer, history = rnn.train_text(method, window, steps, codes["train"], codes["test"], vocab,
                                          valid_codes=codes["valid"], **common)
        outcome = {"solved": None, "test_bpc": history.meta["test_bpc_stopped"],
                   "test_bpc_end": history.meta["test_bpc"], "stopped_at": history.meta["stopped_at"] * window,
                   "test_accuracy": history.meta["test_accuracy"]}
    else:
        repeat = task == "repeat_copy"
        trainer, history = rnn.train_copy(
            method, window, steps, repeat=repeat, max_repeats=s["max_repeats"] or MAX_REPEATS,
            threshold=s["threshold"], measure=method != "tbptt", **common)
        solved = history.meta["solved"]
        outcome = {"solved": solved,
                   "test_accuracy": rnn.copy_accuracy(trainer.model, solved + 1, repeat=repeat)}   # at the next length
    record = {"method": method, "layers": 1, "iterations": steps, "dataset": task, "window": window, "seed": seed,
              "characters": steps * window, **outcome,
              "seconds": round(history.seconds[-1], 2), "threads": torch.get_num_threads(),
              "cpu": cpu_name() if torch.device(device).type == "cpu" else str(device), "settings": s,
              "history": history.as_dict()}
    path = results_file(size)
    with locked(path):                  # the other worker may be adding its own run to the same file
        kept = json.loads(path.read_text())["runs"] if path.exists() else []
        kept = [r for r in kept if (r["dataset"], r["method"], r["window"], r["seed"]) != run
                or r.get("settings") != json.loads(json.dumps(s))] + [record]
        results.save_results(path.stem, size, kept, sum(r.get("seconds", 0) for r in kept), device,
                             threads=torch.get_num_threads())
    checkpoint.unlink(missing_ok=True)
    what = (f"held-out {record['test_bpc']:.3f} bits per character (early-stopped)" if task == recurrent_tier.TEXT
            else f"solved {record['solved']}")
    print(f"{task} {method} T={window} seed {seed}: {what} ({history.seconds[-1]:.0f} s)", flush=True)
    return record


@functools.cache
def text_codes(max_chars):
    """The character model's text, encoded: {"train", "valid", "test"} and the alphabet's size. The held-out
    tenth of notebook 08's text is split in two: validation (where a run stops early) and test (what it reports)."""
    train, held_out, alphabet = tasks.load_text(max_chars=max_chars)
    half = len(held_out) // 2
    parts = {"train": train, "valid": held_out[:half], "test": held_out[half:]}
    return {name: tasks.encode(text, alphabet) for name, text in parts.items()}, len(alphabet)


def worker(size, index, queue):
    """One worker of the queue: one thread, so that two workers share two cores without oversubscribing them."""
    torch.set_num_threads(1)
    device = config.device()
    while (run := claim(size, queue)) is not None:
        print(f"worker {index}: training {'|'.join(map(str, run))}", flush=True)
        train_one(size, run, device)
    print(f"worker {index}: nothing left to start", flush=True)


def report(size):
    """The paper's table with ours beside it, for each task, and how much of the plan is finished."""
    found = recurrent_tier.runs(size, results.RESULTS_DIR)
    for task in recurrent_tier.TASKS:
        print(recurrent_tier.table(found, task, size) + "\n")
    print(recurrent_tier.text_table(found, size) + "\n")
    hours = sum(r["seconds"] for r in found) / 3600
    print(f"{len(found)} of {len(plan(size))} runs of the plan finished ({hours:.1f} core-hours of training). "
          f"Paper: {recurrent_tier.PAPER_SOURCE}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="run size (default: $SG_SIZE, else quick)")
    parser.add_argument("--workers", type=int, default=2, help="one-thread processes sharing the plan")
    parser.add_argument("--tasks", nargs="+", choices=recurrent_tier.TASKS + (recurrent_tier.TEXT,),
                        default=recurrent_tier.TASKS + (recurrent_tier.TEXT,))
    parser.add_argument("--methods", nargs="+", choices=rnn.METHODS, default=rnn.METHODS)
    parser.add_argument("--windows", nargs="+", type=int, default=None, help="only these windows T")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    parser.add_argument("--report", action="store_true", help="print what is finished and train nothing")
    args = parser.parse_args()
    size = config.run_size(args.size).name
    try:
        if not args.report:
            queue = plan(size, args.tasks, args.methods, args.windows, args.seeds)
            print(f"recurrent tier, size {size}: {len(queue)} runs in the queue, {args.workers} workers of one thread; "
                  f"writing {results_file(size)}", flush=True)
            context = multiprocessing.get_context("spawn")
            workers = [context.Process(target=worker, args=(size, i, queue)) for i in range(args.workers)]
            for process in workers:
                process.start()
            for process in workers:
                process.join()
            failed = sum(1 for process in workers if process.exitcode)
            if failed:
                sys.exit(f"{failed} worker(s) failed or were killed (see above). Run the same command again: finished "
                         "runs are kept, the others resume from their checkpoints.")
        report(size)
    except FileNotFoundError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
