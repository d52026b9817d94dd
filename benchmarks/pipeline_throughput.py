"""Samples per second of the locked and the decoupled pipeline, one process per stage (prints figures only).

Run it alone on the machine (on the shared 2-core box: `flock -x /tmp/sg_cpu.lock ...`): every stage is a
single-threaded process, and anything else running steals the cores the stages need. Each figure is the
median of `--repeats` short runs (`timing.pipeline_throughput`); `ratio` is decoupled over locked.

    OMP_NUM_THREADS=1 python benchmarks/pipeline_throughput.py
    OMP_NUM_THREADS=1 python benchmarks/pipeline_throughput.py --stages 2 --widths 2048 --blocks 2
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from helpers import data, pipeline, timing  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--blocks", type=int, default=pipeline.BLOCKS_PER_STAGE, help="blocks per stage (the last stage also has the output layer)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mnist = data.load_mnist("cpu")
    print(f"{'stages':>6} {'width':>6} {'layers':>6} {'locked':>10} {'decoupled':>10} {'ratio':>6}   "
          f"(samples/s, median of {args.repeats})")
    for stages in args.stages:
        for width in args.widths:
            row = timing.pipeline_throughput(stages, width, mnist, args.blocks, args.repeats)
            print(f"{stages:6d} {width:6d} {row['layers']:6d} {row['locked']:10.0f} {row['decoupled']:10.0f} "
                  f"{row['ratio']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
