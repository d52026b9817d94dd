"""One process per stage over torch.distributed: a locked pipeline and a decoupled one (notebook 09).

The MNIST FCN is cut into `stages` consecutive groups of blocks, each in its own process (gloo on the
CPU). Stage k receives its input from stage k-1 and sends its output to stage k+1. All stages draw the
same batch order from the seed, so only activations travel up and gradients travel down.

- locked: stage k waits for the true gradient of its output before it updates (update locking). The
  updates are exactly backprop's (a test compares the parameters with single-process training).
- decoupled (Jaderberg et al. 2016, the decoupled interface between modules): stage k sends its output up without
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

Parts: `Link` (messages with timeouts, and the timeline of each process), `LockedStage` and
`DecoupledStage` (what one step is), `launch` (the processes). Figures: `plots.plot_timeline`;
throughput: `timing.pipeline_throughput`.
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

from .config import PIPELINE_LR, PIPELINE_STEPS
from .data import random_batches
from .models import fcn
from .synthesizers import GradientSynthesizer, regression_loss, target_from, to_block
from .training import Adam, evaluate

FORWARD, BACKWARD = 1, 2   # message tags: activations up, gradients down
START_METHOD = "spawn"     # never fork: see `launch`
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
    steps: int = PIPELINE_STEPS
    seconds: float = None
    lr: float = PIPELINE_LR
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


class Link:
    """This process's messages to its neighbours, every wait bounded by `timeout` seconds (a dead or
    stalled neighbour becomes a `PipelineError`), and the record of what the process did when: `events`,
    a list of (kind, start, end) in monotonic seconds, kind one of EVENT_KINDS."""

    def __init__(self, rank, timeout, in_flight):
        self.rank, self.timeout, self.in_flight = rank, timeout, in_flight
        self.events = []
        self.sending = collections.deque()   # (work, tensor): a tensor must live until its send is done

    @contextlib.contextmanager
    def record(self, kind):
        start = time.monotonic()
        yield
        self.events.append((kind, start, time.monotonic()))

    def wait(self, work, what):
        """Wait for a message at most `timeout` seconds; a dead or stalled neighbour becomes a clear error."""
        try:
            with self.record("wait"):
                work.wait(datetime.timedelta(seconds=self.timeout))
        except RuntimeError as error:
            raise PipelineError(f"stage {self.rank}: no {what} within {self.timeout:g} s: that stage "
                                f"died or stalled ({str(error).splitlines()[0][:160]})") from None

    def receive(self, shape, dtype, src, tag, what):
        buffer = torch.empty(shape, dtype=dtype)
        self.wait(dist.irecv(buffer, src=src, tag=tag), what)
        return buffer

    def post_receive(self, shape, dtype, src, tag):
        """Start a receive without waiting; returns (work, buffer) for `wait` later."""
        buffer = torch.empty(shape, dtype=dtype)
        return dist.irecv(buffer, src=src, tag=tag), buffer

    def send(self, tensor, dst, tag):
        """Send without waiting; keep at most `in_flight` sends under way (each waited for with the timeout)."""
        tensor = tensor.detach().contiguous()
        self.sending.append((dist.isend(tensor, dst=dst, tag=tag), tensor))
        while len(self.sending) > self.in_flight:
            self.wait(self.sending.popleft()[0], "delivery to a neighbour")

    def flush(self):
        while self.sending:
            self.wait(self.sending.popleft()[0], "delivery to a neighbour")


class Stage:
    """One process's share of the network: its blocks, their optimizer, the batch order and the loop.
    `LockedStage` and `DecoupledStage` say what one step is; `make_stage` picks by `config.mode`."""

    def __init__(self, rank, config, data):
        self.rank, self.config, self.data = rank, config, data
        self.first, self.last = rank == 0, rank == config.stages - 1
        model = build_model(config)
        self.block = nn.Sequential(*[model[i] for i in split(config.layers, config.stages)[rank]])
        self.optimizer = Adam(self.block.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed)
        self.batches = random_batches(len(data.x_train), config.batch_size, "cpu", generator)
        self.shape = (config.batch_size, config.hidden)
        self.dtype = next(model.parameters()).dtype
        self.link = Link(rank, config.timeout, 4 * config.max_lag)
        self.step_ends, self.losses, self.correct, self.staleness = [], [], [], []

    @property
    def events(self):
        return self.link.events

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
                control = self.link.receive((1,), torch.long, self.rank - 1, FORWARD,
                                            f"activations from stage {self.rank - 1}")
                done = int(control) == STOP
                if not done:
                    x = self.link.receive(self.shape, self.dtype, self.rank - 1, FORWARD,
                                          f"activations from stage {self.rank - 1}").requires_grad_()
            if not self.last:
                self.link.send(control, self.rank + 1, FORWARD)
            if done:
                break
            self.inject_fault(step)
            self.step(x, y, step)
            self.step_ends.append(time.monotonic())
            step += 1
        self.finish(step)
        self.link.flush()
        return self.report(step)

    def step(self, x, y, step):
        raise NotImplementedError

    def finish(self, steps):
        """Whatever a stage must still do once its last step (`steps` in all) is done."""

    def inject_fault(self, step):
        fault = self.config.fault
        if fault is not None and fault[0] == self.rank and fault[1] == step:
            if fault[2] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10 * self.config.timeout)

    def top(self, h, y):
        """The last stage: the true loss, backward into its blocks."""
        with self.link.record("backward"):
            loss = F.cross_entropy(h, y)
            loss.backward()
        self.losses.append(loss.item())
        self.correct.append((h.detach().argmax(1) == y).float().mean().item())

    def report(self, steps):
        state = None
        if self.config.keep_state:
            state = {k: v.detach().clone() for k, v in self.block.state_dict().items()}
        return {"rank": self.rank, "steps": steps, "events": self.events, "step_ends": self.step_ends,
                "losses": self.losses, "train_accuracy": self.correct, "staleness": self.staleness,
                "listening": listening_addresses(), "state": state}


class LockedStage(Stage):
    """Forward, then wait for the true gradient of the output, backward, update: backprop's step."""

    def step(self, x, y, step):
        with self.link.record("forward"):
            h = self.block(x)
        self.optimizer.zero_grad(set_to_none=True)
        if self.last:
            self.top(h, y)
        else:
            self.link.send(h, self.rank + 1, FORWARD)
            gradient = self.link.receive(self.shape, self.dtype, self.rank + 1, BACKWARD,
                                         f"gradient from stage {self.rank + 1}")
            with self.link.record("backward"):
                h.backward(gradient)
        if not self.first:
            self.link.send(x.grad, self.rank - 1, BACKWARD)
        with self.link.record("backward"):
            self.optimizer.step()


