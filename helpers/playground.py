"""The live DNI playground of notebook 03b: three spirals, a tiny network, and every knob of DNI and cDNI.

Everything the playground shows is computed by pure parts, each testable on its own:

- `spirals`: the data, points in the plane whose class (one of three arms) can condition a synthesizer;
- `network`: the tiny model, a list of blocks as in `models` (tanh; BatchNorm optional);
- `Settings`: every knob; `Run`: one training run from one seed, its learner built by name through
  `learners.make` (backprop, no backprop, the synthetic loss) or `PlaygroundDNI` (DNI, cDNI and the oracle);
- `PlaygroundDNI`: the update-unlocked step of `dni.DNI` (through `update_rates.StochasticDNI`, for the update
  probability p), with the interface's arithmetic from `synthesizers` and three switches a reader can flip to see
  why each choice is made: per-example targets (x B) or mean-loss ones, bootstrapped targets or the true gradient
  at every block, and the label shuffled within the batch (a control for cDNI);
- `alignment`: per hidden block, how well what the block receives agrees with the true gradient
  (`probe.gradient_metrics`' whole-batch cosine), and how well the update the block then applies agrees with
  the one backprop would apply from the same state (`probe.update_alignment`, the series' one diagnostic);
- `plot_panels`: every live panel from a `Run.snapshot()`, a pure function of numbers (tested under Agg).

`Playground` is the widget, thin glue: knobs and buttons that change a `Run`, a background thread that steps
it while "play" is on, and `plot_panels` drawn into an image a few times a second. Without a front end
(nbval, scripts/run_notebooks.py) `Playground.run(steps)` runs the same loop for a fixed number of steps
(`STEPS`, per run size). Works with ipywidgets 7.7 (Colab) and 8 (JupyterLab). Notebook 03b.
"""
import copy
import io
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import learners, plots
from .critics import predicted_and_true
from .probe import gradient_metrics, hidden_outputs, synthetic_and_true_gradients, update_alignment
from .synthesizers import target_from, to_block
from .training import Adam
from .update_rates import StochasticDNI

CLASSES = 3
METHODS = ("backprop", "nobackprop", "dni", "cdni", "oracle", "synthetic_loss")
# Steps the notebook's headless cells run per size (a live front end runs as long as "play" is on).
STEPS = {"smoke": 60, "quick": 1_500, "paper": 3_000}
MEASURE_EVERY = 10   # steps between two measurements (loss, accuracy, cosines) of a run


def steps(size_name):
    """How many steps the notebook's fixed-length runs take at a run size (`long` runs the quick ones)."""
    return STEPS.get(size_name, STEPS["quick"])


def spirals(n=300, classes=CLASSES, noise=0.08, seed=0):
    """`classes` interleaved spiral arms in the square [-1, 1]^2, `n` points each: (x of shape (n*classes, 2),
    labels). No straight line separates them, so the hidden layers have to learn, and every region of the
    plane belongs to one arm, so the label says which way the gradient points."""
    g = torch.Generator().manual_seed(seed)
    radius = torch.linspace(0.05, 1.0, n).repeat(classes)
    y = torch.arange(n * classes, device=radius.device) // n
    angle = 3.5 * radius + 2 * math.pi * y / classes + noise * torch.randn(n * classes, generator=g) * 3
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return x + noise * torch.randn(x.shape, generator=g) * 0.3, y


def network(hidden=32, layers=3, classes=CLASSES, batchnorm=False):
    """(layers - 1) blocks of Linear -> [BatchNorm] -> tanh, then Linear to classes: a list of blocks with a
    decoupled interface possible after each hidden one, as `models.fcn` builds for MNIST."""
    blocks, width = [], 2
    for _ in range(layers - 1):
        norm = [nn.BatchNorm1d(hidden)] if batchnorm else []
        blocks.append(nn.Sequential(nn.Linear(width, hidden), *norm, nn.Tanh()))
        width = hidden
    blocks.append(nn.Sequential(nn.Linear(width, classes)))
    return nn.Sequential(*blocks)


