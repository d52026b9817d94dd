"""The complete unlock: synthetic inputs and synthetic gradients (Jaderberg et al. 2016, section 3.3).

Every block i > 0 gets an input synthesizer I_i(x) that predicts its input from the data x, and every
hidden block a label-conditioned gradient synthesizer M_i(h_i, y). A block's update then needs only x, y
and its own synthesizers, so all blocks can run at the same time. A `Unit` is one block with what it
owns; one training step is two phases, each independent across units:

1. `run(x, y)`: forward from the synthetic input, update from the synthetic gradient (the output layer
   from the loss). Sends two messages: its output up (the real input of the block above) and the
   gradient at its input down (the synthetic-gradient target of the block below, bootstrapped).
2. `learn(output_below, gradient_above)`: train its synthesizers on those messages.

`FullUnlock` runs the units one after another; `ConcurrentFullUnlock` runs each in its own process.
Both compute the same updates.
"""
import copy

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from .dni import DNI
from .synthesizers import GradientSynthesizer, InputSynthesizer


class Unit:
    """Block i of a fully unlocked network, its synthesizers and its optimizers (one per module)."""

    def __init__(self, index, block, input_synthesizer, gradient_synthesizer, lr, num_classes=10,
                 optimizer=torch.optim.Adam):
        self.index, self.block, self.num_classes = index, block, num_classes
        self.input_synthesizer, self.gradient_synthesizer = input_synthesizer, gradient_synthesizer
        self.modules = [m for m in (block, input_synthesizer, gradient_synthesizer) if m is not None]
        self.optimizers = [optimizer(m.parameters(), lr=lr) for m in self.modules]

    def run(self, x, y):
        """Phase 1: forward and update. Returns (output, input_gradient, loss, logits) (loss, logits: top only)."""
        batch = x.shape[0]
        if self.input_synthesizer is None:
            h_in = x
        else:
            self.x = x
            h_in = self.input_synthesizer(x).detach().requires_grad_()
        h = self.block(h_in)
        self.optimizers[0].zero_grad(set_to_none=True)
        if self.gradient_synthesizer is None:             # the output layer: the true loss
            loss = F.cross_entropy(h, y)
            loss.backward()
            result = (None, h_in.grad * batch, loss.detach(), h.detach())
        else:
            self.prediction = self.gradient_synthesizer(h.detach(), F.one_hot(y, self.num_classes).float())
            h.backward(self.prediction.detach() / batch)
            grad = None if h_in.grad is None else h_in.grad * batch
            result = (h.detach(), grad, None, None)
        self.optimizers[0].step()
        return result

    def learn(self, output_below=None, gradient_above=None):
        """Phase 2: the input synthesizer regresses onto the real input that block i-1 sent up; the gradient
        synthesizer onto the gradient that block i+1 sent down (per example, as in `dni.DNI`)."""
        losses = []
        if self.input_synthesizer is not None:
            losses.append(F.mse_loss(self.input_synthesizer(self.x), output_below))
        if self.gradient_synthesizer is not None:
            self.gradient_loss = F.mse_loss(self.prediction, gradient_above)
            losses.append(self.gradient_loss)
        for optimizer in self.optimizers[1:]:
            optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        for optimizer in self.optimizers[1:]:
            optimizer.step()


def make_units(model, lr, input_hidden_layers=0, hidden_layers=0, num_classes=10, optimizer=torch.optim.Adam):
    """Cut `model` (a list of Linear blocks) into units: block 0 reads x itself; every later block gets an
    input synthesizer; every hidden block gets a label-conditioned gradient synthesizer (cDNI)."""
    device = next(model.parameters()).device
    blocks = list(model)

    def linears(block):
        return [m for m in block.modules() if isinstance(m, nn.Linear)]
    in_features = linears(blocks[0])[0].in_features
    units = []
    for i, block in enumerate(blocks):
        inputs = None if i == 0 else \
            InputSynthesizer(in_features, linears(block)[0].in_features, input_hidden_layers).to(device)
        gradients = None if i == len(blocks) - 1 else \
            GradientSynthesizer(linears(block)[-1].out_features, hidden_layers, context_features=num_classes).to(device)
        units.append(Unit(i, block, inputs, gradients, lr, num_classes, optimizer))
    return units


def step_units(units, x, y):
    """One fully unlocked step, unit after unit. Returns (loss, logits) of the output layer."""
    messages = [unit.run(x, y) for unit in units]
    for i, unit in enumerate(units):
        below = messages[i - 1][0] if i > 0 else None
        above = messages[i + 1][1] if i + 1 < len(units) else None
        unit.learn(below, above)
    return messages[-1][2], messages[-1][3]