class DecoupledStage(Stage):
    """Forward, send up, update from the synthetic gradient, send the input gradient down, then train the
    synthesizer on whichever true gradients have arrived (every stage but the last has one).

    The arithmetic is `dni.DNI`'s (`synthesizers.to_block` / `target_from` / `regression_loss`); what
    differs is time: the target for step t's prediction arrives from the stage above some steps later, so
    the activations and labels wait with that receive, and the synthesizer is trained on them with its
    weights as they are when the target arrives."""

    def __init__(self, rank, config, data):
        super().__init__(rank, config, data)
        self.synthesizer = None
        if not self.last:
            context = data.num_classes if config.conditioned else 0
            self.synthesizer = GradientSynthesizer(config.hidden, 0, context_features=context)
            self.synthesizer_optimizer = Adam(self.synthesizer.parameters(), lr=config.lr)
        self.waiting = collections.deque()   # (work, gradient buffer, h, y, step) not yet used

    def context(self, y):
        return F.one_hot(y, self.data.num_classes).to(torch.get_default_dtype()) if self.config.conditioned else None

    def step(self, x, y, step):
        batch = x.shape[0]
        with self.link.record("forward"):
            h = self.block(x)
        self.optimizer.zero_grad(set_to_none=True)
        if self.last:
            self.top(h, y)
        else:
            self.link.send(h, self.rank + 1, FORWARD)
            with self.link.record("backward"):
                with torch.no_grad():
                    prediction = self.synthesizer(h.detach(), self.context(y))
                h.backward(to_block(prediction, batch))
        if not self.first:
            self.link.send(target_from(x.grad, batch), self.rank - 1, BACKWARD)
        with self.link.record("backward"):
            self.optimizer.step()
        if not self.last:
            work, buffer = self.link.post_receive(self.shape, self.dtype, self.rank + 1, BACKWARD)
            self.waiting.append((work, buffer, h.detach(), y, step))
            self.learn(step + 1)

    def learn(self, now, until_empty=False):
        """Train the synthesizer on every gradient that has arrived, oldest first; wait (with the timeout)
        only when `max_lag` are outstanding, or at the end of the run."""
        while self.waiting and (until_empty or len(self.waiting) > self.config.max_lag or self.waiting[0][0].is_completed()):
            work, target, h, y, step = self.waiting.popleft()
            self.link.wait(work, f"gradient from stage {self.rank + 1}")
            with self.link.record("synthesizer"):
                loss = regression_loss(self.synthesizer(h, self.context(y)), target)
                self.synthesizer_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.synthesizer_optimizer.step()
            self.staleness.append(now - step)

    def finish(self, steps):
        self.learn(steps, until_empty=True)