class Oracle(nn.Module):
    """A "synthesizer" that returns the exact per-example gradient (batch size x dL/dh) by running the blocks
    above block `block` on the label it is given as context: the first thing to try when DNI does not
    train. With it a DNI step is a backprop step, so any remaining difference is in the machinery."""

    def __init__(self, model, block):
        super().__init__()
        self.above = lambda h: model[block + 1:](h)

    def forward(self, h, context):
        h = h.detach().requires_grad_()
        with torch.enable_grad():
            loss = F.cross_entropy(self.above(h), context.argmax(1))
            return torch.autograd.grad(loss, h)[0] * h.shape[0]


class PlaygroundDNI(StochasticDNI):
    """DNI / cDNI (each block and its synthesizer updating with probability p) with three switches.

    per_example (True): synthesizers predict B x dL/dh and a block receives the prediction / B; False: they
    predict the mean-loss gradient dL/dh itself and a block receives it as it is.
    bootstrap (True): lower blocks regress onto the block above's synthetic gradient pushed through that block
    (Jaderberg et al. 2016, supplementary A); False: every block onto its true gradient, which needs the full
    backward pass again (the update lock is back; for comparison only).
    shuffle_labels (False): cDNI's synthesizers see the labels of other examples of the batch.
    The step is `dni.DNI`'s; each switch overrides one of its hooks (`batch_factor`, `step_context`, `targets`),
    so with the defaults it is DNI's number for number (tests/test_playground.py checks it).
    """

    def __init__(self, model, lr, per_example=True, bootstrap=True, shuffle_labels=False, seed=0, **options):
        super().__init__(model, lr, seed=seed, **options)
        self.per_example, self.bootstrap, self.shuffle_labels = per_example, bootstrap, shuffle_labels
        self.shuffler = torch.Generator().manual_seed(seed + 1)

    def batch_factor(self, batch):
        return batch if self.per_example else 1                      # the x B / (/ B) pair, or neither

    def step_context(self, y):
        labels = y[torch.randperm(len(y), generator=self.shuffler).to(y.device)] if self.shuffle_labels else y
        return self.context(labels)

    def targets(self, inputs, top, factor, x, y):
        if self.bootstrap:
            return super().targets(inputs, top, factor, x, y)
        # The true gradients: a second forward and backward through the whole network (no update has
        # happened yet this step, so they are the gradients at this step's weights).
        hs, logits = hidden_outputs(self.model, x)
        return [target_from(g, factor) for g in torch.autograd.grad(F.cross_entropy(logits, y), hs)]


@dataclass
class Settings:
    """Every knob of the playground. `method`, the network and the synthesizer (`method`, `hidden`,
    `batchnorm`, `synthesizer_layers`, `random_bias`, `optimizer`, `seed`, `batch`) define a run; the others
    (`lr`, `p`, `per_example`, `bootstrap`, `shuffle_labels`) change what the next steps do."""

    method: str = "cdni"
    lr: float = 3e-3
    p: float = 1.0
    synthesizer_layers: int = 0
    synthesizer_hidden: int = 64
    per_example: bool = True
    bootstrap: bool = True
    shuffle_labels: bool = False
    random_bias: bool = False
    hidden: int = 32
    batchnorm: bool = False
    batch: int = 64
    optimizer: str = "adam"
    seed: int = 0

    LIVE = ("lr", "p", "per_example", "bootstrap", "shuffle_labels")


def _optimizer(name):
    return {"adam": Adam, "sgd": torch.optim.SGD}[name]