class FullUnlock(DNI):
    """Learner for `training.train`: forward- and update-unlocked training, simulated on one device.

    It shares `dni.DNI`'s measurements (synthetic vs true gradients on the real forward pass) and adds
    `input_error/{i}`: |I_i(x) - h_{i-1}| / |h_{i-1}| against the real activations of the whole network.
    """

    method = "full_unlock"

    def __init__(self, model, lr, input_hidden_layers=0, hidden_layers=0, num_classes=10,
                 optimizer=torch.optim.Adam):
        self.model, self.num_classes, self.conditioned = model, num_classes, True
        self.units = make_units(model, lr, input_hidden_layers, hidden_layers, num_classes, optimizer)
        self.synthesizers = [u.gradient_synthesizer for u in self.units[:-1]]
        self.optimizers = [o for u in self.units for o in u.optimizers]
        self.probe, self.snapshots = None, []

    @property
    def synthesizer_losses(self):
        return [getattr(u, "gradient_loss", torch.zeros(())).detach() for u in self.units[:-1]]

    def step(self, x, y):
        return step_units(self.units, x, y)

    def measure(self, x, y):
        metrics = super().measure(x, y)
        x = self.probe[0] if self.probe is not None else x
        copies = copy.deepcopy([(u.block, u.input_synthesizer) for u in self.units])   # BatchNorm stats untouched
        with torch.no_grad():
            h = x
            for i, (block, input_synthesizer) in enumerate(copies):
                if input_synthesizer is not None:
                    error = (input_synthesizer(x) - h).norm() / h.norm().clamp_min(1e-12)
                    metrics[f"input_error/{i}"] = error.item()
                h = block(h)
        return metrics


def _worker(unit, inbox, outbox):
    torch.set_num_threads(1)
    while True:
        command, payload = inbox.get()
        if command == "run":
            outbox.put(unit.run(*payload)[:2])
        elif command == "learn":
            unit.learn(*payload)
            outbox.put(None)
        elif command == "state":
            outbox.put([{k: v.clone() for k, v in m.state_dict().items()} for m in unit.modules])
        else:
            return


class ConcurrentFullUnlock:
    """The same units, each in its own process (CPU). Use as a context manager; `step(x, y)` as above.

    Every step is two rounds of messages: (x, y) out and (output, input gradient) back, then the
    neighbours' messages out and an acknowledgement back. The processes are stopped on exit, even
    after an exception, and `receive` waits at most `timeout` seconds, so a dead worker is reported.
    """

    def __init__(self, units, timeout=120):
        self.units, self.timeout = units, timeout
        self.processes = []

    def __enter__(self):
        context = mp.get_context("fork")
        self.inboxes = [context.Queue() for _ in self.units]
        self.outboxes = [context.Queue() for _ in self.units]
        for unit, inbox, outbox in zip(self.units, self.inboxes, self.outboxes):
            process = context.Process(target=_worker, args=(unit, inbox, outbox), daemon=True)
            process.start()
            self.processes.append(process)
        return self

    def __exit__(self, *exc):
        for inbox in self.inboxes:
            inbox.put(("stop", None))
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        return False

    def receive(self, i):
        try:
            return self.outboxes[i].get(timeout=self.timeout)
        except Exception as error:
            alive = self.processes[i].is_alive()
            raise RuntimeError(f"unit {i} sent nothing within {self.timeout} s "
                               f"({'still running' if alive else 'its process died'})") from error

    def step(self, x, y):
        for inbox in self.inboxes:
            inbox.put(("run", (x, y)))
        messages = [self.receive(i) for i in range(len(self.units))]
        for i, inbox in enumerate(self.inboxes):
            below = messages[i - 1][0] if i > 0 else None
            above = messages[i + 1][1] if i + 1 < len(self.units) else None
            inbox.put(("learn", (below, above)))
        for i in range(len(self.units)):
            self.receive(i)

    def state(self):
        """Each unit's module state dicts, fetched from its process."""
        for inbox in self.inboxes:
            inbox.put(("state", None))
        return [self.receive(i) for i in range(len(self.units))]


def time_steps(widths, layers=3, steps=10, batch_size=256, workers_threads=1, seed=0):
    """Median ms per training step on the CPU, for each hidden width: backprop, the fully unlocked units
    one after another, the same units in one process each, and the ideal for the concurrent version.

    The ideal is what perfect parallelism on this machine could give: the slowest unit, or all units'
    single-threaded work spread over the cores, whichever is longer. Returns a list of dicts.
    """
    import os
    import statistics
    import time

    from .training import Backprop
    from .models import fcn

    cores = os.cpu_count() or 1
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(batch_size, 1, 28, 28, generator=g), torch.randint(0, 10, (batch_size,), generator=g)

    def median_ms(step, n=steps):
        step()   # warm-up
        times = []
        for _ in range(n):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    rows = []
    for width in widths:
        torch.manual_seed(seed)
        backprop = Backprop(fcn(layers, hidden=width), 1e-4)
        units = make_units(fcn(layers, hidden=width), 1e-4)
        row = {"width": width, "backprop_ms": median_ms(lambda: backprop.step(x, y)),
               "sequential_ms": median_ms(lambda: step_units(units, x, y))}
        threads = torch.get_num_threads()
        torch.set_num_threads(workers_threads)
        try:   # each unit's own work, single-threaded, as a worker does it
            messages = [u.run(x, y) for u in units]
            unit_ms = []
            for i, u in enumerate(units):
                below = messages[i - 1][0] if i > 0 else None
                above = messages[i + 1][1] if i + 1 < len(units) else None
                unit_ms.append(median_ms(lambda: (u.run(x, y), u.learn(below, above))))
        finally:
            torch.set_num_threads(threads)
        row["ideal_ms"] = max(max(unit_ms), sum(unit_ms) / cores)
        with ConcurrentFullUnlock(units) as runner:
            row["concurrent_ms"] = median_ms(lambda: runner.step(x, y))
        rows.append(row)
    return rows