def make_stage(rank, config, data):
    """The stage `rank` of the pipeline `config` describes (locked or decoupled)."""
    return (LockedStage if config.mode == "locked" else DecoupledStage)(rank, config, data)


def listening_addresses():
    """IP addresses this process listens on (empty without psutil). psutil 6 renamed `connections` to
    `net_connections`; both are tried, so Colab's psutil 5.9 works as well as a current one."""
    try:
        import psutil
    except ImportError:
        return []
    process = psutil.Process()
    connections = getattr(process, "net_connections", None) or process.connections
    return sorted({c.laddr.ip for c in connections("tcp") if c.status == psutil.CONN_LISTEN})


def leftover_processes():
    """This process's children that still run, apart from multiprocessing's resource tracker (one per
    interpreter, started with the first spawned process; it exits with the interpreter). After `launch`
    returns or raises, this must be empty: no stage outlives its run."""
    import psutil
    return [child for child in psutil.Process().children(recursive=True)
            if "multiprocessing.resource_tracker" not in " ".join(_command_line(child))]


def _command_line(process):
    try:
        return process.cmdline()
    except Exception:   # it ended meanwhile, or we may not read it
        return []


def run_stage(rank, config, data):
    """Run stage `rank` in an initialised process group; rank 0 returns every stage's report, others None."""
    report = make_stage(rank, config, data).run()
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
    """Run the pipeline with one process per stage and return every stage's report.

    The processes are started with `spawn` (a fresh interpreter each), never `fork`: a process forked
    after the notebook has used CUDA cannot use CUDA itself, and fork does not exist on Windows and is
    unsafe on macOS. Each child imports helpers anew; `data` is shared with it, not copied.

    Raises PipelineError naming the failed stage when a stage raises, dies or stalls: its neighbours
    time out after `config.timeout` s, and the parent gives up after the run's own length plus a margin.
    Every child is killed on the way out, whatever happened.
    """
    context = mp.get_context(START_METHOD)
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


def summary(config, reports, data=None):
    """Throughput, steps, mean staleness of the synthesizers' targets and (with data) test accuracy."""
    staleness = [s for r in reports for s in r["staleness"]]
    row = {"mode": config.mode, "stages": config.stages, "hidden": config.hidden, "steps": reports[-1]["steps"],
           "samples_per_s": throughput(config, reports),
           "staleness": statistics.mean(staleness) if staleness else 0.0,
           "final_train_loss": statistics.mean(reports[-1]["losses"][-20:])}
    if data is not None and config.keep_state:
        row["test_accuracy"] = evaluate(assemble(config, reports), data.x_test, data.y_test)
    return row