def make_learner(settings, model):
    """The learner for `settings.method` around `model` (see `METHODS`; "synthetic_loss" is notebook 04's
    learned loss, fitted on loss values only, whose slope the blocks follow)."""
    s = settings
    optimizer = _optimizer(s.optimizer)
    if s.method == "backprop":
        return learners.make("stochastic_backprop", model, s.lr, p=s.p, seed=s.seed, optimizer=optimizer)
    if s.method == "nobackprop":
        return learners.make("nobackprop", model, s.lr)
    if s.method == "synthetic_loss":
        return learners.make("synthetic_loss", model, s.lr, num_classes=CLASSES, optimizer=optimizer)
    if s.method not in METHODS:
        raise ValueError(f"unknown playground method {s.method!r}; choose one of {', '.join(METHODS)}.")
    oracle = [Oracle(model, i) for i in range(len(model) - 1)] if s.method == "oracle" else None
    learner = PlaygroundDNI(model, s.lr, per_example=s.per_example, bootstrap=s.bootstrap,
                            shuffle_labels=s.shuffle_labels, seed=s.seed, p=s.p, conditioned=s.method != "dni",
                            hidden_layers=s.synthesizer_layers, hidden=s.synthesizer_hidden, synthesizers=oracle,
                            num_classes=CLASSES, optimizer=optimizer)
    learner.method = s.method
    if s.random_bias:                            # the mistake the zero-initialised bias avoids
        g = torch.Generator().manual_seed(s.seed + 2)
        for synthesizer in (learner.synthesizers[i] for i in learner.trained):
            last = [m for m in synthesizer.modules() if isinstance(m, nn.Linear)][-1]
            with torch.no_grad():
                last.bias.copy_(torch.randn(last.bias.shape, generator=g))
    return learner


def apply_live(learner, settings):
    """Hand the live knobs to a running learner: they act from its next step on."""
    for optimizer in learner.optimizers:
        for group in optimizer.param_groups:
            group["lr"] = settings.lr
    if hasattr(learner, "coins"):
        learner.coins.p = learner.p = settings.p
    if isinstance(learner, PlaygroundDNI):
        learner.per_example, learner.bootstrap = settings.per_example, settings.bootstrap
        learner.shuffle_labels = settings.shuffle_labels


def update_cosines(learner, x, y):
    """Per hidden block: the cosine between the update the learner applies at (x, y) and backprop's update from
    the same parameters and optimizer state (`probe.update_alignment`, on copies: the run is untouched).
    Backprop gives 1 at every block, no backprop 0."""
    metrics = update_alignment(learner, x, y)
    return [metrics[f"upd_cos/{i}"] for i in range(len(learner.model) - 1)]


def alignment(learner, x, y):
    """Per hidden block: the whole-batch cosine between what the block receives and the true gradient
    (`probe.gradient_metrics`), with the synthetic and true per-example gradients themselves.
    For the synthetic loss, "synthetic" is the slope of its loss model; backprop and no backprop hand
    their blocks no synthetic gradient, and for them it returns empty lists."""
    if hasattr(learner, "loss_models"):
        onehot = F.one_hot(y, learner.num_classes).to(torch.get_default_dtype())
        synthetic, true = predicted_and_true(learner.model, learner.loss_models, x, y, onehot)[:2]
    elif hasattr(learner, "synthesizers"):
        context = learner.context(y)
        synthetic, true = synthetic_and_true_gradients(learner.model, learner.synthesizers, x, y, context)
    else:
        return [], [], []
    metrics = gradient_metrics(synthetic, true)
    return [metrics[f"cos_batch/{i}"] for i in range(len(synthetic))], synthetic, true


@dataclass
class Record:
    """What a run measured, every MEASURE_EVERY steps: step, mean training loss since the last point,
    test accuracy, and per hidden block the alignment (cosine)."""

    method: str
    step: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    cosine: list = field(default_factory=list)      # one list of per-block values per point
    update: list = field(default_factory=list)      # per point, per block: cosine of the update to backprop's


