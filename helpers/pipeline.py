"""One process per stage over torch.distributed: a locked pipeline and a decoupled one (issue 9).

The MNIST FCN is cut into `stages` consecutive groups of blocks, each in its own process (gloo on the
CPU). Stage k receives its input from stage k-1 and sends its output to stage k+1. All stages draw the
same batch order from the seed, so only activations travel up and gradients travel down.

- locked: stage k waits for the true gradient of its output before it updates (update locking). The
  updates are exactly backprop's (a test compares the parameters with single-process training).
- decoupled (Jaderberg et al. 2016, section 3.2 and figure 1): stage k sends its output up without
  waiting, updates at once from its own synthesizer M_k(h_k, y), and sends the gradient at its input
  down (true at the top stage, bootstrapped below). The gradient for its own output arrives later,
  `staleness` steps late; it then trains M_k on that batch's activations and labels, with M_k's current
  weights (the activations are kept until then). Training on the old prediction instead (its error with
  the weights of `staleness` steps ago) saves one product per step but learned far worse in our runs:
  4 stages, 116 steps: 31% against 67% test accuracy. A stage may run at most `max_lag` steps ahead of
  the gradients it has received; that bounds memory and staleness.

Every receive has a timeout, so a stage that died or stalled is reported by its neighbours; `launch`
starts the processes with torch.multiprocessing, reports the first failure in the parent within about
`timeout` seconds, and kills every child on the way out, even after an exception. Rendezvous goes
through a file (a TCPStore listens on every interface, even when given 127.0.0.1); gloo's own
connections are on the loopback interface, on ports the operating system picks free.
"""
import collections
import contextlib
import datetime
import os
import pickle
import queue as queues
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from .data import random_batches
from .models import fcn
from .synthesizers import GradientSynthesizer

FORWARD, BACKWARD = 1, 2   # message tags: activations up, gradients down
STOP = -1
MODES = ("locked", "decoupled")
BLOCKS_PER_STAGE = 3   # the more work per stage, the smaller the share of messages and synthesizers


class PipelineError(RuntimeError):
    """A stage failed, died or stalled; the message names the stage and what its neighbours saw."""


@dataclass
class PipelineConfig:
    """One pipeline run. The model is `fcn(layers, hidden)`, seeded by `seed` (every process builds the
    same one and keeps its own blocks); layers defaults to BLOCKS_PER_STAGE * stages + 1, so each stage
    has three hidden blocks and the last also the output layer. The run stops after `steps`, or once stage 0 has run `seconds`.
    `fault` = (stage, step, "die" | "stall") makes that stage kill itself or hang there (for tests)."""

    stages: int = 2
    mode: str = "decoupled"
    hidden: int = 256
    layers: int = None
    batch_size: int = 256
    steps: int = 100
    seconds: float = None
    lr: float = 1e-4
    seed: int = 0
    conditioned: bool = True
    max_lag: int = 4
    timeout: float = 30.0
    keep_state: bool = True
    fault: tuple = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.layers is None:
            self.layers = BLOCKS_PER_STAGE * self.stages + 1
        if self.stages < 2 or self.layers < self.stages:
            raise ValueError(f"need stages >= 2 and layers >= stages (one block at least per stage); "
                             f"got stages={self.stages}, layers={self.layers}.")
        if self.max_lag < 1 or self.timeout <= 0:
            raise ValueError(f"max_lag must be >= 1 and timeout > 0; got {self.max_lag}, {self.timeout}.")


def split(layers, stages):
    """Block indices of each stage: consecutive, equal shares, the remainder to the last stage."""
    share = layers // stages
    cuts = [k * share for k in range(stages)] + [layers]
    return [list(range(cuts[k], cuts[k + 1])) for k in range(stages)]


def build_model(config):
    torch.manual_seed(config.seed)
    return fcn(config.layers, hidden=config.hidden)


