"""The complete unlock: synthetic inputs and synthetic gradients (Jaderberg et al. 2016, the feed-forward experiments).

Every block i > 0 gets an input synthesizer I_i(x) that predicts its input from the data x, and every
hidden block a label-conditioned gradient synthesizer M_i(h_i, y). A block's update then needs only x, y
and its own synthesizers, so all blocks can run at the same time. A `Unit` is one block with what it
owns; one training step is two phases, each independent across units:

1. `run(x, y)`: forward from the synthetic input, update from the synthetic gradient (the output layer
   from the loss). Sends two messages: its output up (the input-synthesizer target of the block above:
   what this block computed from *its* input, which is the data only for block 0 and otherwise this
   block's own synthetic input, so no block ever waits for the real forward pass) and the gradient at
   its input down (the synthetic-gradient target of the block below, bootstrapped).
2. `learn(output_below, gradient_above)`: train its synthesizers on those messages.

`FullUnlock` runs the units one after another; `ConcurrentFullUnlock` runs each in its own process.
Both compute the same updates. The interface's arithmetic is `synthesizers.to_block` / `target_from` /
`regression_loss`, as in `dni.DNI`; a unit applies it to its one block, because each unit may run in a
process of its own. Notebook 06; the timing of both versions is `timing.full_unlock_times`.
"""
import copy
import queue
import time

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from .dni import measure_synthetic
from .synthesizers import GradientSynthesizer, InputSynthesizer, regression_loss, target_from, to_block
from .training import Adam

START_METHOD = "spawn"   # see ConcurrentFullUnlock