class Run:
    """One training run on the spirals: the same seed gives the same network, batches and numbers."""

    def __init__(self, settings, train=None, test=None, grid=60):
        self.settings = replace(settings)
        self.train = train if train is not None else spirals(seed=0)
        self.test = test if test is not None else spirals(seed=1)
        torch.manual_seed(settings.seed)
        self.model = network(settings.hidden, batchnorm=settings.batchnorm)
        self.initial = copy.deepcopy(self.model.state_dict())
        self.learner = make_learner(settings, self.model)
        self.batches = torch.Generator().manual_seed(settings.seed)
        self.order, self.cursor = None, 0
        self.record = Record(settings.method)
        self.steps, self.window = 0, []
        self.last = None                           # (x, y) of the last measured batch
        self.gradients = ([], [])
        axis = torch.linspace(-1.2, 1.2, grid)
        self.grid_axis = axis.numpy()
        self.grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)

    def batch(self):
        n = len(self.train[0])
        if self.order is None or self.cursor + self.settings.batch > n:
            self.order, self.cursor = torch.randperm(n, generator=self.batches), 0
        index = self.order[self.cursor:self.cursor + self.settings.batch]
        self.cursor += self.settings.batch
        return self.train[0][index], self.train[1][index]

    def set(self, **knobs):
        """Change live knobs (see `Settings.LIVE`): they act from the next step on."""
        unknown = set(knobs) - set(Settings.LIVE)
        if unknown:
            raise ValueError(f"{sorted(unknown)} define a run; start a new Run for them.")
        self.settings = replace(self.settings, **knobs)
        apply_live(self.learner, self.settings)

    def advance(self, n):
        """n training steps; measures every MEASURE_EVERY steps. Returns the last loss."""
        self.model.train()
        loss = float("nan")
        for _ in range(n):
            x, y = self.batch()
            loss = self.learner.step(x, y)[0].item()
            self.window.append(loss)
            self.steps += 1
            if self.steps % MEASURE_EVERY == 0:
                self.measure(x, y)
        return loss

    @torch.no_grad()
    def accuracy(self):
        self.model.eval()
        accuracy = (self.model(self.test[0]).argmax(1) == self.test[1]).float().mean().item()
        self.model.train()
        return accuracy

    def measure(self, x, y):
        self.record.step.append(self.steps)
        self.record.loss.append(float(np.mean(self.window)) if self.window else float("nan"))
        self.window = []
        self.record.accuracy.append(self.accuracy())
        cosine, synthetic, true = alignment(self.learner, x, y)
        self.record.cosine.append(cosine)
        self.record.update.append(update_cosines(self.learner, x, y))
        self.gradients, self.last = (synthetic, true), (x, y)

    @torch.no_grad()
    def regions(self):
        """Class probabilities on a grid over the plane, shape (grid, grid, classes)."""
        self.model.eval()
        probabilities = F.softmax(self.model(self.grid), dim=1)
        self.model.train()
        n = len(self.grid_axis)
        return probabilities.reshape(n, n, -1).numpy()

    def snapshot(self, block=None):
        """Everything `plot_panels` draws, as plain numbers (a copy: the run may go on meanwhile)."""
        synthetic, true = self.gradients
        block = len(synthetic) - 1 if block is None else block
        chosen = ((synthetic[block].numpy().copy(), true[block].numpy().copy())
                  if synthetic and 0 <= block < len(synthetic) else None)
        return dict(method=self.settings.method, step=self.steps, axis=self.grid_axis, regions=self.regions(),
                    points=self.test[0].numpy(), labels=self.test[1].numpy(),
                    record=copy.deepcopy(self.record), block=block, gradients=chosen)


CLASS_COLORS = ("#4c72b0", "#dd8452", "#55a868")


def plot_panels(snapshot, previous=(), size=None, fig=None):
    """The playground's four panels from `Run.snapshot()`: decision regions with the test points; training
    loss and test accuracy over steps (earlier runs faded, for comparison); per block the cosine between
    synthetic and true gradients; synthetic against true gradient of the chosen block. Pure: numbers in,
    Figure out."""
    if fig is None:
        fig = plt.figure(figsize=(16, 3.9))
    axes = fig.subplots(1, 4, gridspec_kw=dict(width_ratios=[1, 1.3, 1.3, 1]))
    regions, axis = snapshot["regions"], snapshot["axis"]
    rgb = np.tensordot(regions, np.array([plt.matplotlib.colors.to_rgb(c) for c in CLASS_COLORS]), axes=1)
    ax = axes[0]
    ax.imshow(0.45 * rgb + 0.55, origin="lower", extent=(axis[0], axis[-1], axis[0], axis[-1]))
    for k, color in enumerate(CLASS_COLORS):
        mine = snapshot["labels"] == k
        ax.scatter(*snapshot["points"][mine].T, s=4, color=color)
    record = snapshot["record"]
    accuracy = f", test accuracy {record.accuracy[-1]:.0%}" if record.accuracy else ""
    ax.set_title(f"{snapshot['method']}, step {snapshot['step']:,}{accuracy}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])

    ax, twin = axes[1], axes[1].twinx()
    for run, faded in [(r, True) for r in previous] + [(record, False)]:
        color, alpha, style = plots.method_color(run.method), 0.35 if faded else 1.0, ":" if faded else "-"
        label = f"{run.method} (earlier)" if faded else run.method
        ax.plot(run.step, run.loss, color=color, alpha=alpha, linestyle=style, linewidth=2, label=label)
        twin.plot(run.step, run.accuracy, color=color, alpha=alpha, linestyle=style, linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (log), thick")
    twin.set_ylabel("test accuracy, thin")
    twin.set_ylim(0, 1)
    ax.set_title("loss and accuracy" + (f"  [run size: {size}]" if size else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if record.step or previous:
        ax.legend(fontsize=7, loc="lower left")

    ax = axes[2]
    color = plots.method_color(record.method)
    blocks = max((len(c) for c in record.cosine), default=0)
    for b in range(blocks):
        values = [c[b] if len(c) > b else np.nan for c in record.cosine]
        ax.plot(record.step, values, label=f"gradient, block {b}" + (" (top)" if b == blocks - 1 else ""),
                linestyle="-" if b == blocks - 1 else "--", color=color)
    updates = max((len(u) for u in getattr(record, "update", [])), default=0)
    for b in range(updates):
        values = [u[b] if len(u) > b else np.nan for u in record.update]
        ax.plot(record.step, values, linestyle="none", marker="o" if b == updates - 1 else "x", markersize=2.5,
                color=color, alpha=0.6, label=f"update, block {b}" + (" (top)" if b == updates - 1 else ""))
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_ylim(-0.3, 1.05)
    ax.set_xlabel("step")
    ax.set_title("per block: cosine to backprop's gradient (lines) and update (dots)", fontsize=9)
    ax.grid(alpha=0.3)
    if blocks or updates:
        ax.legend(fontsize=7, loc="lower left")
    if not blocks:
        ax.text(0.5, 0.5, "no synthetic gradients\n(this method has no synthesizers)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="#666666")

    ax = axes[3]
    if snapshot["gradients"] is not None:
        synthetic, true = snapshot["gradients"]
        ax.scatter(true.ravel(), synthetic.ravel(), s=2, alpha=0.4, color=plots.method_color(record.method))
        limit = float(max(np.abs(true).max(), np.abs(synthetic).max(), 1e-8))
        ax.plot([-limit, limit], [-limit, limit], color="#999999", linewidth=0.6)
        cosine = float((synthetic * true).sum() / max(np.linalg.norm(synthetic) * np.linalg.norm(true), 1e-12))
        ax.set_title(f"block {snapshot['block']}: synthetic vs true, cosine {cosine:.2f}", fontsize=9)
    else:
        ax.set_title("synthetic vs true (no synthesizer)", fontsize=9)
    ax.set_xlabel("true per-example dL/dh")
    ax.set_ylabel("synthetic")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.02, right=0.985, bottom=0.15, top=0.9, wspace=0.42)   # fixed: tight_layout is slow
    return fig


def to_png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, pil_kwargs={"compress_level": 1})   # fast over small
    return buffer.getvalue()


def bootstrap_coupling(batchnorm, batch=16, seed=0):
    """How much example 0's bootstrapped target (block 0's, from block 1's synthetic gradient pushed through
    block 1) changes when only *another* example of the batch changes: 0 without BatchNorm, not 0 with it,
    because BatchNorm mixes the examples of a batch in the forward pass and therefore in the backward one."""
    torch.manual_seed(seed)
    model = network(8, batchnorm=batchnorm)
    synthesizer = nn.Linear(8, 8)            # any (trained) synthesizer: a random linear map
    g = torch.Generator().manual_seed(seed)

    def target(x):
        h0 = model[0](x).detach().requires_grad_()
        h1 = model[1](h0)
        h1.backward(to_block(synthesizer(h1.detach()), len(x)))
        return target_from(h0.grad, len(x))[0]

    x = torch.randn(batch, 2, generator=g)
    changed = x.clone()
    changed[1:] += torch.randn(batch - 1, 2, generator=g)   # every example but the first
    return (target(x) - target(changed)).abs().max().item()


class Playground:
    """The live widget over a `Run`: knobs, play / pause / step / reset, and the panels of `plot_panels`.

    Changing a live knob (learning rate, p, target scale, bootstrap, shuffled labels) acts on the next
    steps of the same run; changing the method, the synthesizer's depth or the seed starts a new run from the
    same seed's initial network and batches, and the earlier run stays on the loss panel, faded, so the two
    curves can be compared from a common start. `run(steps)` steps without a front end.
    """

    def __init__(self, settings=None, size=None, frame_seconds=0.5, keep=3):
        import ipywidgets as widgets
        self.widgets, self.size, self.frame_seconds, self.keep = widgets, size, frame_seconds, keep
        self.settings = settings or Settings()
        self.lock = threading.RLock()
        self.thread, self.playing = None, False
        self.previous = []
        self.run_ = Run(self.settings)
        self.steps_per_second = float("nan")
        s = self.settings
        style = {"description_width": "initial"}
        self.method = widgets.Dropdown(options=list(METHODS), value=s.method, description="method", style=style)
        self.depth = widgets.Dropdown(options=[("linear", 0), ("1 hidden", 1), ("2 hidden", 2)],
                                      value=s.synthesizer_layers, description="synthesizer", style=style)
        self.per_example = widgets.Checkbox(value=s.per_example, description="per-example targets (x B, / B)",
                                            style=style)
        self.bootstrap = widgets.Checkbox(value=s.bootstrap, description="bootstrapped targets below the top",
                                          style=style)
        self.shuffle = widgets.Checkbox(value=s.shuffle_labels, description="shuffle cDNI's labels", style=style)
        self.random_bias = widgets.Checkbox(value=s.random_bias, description="random synthesizer bias (a mistake)",
                                            style=style)
        self.p = widgets.FloatSlider(value=s.p, min=0.05, max=1.0, step=0.05, description="update p",
                                     continuous_update=False, style=style)
        self.lr = widgets.FloatLogSlider(value=s.lr, base=10, min=-4, max=0, step=0.1, description="learning rate",
                                         continuous_update=False, readout_format=".0e", style=style)
        self.seed = widgets.BoundedIntText(value=s.seed, min=0, max=9999, description="seed", style=style,
                                           layout=widgets.Layout(width="120px"))
        self.block = widgets.Dropdown(options=[("block 1 (top)", 1), ("block 0", 0)], value=1,
                                      description="gradients of", style=style)
        self.play = widgets.Button(description="play", icon="play")
        self.pause = widgets.Button(description="pause", icon="pause")
        self.one = widgets.Button(description="step")
        self.reset = widgets.Button(description="reset")
        self.status = widgets.Label()
        self.compare = widgets.Label()
        self.image = widgets.Image(format="png")
        for control in (self.method, self.depth, self.seed, self.random_bias):
            control.observe(self._restart, names="value")
        for control in (self.per_example, self.bootstrap, self.shuffle, self.p, self.lr):
            control.observe(self._live, names="value")
        self.block.observe(lambda change: self.render(), names="value")
        self.play.on_click(lambda button: self.start())
        self.pause.on_click(lambda button: self.stop())
        self.one.on_click(lambda button: self.run(MEASURE_EVERY))
        self.reset.on_click(lambda button: self._restart(None))
        self.render()

    # -- what the controls do -------------------------------------------------------------------------
    def _read(self):
        return replace(self.settings, method=self.method.value, synthesizer_layers=self.depth.value,
                       per_example=self.per_example.value, bootstrap=self.bootstrap.value,
                       shuffle_labels=self.shuffle.value, random_bias=self.random_bias.value, p=self.p.value,
                       lr=self.lr.value, seed=self.seed.value)

    def _live(self, change):
        with self.lock:
            self.settings = self._read()
            self.run_.set(**{k: getattr(self.settings, k) for k in Settings.LIVE})

    def _restart(self, change):
        """A new run from the seed's initial network; the current one is kept, faded, for comparison."""
        with self.lock:
            self.settings = self._read()
            if self.run_.record.step:
                self.previous = (self.previous + [self.run_.record])[-self.keep:]
            self.run_ = Run(self.settings)
        self.render()

    def run(self, steps):
        """`steps` training steps in this thread (no front end needed), then one frame."""
        with self.lock:
            start = time.perf_counter()
            self.run_.advance(steps)
            self.steps_per_second = steps / (time.perf_counter() - start)
        self.render()

    def start(self):
        if self.thread is not None and self.thread.is_alive():
            return
        self.playing = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.playing = False
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    def _loop(self):
        """While playing: step for about `frame_seconds`, draw a frame, repeat."""
        while self.playing:
            with self.lock:
                start, done = time.perf_counter(), 0
                while time.perf_counter() - start < self.frame_seconds:
                    self.run_.advance(MEASURE_EVERY)
                    done += MEASURE_EVERY
                self.steps_per_second = done / (time.perf_counter() - start)
            self.render()

    # -- what is shown ---------------------------------------------------------------------------------
    def snapshot(self):
        with self.lock:
            return self.run_.snapshot(self.block.value)

    def figure(self):
        """The current panels as a Figure (for a static copy beside the widget)."""
        return plot_panels(self.snapshot(), self.previous, self.size)

    def render(self):
        snapshot = self.snapshot()
        fig = plot_panels(snapshot, self.previous, self.size)
        self.image.value = to_png(fig)
        plt.close(fig)
        record = snapshot["record"]
        loss = f"loss {record.loss[-1]:.3f}, test accuracy {record.accuracy[-1]:.1%}" if record.step else "not started"
        speed = f", {self.steps_per_second:.0f} steps/s" if math.isfinite(self.steps_per_second) else ""
        self.status.value = f"step {snapshot['step']:,} · {snapshot['method']} · {loss}{speed}"
        self.compare.value = self.comparison(record)

    def comparison(self, record):
        """The latest earlier run at this run's step, in words: where the curves part."""
        if not self.previous or not record.step:
            return ""
        earlier = self.previous[-1]
        at = [k for k, s in enumerate(earlier.step) if s <= record.step[-1]]
        if not at:
            return ""
        k = at[-1]
        return (f"earlier run ({earlier.method}) at step {earlier.step[k]:,}: loss {earlier.loss[k]:.3f}, "
                f"test accuracy {earlier.accuracy[k]:.1%}")

    def widget(self):
        w = self.widgets
        run = w.VBox([self.method, self.depth, w.HBox([self.seed, self.random_bias])])
        live = w.VBox([self.lr, self.p, w.HBox([self.per_example, self.bootstrap]), self.shuffle])
        buttons = w.HBox([self.play, self.pause, self.one, self.reset, self.block])
        box = w.VBox([buttons, self.status, self.compare, w.HBox([run, live]), self.image])
        box.add_class("sg-playground")
        return box

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget())


def quiet():
    """True where progress bars should stay off (CI sets TQDM_DISABLE=1)."""
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def train(settings, n, **run_options):
    """A `Run` trained for `n` steps (a progress bar per run unless TQDM_DISABLE is set)."""
    run = Run(settings, **run_options)
    for _ in tqdm(range(0, n, MEASURE_EVERY), desc=settings.method, leave=False, disable=quiet()):
        run.advance(min(MEASURE_EVERY, n - run.steps))
    return run