class Stage:
    """One process's share of the network: its blocks, optimizer, synthesizer (decoupled, all but the
    last stage) and the record of what it did when (`events`: (kind, start, end), monotonic seconds)."""

    def __init__(self, rank, config, data):
        self.rank, self.config, self.data = rank, config, data
        self.first, self.last = rank == 0, rank == config.stages - 1
        model = build_model(config)
        self.block = nn.Sequential(*[model[i] for i in split(config.layers, config.stages)[rank]])
        self.optimizer = torch.optim.Adam(self.block.parameters(), lr=config.lr)
        self.synthesizer = None
        if config.mode == "decoupled" and not self.last:
            context = data.num_classes if config.conditioned else 0
            self.synthesizer = GradientSynthesizer(config.hidden, 0, context_features=context)
            self.synthesizer_optimizer = torch.optim.Adam(self.synthesizer.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed)
        self.batches = random_batches(len(data.x_train), config.batch_size, "cpu", generator)
        self.shape = (config.batch_size, config.hidden)
        self.events, self.step_ends, self.losses, self.correct, self.staleness = [], [], [], [], []
        self.sending = collections.deque()   # (work, tensor): a tensor must live until its send is done
        self.waiting = collections.deque()   # decoupled: (work, gradient buffer, h, y, step) not yet used

    @contextlib.contextmanager
    def record(self, kind):
        start = time.monotonic()
        yield
        self.events.append((kind, start, time.monotonic()))

    def wait(self, work, what):
        """Wait for a message at most `timeout` seconds; a dead or stalled neighbour becomes a clear error."""
        try:
            with self.record("wait"):
                work.wait(datetime.timedelta(seconds=self.config.timeout))
        except RuntimeError as error:
            raise PipelineError(f"stage {self.rank}: no {what} within {self.config.timeout:g} s: that stage "
                                f"died or stalled ({str(error).splitlines()[0][:160]})") from None

    def receive(self, shape, dtype, src, tag, what):
        buffer = torch.empty(shape, dtype=dtype)
        self.wait(dist.irecv(buffer, src=src, tag=tag), what)
        return buffer

    def send(self, tensor, dst, tag):
        """Send without waiting; keep at most a few sends in flight (each waited for with the timeout)."""
        tensor = tensor.detach().contiguous()
        self.sending.append((dist.isend(tensor, dst=dst, tag=tag), tensor))
        while len(self.sending) > 4 * self.config.max_lag:
            self.wait(self.sending.popleft()[0], "delivery to a neighbour")

    def context(self, y):
        return F.one_hot(y, self.data.num_classes).float() if self.config.conditioned else None

    def run(self):
        """The stage's loop; returns what it measured (plus its parameters if `keep_state`)."""
        config, step, start = self.config, 0, time.monotonic()
        while True:
            index = next(self.batches)
            y = self.data.y_train[index]
            if self.first:
                done = step >= config.steps or (config.seconds is not None and time.monotonic() - start >= config.seconds)
                control = torch.tensor([STOP if done else step])
                x = self.data.x_train[index]
            else:
                control = self.receive((1,), torch.long, self.rank - 1, FORWARD, f"activations from stage {self.rank - 1}")
                done = int(control) == STOP
                if not done:
                    x = self.receive(self.shape, torch.float, self.rank - 1, FORWARD,
                                     f"activations from stage {self.rank - 1}").requires_grad_()
            if not self.last:
                self.send(control, self.rank + 1, FORWARD)
            if done:
                break
            self.inject_fault(step)
            if config.mode == "locked":
                self.locked_step(x, y)
            else:
                self.decoupled_step(x, y, step)
            self.step_ends.append(time.monotonic())
            step += 1
        self.learn(step, until_empty=True)
        while self.sending:
            self.wait(self.sending.popleft()[0], "delivery to a neighbour")
        return self.report(step)

    def inject_fault(self, step):
        fault = self.config.fault
        if fault is not None and fault[0] == self.rank and fault[1] == step:
            if fault[2] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10 * self.config.timeout)

    def top(self, h, y):
        loss = F.cross_entropy(h, y)
        loss.backward()
        self.losses.append(loss.item())
        self.correct.append((h.detach().argmax(1) == y).float().mean().item())

    def locked_step(self, x, y):
        """Forward, then wait for the true gradient of the output, backward, update: backprop's step."""
        with self.record("forward"):
            h = self.block(x)
        self.optimizer.zero_grad(set_to_none=True)
        if self.last:
            with self.record("backward"):
                self.top(h, y)
        else:
            self.send(h, self.rank + 1, FORWARD)
            gradient = self.receive(self.shape, torch.float, self.rank + 1, BACKWARD, f"gradient from stage {self.rank + 1}")
            with self.record("backward"):
                h.backward(gradient)
        if not self.first:
            self.send(x.grad, self.rank - 1, BACKWARD)
        with self.record("backward"):
            self.optimizer.step()

    def decoupled_step(self, x, y, step):
        """Forward, send up, update from the synthetic gradient, send the input gradient down, then train
        the synthesizer on whichever true gradients have arrived. Gradients are per example (batch x
        dL/dh), as in `dni.DNI`. The activations and labels wait with the receive for their target, and
        the synthesizer is trained on them with its weights as they are when the target arrives."""
        batch = x.shape[0]
        with self.record("forward"):
            h = self.block(x)
        self.optimizer.zero_grad(set_to_none=True)
        if self.last:
            with self.record("backward"):
                self.top(h, y)
        else:
            self.send(h, self.rank + 1, FORWARD)
            with self.record("backward"):
                with torch.no_grad():
                    prediction = self.synthesizer(h.detach(), self.context(y))
                h.backward(prediction / batch)
        if not self.first:
            self.send(x.grad * batch, self.rank - 1, BACKWARD)
        with self.record("backward"):
            self.optimizer.step()
        if not self.last:
            buffer = torch.empty(self.shape)
            self.waiting.append((dist.irecv(buffer, src=self.rank + 1, tag=BACKWARD), buffer, h.detach(), y, step))
            self.learn(step + 1)

    def learn(self, now, until_empty=False):
        """Train the synthesizer on every gradient that has arrived, oldest first; wait (with the timeout)
        only when `max_lag` are outstanding, or at the end of the run."""
        while self.waiting and (until_empty or len(self.waiting) > self.config.max_lag or self.waiting[0][0].is_completed()):
            work, target, h, y, step = self.waiting.popleft()
            self.wait(work, f"gradient from stage {self.rank + 1}")
            with self.record("synthesizer"):
                loss = F.mse_loss(self.synthesizer(h, self.context(y)), target)
                self.synthesizer_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.synthesizer_optimizer.step()
            self.staleness.append(now - step)

    def report(self, steps):
        state = None
        if self.config.keep_state:
            state = {k: v.detach().clone() for k, v in self.block.state_dict().items()}
        return {"rank": self.rank, "steps": steps, "events": self.events, "step_ends": self.step_ends,
                "losses": self.losses, "train_accuracy": self.correct, "staleness": self.staleness,
                "listening": listening_addresses(), "state": state}


