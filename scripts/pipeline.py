"""Train the MNIST FCN as a pipeline of stages, one process each: locked or decoupled (notebook 09).

    python scripts/pipeline.py --stages 2 --mode decoupled                  # launches its own processes
    torchrun --nproc-per-node 2 scripts/pipeline.py --stages 2 --mode locked  # or across machines:
    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-endpoint HOST:PORT scripts/pipeline.py --stages 2

Under torchrun every process runs one stage (its RANK) and rank 0 prints the summary. torchrun's
rendezvous store listens on every interface of the host that serves it: use it only inside a trusted
network; the launcher used without torchrun needs no port of its own.
"""
import argparse
import datetime
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from helpers import data, pipeline  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--mode", choices=pipeline.MODES, default="decoupled")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=None, help="default: 3 per stage, plus the output layer")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long instead")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-lag", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    config = pipeline.PipelineConfig(stages=args.stages, mode=args.mode, hidden=args.hidden, layers=args.layers,
                                     steps=args.steps, seconds=args.seconds, lr=args.lr, max_lag=args.max_lag,
                                     timeout=args.timeout)
    mnist = data.load_mnist("cpu")
    if "RANK" in os.environ:   # started by torchrun: this process is one stage
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if int(os.environ["WORLD_SIZE"]) != config.stages:
            sys.exit(f"--stages {config.stages} but torchrun started {os.environ['WORLD_SIZE']} processes.")
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=config.timeout))
        reports = pipeline.run_stage(dist.get_rank(), config, mnist)
        dist.destroy_process_group()
    else:
        reports = pipeline.launch(config, mnist)
    if reports is not None:
        row = pipeline.summary(config, reports, mnist)
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