class Unit:
    """Block i of a fully unlocked network, its synthesizers and its optimizers (one per module)."""

    def __init__(self, index, block, input_synthesizer, gradient_synthesizer, lr, num_classes=10,
                 optimizer=Adam):
        self.index, self.block, self.num_classes = index, block, num_classes
        self.input_synthesizer, self.gradient_synthesizer = input_synthesizer, gradient_synthesizer
        self.modules = [m for m in (block, input_synthesizer, gradient_synthesizer) if m is not None]
        self.optimizers = [optimizer(m.parameters(), lr=lr) for m in self.modules]

    def __getstate__(self):
        """What a worker process receives: the unit without the step in progress (the input and the
        prediction kept between `run` and `learn` carry autograd graphs, which cannot cross processes)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("synthetic_input", "prediction", "gradient_loss")}

    def run(self, x, y):
        """Phase 1: forward and update. Returns (output, input_gradient, loss, logits) (loss, logits: top only)."""
        batch = x.shape[0]
        if self.input_synthesizer is None:
            h_in = x
        else:
            self.synthetic_input = self.input_synthesizer(x)   # its graph is kept for `learn`: one forward a step
            h_in = self.synthetic_input.detach().requires_grad_()
        h = self.block(h_in)
        self.optimizers[0].zero_grad(set_to_none=True)
        if self.gradient_synthesizer is None:             # the output layer: the true loss
            loss = F.cross_entropy(h, y)
            loss.backward()
            result = (None, target_from(h_in.grad, batch), loss.detach(), h.detach())
        else:
            self.prediction = self.gradient_synthesizer(h.detach(), F.one_hot(y, self.num_classes).to(torch.get_default_dtype()))
            h.backward(to_block(self.prediction, batch))
            grad = None if h_in.grad is None else target_from(h_in.grad, batch)
            result = (h.detach(), grad, None, None)
        self.optimizers[0].step()
        return result

    def learn(self, output_below=None, gradient_above=None):
        """Phase 2: the input synthesizer regresses onto the output that block i-1 sent up (computed from the
        data for block 1, from block i-1's own synthetic input above that: see the module docstring); the
        gradient synthesizer onto the gradient that block i+1 sent down (per example, as in `dni.DNI`)."""
        losses = []
        if self.input_synthesizer is not None:
            losses.append(regression_loss(self.synthetic_input, output_below))   # its weights have not moved since `run`
        if self.gradient_synthesizer is not None:
            self.gradient_loss = regression_loss(self.prediction, gradient_above)
            losses.append(self.gradient_loss)
        for optimizer in self.optimizers[1:]:
            optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        for optimizer in self.optimizers[1:]:
            optimizer.step()


def make_units(model, lr, input_hidden_layers=0, hidden_layers=0, num_classes=10, optimizer=Adam, input_hidden=1024):
    """Cut `model` (a list of Linear blocks) into units: block 0 reads x itself; every later block gets an
    input synthesizer (`input_hidden_layers` hidden layers of `input_hidden` units); every hidden block gets a
    label-conditioned gradient synthesizer (cDNI). Gradient synthesizers start at zero (an untrained one
    leaves its block where it is), input synthesizers at random: a zero input is the same for every example,
    and a BatchNorm block fed identical rows trains on rounding noise (`synthesizers.InputSynthesizer`)."""
    device = next(model.parameters()).device
    blocks = list(model)

    def linears(block):
        return [m for m in block.modules() if isinstance(m, nn.Linear)]
    in_features = linears(blocks[0])[0].in_features
    units = []
    for i, block in enumerate(blocks):
        inputs = None if i == 0 else \
            InputSynthesizer(in_features, linears(block)[0].in_features, input_hidden_layers, input_hidden).to(device)
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


class FullUnlock:
    """Learner (helpers/learners.py): forward- and update-unlocked training, simulated on one device.

    It measures what `dni.DNI` measures (synthetic vs true gradients on the real forward pass, the same
    `dni.measure_synthetic`) and adds `input_error/{i}`: |I_i(x) - h_{i-1}| / |h_{i-1}| against the real
    activations of the whole network.
    """

    method = "full_unlock"

    def __init__(self, model, lr, input_hidden_layers=0, hidden_layers=0, num_classes=10,
                 optimizer=Adam, input_hidden=1024):
        self.model, self.num_classes = model, num_classes
        self.units = make_units(model, lr, input_hidden_layers, hidden_layers, num_classes, optimizer, input_hidden)
        self.synthesizers = [u.gradient_synthesizer for u in self.units[:-1]]
        self.optimizers = [o for u in self.units for o in u.optimizers]
        self.probe, self.snapshots = None, []

    def context(self, y):
        return F.one_hot(y, self.num_classes).to(torch.get_default_dtype())

    @property
    def synthesizer_losses(self):
        device = next(self.model.parameters()).device
        return [getattr(u, "gradient_loss", torch.zeros((), device=device)).detach() for u in self.units[:-1]]

    def step(self, x, y):
        return step_units(self.units, x, y)

    def measure(self, x, y):
        if self.probe is not None:
            x, y = self.probe
        metrics = measure_synthetic(self, x, y)
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

    Processes start with `spawn` (never `fork`, which breaks after CUDA has been used and does not exist
    on Windows); each receives its unit once, with its parameters in shared memory, and sets one thread.

    Every step is two rounds of messages: (x, y) out and (output, input gradient) back, then the
    neighbours' messages out and an acknowledgement back. The processes are stopped on exit, even
    after an exception, and `receive` waits at most `timeout` seconds, so a dead worker is reported.
    """

    def __init__(self, units, timeout=120):
        self.units, self.timeout = units, timeout
        self.processes = []

    def __enter__(self):
        context = mp.get_context(START_METHOD)
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
        """Unit i's next message. Waits at most `timeout` s, checking twice a second that every process is
        alive: a dead worker is named at once, even while another unit (one still starting up, say) is the
        one being waited for."""
        deadline = time.monotonic() + self.timeout
        while True:
            dead = [j for j, process in enumerate(self.processes) if not process.is_alive()]
            if dead:
                raise RuntimeError(f"unit {dead[0]} stopped answering: its process died (exit code "
                                   f"{self.processes[dead[0]].exitcode})")
            try:
                return self.outboxes[i].get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"unit {i} sent nothing within {self.timeout} s (still running)") from None

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