def listening_addresses():
    """IP addresses this process listens on (needs psutil; empty without it)."""
    try:
        import psutil
    except ImportError:
        return []
    return sorted({c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN})


def run_stage(rank, config, data):
    """Run stage `rank` in an initialised process group; rank 0 returns every stage's report, others None."""
    report = Stage(rank, config, data).run()
    reports = [None] * config.stages if rank == 0 else None
    dist.gather_object(report, reports, dst=0)
    return reports


def _child(rank, config, data, store_path, messages):
    try:
        torch.set_num_threads(1)   # two processes with several threads each on a 2-core CPU: 100x slower
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo0" if sys.platform == "darwin" else "lo")
        store = dist.FileStore(store_path, config.stages)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=config.stages,
                                timeout=datetime.timedelta(seconds=config.timeout))
        reports = run_stage(rank, config, data)
        if rank == 0:
            messages.put(("done", rank, pickle.dumps(reports)))   # plain pickle: no shared memory to outlive us
        dist.destroy_process_group()
    except BaseException as error:
        text = str(error) if isinstance(error, PipelineError) else traceback.format_exc(limit=4)
        messages.put(("error", rank, text))
        messages.close()
        messages.join_thread()
        os._exit(1)


def launch(config, data):
    """Run the pipeline with one process per stage (fork) and return every stage's report.

    Raises PipelineError naming the failed stage when a stage raises, dies or stalls: its neighbours
    time out after `config.timeout` s, and the parent gives up after the run's own length plus a margin.
    Every child is killed on the way out, whatever happened.
    """
    context = mp.get_context("fork")
    messages = context.Queue()
    processes = []
    limit = (config.seconds or 0) + 4 * config.timeout + 60
    with tempfile.TemporaryDirectory(prefix="sg_pipeline_") as folder:
        try:
            for rank in range(config.stages):
                process = context.Process(target=_child, args=(rank, config, data, os.path.join(folder, "store"), messages),
                                          daemon=True, name=f"stage-{rank}")
                process.start()
                processes.append(process)
            return _collect(processes, messages, time.monotonic() + limit)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join(timeout=10)
            messages.close()


