"""Median time per training step: backprop vs DNI vs cDNI vs DGL on the MNIST FCN, with the ideal ratios.

    make bench                       # or: python benchmarks/step_time.py --layers 3 6 --steps 200

The ideal ratio counts the multiply-adds of one step (matrix products only: forward, weight gradients,
input gradients where they are needed, and the synthesizers' forward and training), so it is what a
perfectly efficient implementation would show. Measured ratios above it are overhead: Python, more
optimizer calls, more small kernels. Data lives on the device; batches are drawn as in training.
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import config, data, learners, models, timing  # noqa: E402


def linear_shapes(module):
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def ideal_macs(model, method, hidden_layers=0, hidden=1024, classes=10):
    """Multiply-adds per example of one training step (matrix products only)."""
    def cost(shapes, first_needs_input_grad):
        total = 0
        for k, (n_in, n_out) in enumerate(shapes):
            total += 2 * n_in * n_out                        # forward + weight gradient
            if k > 0 or first_needs_input_grad:
                total += n_in * n_out                        # input gradient
        return total
    if method == "backprop":
        return cost(linear_shapes(model), False)
    if method == "dgl":                                      # notebook 10: every block's input is detached
        total = sum(cost(linear_shapes(b), False) for b in model)
        for block in list(model)[:-1]:                       # a linear head on each hidden block's output
            total += cost([(linear_shapes(block)[-1][1], classes)], True)
        return total
    blocks = list(model)
    # hidden blocks: block 0 needs no input gradient; the others do (it is the bootstrap target below them)
    total = sum(cost(linear_shapes(b), i > 0) for i, b in enumerate(blocks[:-1]))
    total += cost(linear_shapes(blocks[-1]), True)           # output layer: true gradient at the top
    context = classes if method == "cdni" else 0
    for block in blocks[:-1]:
        width = linear_shapes(block)[-1][1]
        sizes = [width + context] + [hidden] * hidden_layers + [width]
        total += cost(list(zip(sizes[:-1], sizes[1:])), False)   # synthesizer: forward + training
    return total


def make_learner(method, layers, device, hidden_layers):
    options = {"hidden_layers": hidden_layers} if method in ("dni", "cdni") else {}
    return learners.make(method, models.fcn(layers).to(device), 1e-4, **options)


def time_steps(learner, mnist, steps, batch_size, device):
    """Seconds per step of `learner` on `steps` batches drawn as in training (drawn before the timing)."""
    generator = torch.Generator().manual_seed(0)
    order = data.random_batches(len(mnist.x_train), batch_size, device, generator)
    batches = [(mnist.x_train[i], mnist.y_train[i]) for i in (next(order) for _ in range(steps))]
    return timing.step_seconds(lambda: learner.step(*batches.pop()), steps, warmup=0, device=device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per method and round")
    parser.add_argument("--rounds", type=int, default=12, help="methods are interleaved, round after round")
    parser.add_argument("--hidden-layers", type=int, default=0, help="synthesizer depth (0 = linear)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    device = config.device()
    config.seed_everything(0)
    mnist = data.load_mnist(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}), torch {torch.__version__}, batch {args.batch_size}, "
          f"synthesizer hidden layers {args.hidden_layers}, {args.rounds} x {args.steps} timed steps")
    methods = ["backprop", "dni", "cdni", "dgl"]
    print(f"{'layers':>6} {'method':>9} {'ms/step':>8} {'ratio':>6} {'ideal':>6} {'measured/ideal':>14}")
    for layers in args.layers:
        runs = {m: make_learner(m, layers, device, args.hidden_layers) for m in methods}
        times = {m: [] for m in methods}
        for m in methods:
            time_steps(runs[m], mnist, 20, args.batch_size, device)   # warm-up
        for _ in range(args.rounds):
            for m in methods:
                times[m] += time_steps(runs[m], mnist, args.steps, args.batch_size, device)
        base_ms = statistics.median(times["backprop"]) * 1e3
        base_macs = ideal_macs(runs["backprop"].model, "backprop")
        for m in methods:
            ms = statistics.median(times[m]) * 1e3
            ideal = ideal_macs(runs[m].model, m, args.hidden_layers) / base_macs
            print(f"{layers:>6} {m:>9} {ms:>8.2f} {ms / base_ms:>6.2f} {ideal:>6.2f} {ms / base_ms / ideal:>14.2f}")


if __name__ == "__main__":
    main()