def _collect(processes, messages, deadline):
    while time.monotonic() < deadline:
        try:
            kind, rank, payload = messages.get(timeout=0.2)
        except queues.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                _fail(processes, messages, [])
            continue
        if kind == "done":
            return pickle.loads(payload)
        _fail(processes, messages, [(rank, payload)])
    alive = [p.name for p in processes if p.is_alive()]
    raise PipelineError(f"the pipeline did not finish in time; still running: {', '.join(alive) or 'none'}.")


def _fail(processes, messages, errors):
    """Gather what every stage reported for a moment, then raise one error that names each."""
    time.sleep(0.5)
    with contextlib.suppress(queues.Empty):
        while True:
            kind, rank, payload = messages.get(timeout=0.2)
            if kind == "error":
                errors.append((rank, payload))
    lines = [f"stage {p.name.split('-')[1]} died (exit code {p.exitcode})" for p in processes
             if p.exitcode is not None and p.exitcode < 0]
    lines += [f"stage {rank} failed: {text.strip()}" for rank, text in sorted(errors)]
    raise PipelineError("the pipeline stopped.\n" + "\n".join(lines or ["a stage exited with an error."]))


def assemble(config, reports):
    """The whole network with every stage's final parameters (for evaluation)."""
    model = build_model(config)
    for report, blocks in zip(reports, split(config.layers, config.stages)):
        nn.Sequential(*[model[i] for i in blocks]).load_state_dict(report["state"])
    return model


def throughput(config, reports, warmup=5):
    """Samples per second at the output: steps after `warmup` over the time the last stage took for them."""
    ends = reports[-1]["step_ends"]
    warmup = min(warmup, len(ends) // 4)
    if len(ends) - warmup < 2:
        raise ValueError(f"too few steps ({len(ends)}) to measure throughput; run at least 10.")
    return (len(ends) - 1 - warmup) * config.batch_size / (ends[-1] - ends[warmup])


def steps_for(width, stages):
    """Enough steps for about two seconds of locked work at this width on a 2-core CPU (at least 12)."""
    return max(12, int(120 * (256 / width) ** 1.5 * 2 / stages))


def compare(stages, width, data, blocks=BLOCKS_PER_STAGE, repeats=3, steps=None):
    """Median samples/s of the locked and the decoupled pipeline over `repeats` short runs, and their ratio."""
    row = {"stages": stages, "width": width, "layers": blocks * stages + 1}
    for mode in MODES:
        config = PipelineConfig(stages=stages, mode=mode, hidden=width, layers=blocks * stages + 1,
                                steps=steps or steps_for(width, stages), keep_state=False, timeout=60)
        row[mode] = statistics.median(throughput(config, launch(config, data)) for _ in range(repeats))
    row["ratio"] = row["decoupled"] / row["locked"]
    return row


def summary(config, reports, data=None):
    """Throughput, steps, mean staleness of the synthesizers' targets and (with data) test accuracy."""
    from .training import evaluate

    staleness = [s for r in reports for s in r["staleness"]]
    row = {"mode": config.mode, "stages": config.stages, "hidden": config.hidden, "steps": reports[-1]["steps"],
           "samples_per_s": throughput(config, reports),
           "staleness": statistics.mean(staleness) if staleness else 0.0,
           "final_train_loss": statistics.mean(reports[-1]["losses"][-20:])}
    if data is not None and config.keep_state:
        row["test_accuracy"] = evaluate(assemble(config, reports), data.x_test, data.y_test)
    return row


EVENT_COLORS = {"forward": "#1f77b4", "backward": "#ff7f0e", "synthesizer": "#2ca02c", "wait": "#d9d9d9"}


def plot_timeline(reports, start=None, length=None, ax=None, title=None):
    """What each stage did when: one row per process, coloured by kind of work (grey = waiting).

    `start` and `length` (seconds after the first event) pick a window; the default shows the first
    20% of the run after its first 10%. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.8 + 0.6 * len(reports)))
    origin = min(e[1] for r in reports for e in r["events"])
    end = max(e[2] for r in reports for e in r["events"]) - origin
    start = 0.1 * end if start is None else start
    length = 0.2 * end if length is None else length
    for report in reports:
        for kind, a, b in report["events"]:
            a, b = a - origin, b - origin
            if b >= start and a <= start + length:
                ax.broken_barh([(a, b - a)], (report["rank"] - 0.38, 0.76), color=EVENT_COLORS[kind])
    ax.set_xlim(start, start + length)
    ax.set_yticks(range(len(reports)), [f"stage {r['rank']}" for r in reports])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(title or "timeline")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in EVENT_COLORS.items()], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure

