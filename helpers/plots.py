"""Every figure of the series. Pure functions: they take data and return a matplotlib Figure.

Each method keeps one colour in every notebook (`METHOD_COLORS`), so a reader can compare figures at a
glance; every figure says which run size produced it. Learning curves and the locking timeline (00-07,
09), gradient comparisons (02-07, through widgets.GradientExplorer), the recurrent figures (08) and the
pipeline's timeline (09).
"""
import math
import statistics

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch

METHOD_COLORS = {
    "backprop": "#222222",
    "nobackprop": "#9a9a9a",
    "dni": "#1f77b4",
    "cdni": "#ff7f0e",
    "synthetic_loss": "#d62728",
    "critic": "#9467bd",
    "full_unlock": "#2ca02c",
    "fa": "#8c564b",
    "dfa": "#e377c2",
    "dni_aux": "#aec7e8",
    "dgl": "#bcbd22",
    "dgl_buffer": "#dbdb8d",
}
LAYER_STYLES = {3: "-", 4: "--", 5: "-.", 6: ":"}


def method_color(method):
    return METHOD_COLORS.get(method, "#17becf")


def _suffix(size):
    return f"  [run size: {size}]" if size else ""


def plot_learning_curves(histories, metric="test_accuracy", size=None, ax=None, title=None):
    """One axes with a curve per run: colour = method, line style = depth. Returns the Figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for history in histories:
        values = getattr(history, metric)
        ax.plot(history.iteration, values, color=method_color(history.method),
                linestyle=LAYER_STYLES.get(history.layers, "-"), label=history.label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title((title or metric.replace("_", " ")) + (f"  [run size: {size}]" if size else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def plot_locking(layers=3):
    """Timelines of which layer is busy when, for backprop and for DNI (Jaderberg et al. 2016, section 1).

    Backprop: layer i cannot update until the forward pass has reached the loss and the backward pass
    has come back down (update locking), so it mostly waits. With a synthetic gradient each layer
    updates right after its own forward step, and its synthesizer learns later, off the critical path.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.6 * layers), sharey=True)
    colors = {"forward": "#1f77b4", "backward": "#ff7f0e", "update": "#2ca02c", "waiting": "#e6e6e6"}

    def draw(ax, busy, title, end):
        for layer, spans in busy.items():
            ax.broken_barh([(0, end)], (layer - 0.35, 0.7), color=colors["waiting"])
            for start, length, kind in spans:
                ax.broken_barh([(start, length)], (layer - 0.35, 0.7), color=colors[kind])
        ax.set_title(title)
        ax.set_xlabel("time (steps of work)")
        ax.set_xlim(0, end)

    backprop = {i: [(i - 1, 1, "forward"), (2 * layers - i, 1, "backward"), (2 * layers - i + 1, 0.5, "update")]
                for i in range(1, layers + 1)}
    decoupled = {i: [(i - 1, 1, "forward"), (i, 0.5, "update")] for i in range(1, layers + 1)}
    draw(axes[0], backprop, "backprop: each layer waits for the whole backward pass", 2 * layers + 0.5)
    draw(axes[1], decoupled, "synthetic gradients: update right after forward", 2 * layers + 0.5)
    axes[0].set_yticks(range(1, layers + 1), [f"layer {i}" for i in range(1, layers + 1)])
    axes[0].invert_yaxis()
    fig.legend(handles=[Patch(color=c, label=k) for k, c in colors.items()], loc="lower center", ncol=4,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_gradient_comparison(synthetic, true, layer, iteration, history=None, size=None, units=64, examples=32):
    """Synthetic vs true gradient of one hidden block at one checkpoint, side by side.

    synthetic, true: (batch, units) tensors (per-example dL/dh, as `dni.DNI.measure` records them).
    Panels: a scatter of all components against y = x; heatmaps of the first `examples` x `units`
    entries on one colour scale; and, given the `history`, the whole-batch cosine of every layer over
    training with this checkpoint marked. Returns the Figure.
    """
    synthetic, true = synthetic.detach().float().cpu().flatten(1), true.detach().float().cpu().flatten(1)
    cosine = float(torch.nn.functional.cosine_similarity(synthetic.flatten(), true.flatten(), dim=0))
    panels = 4 if history is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4))
    ax = axes[0]
    ax.scatter(true.flatten(), synthetic.flatten(), s=2, alpha=0.3, color=METHOD_COLORS["dni"])
    limit = float(max(true.abs().max(), synthetic.abs().max(), 1e-12))
    ax.plot([-limit, limit], [-limit, limit], color="#222222", linewidth=0.8, label="y = x")
    ax.set_xlabel("true gradient component")
    ax.set_ylabel("synthetic gradient component")
    ax.set_title(f"block {layer}, iteration {iteration:,}\nwhole-batch cosine {cosine:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    scale = float(true[:examples, :units].abs().max()) or 1.0
    for ax, values, name in ((axes[1], synthetic, "synthetic"), (axes[2], true, "true")):
        image = ax.imshow(values[:examples, :units], cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_title(f"{name} dL/dh")
        ax.set_xlabel("unit")
        ax.set_ylabel("example")
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    return _finish_comparison(fig, axes, iteration, history, size)


def _finish_comparison(fig, axes, iteration, history, size):
    """The gradient comparisons' last panel (every block's cosine over training, this checkpoint marked) and title."""
    if history is not None:
        plot_gradient_quality(history, ax=axes[3])
        axes[3].axvline(iteration, color="#999999", linestyle="--", linewidth=1)
    if size:
        fig.suptitle(f"run size: {size}", fontsize=9, x=0.99, ha="right")
    fig.tight_layout()
    return fig


def plot_gradient_quality(history, metric="cos_batch", ax=None, size=None):
    """A learner's per-block gradient measurement (`history.extra[f"{metric}/{block}"]`) over training."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    blocks = sorted(int(key.split("/")[1]) for key in history.extra if key.startswith(metric + "/"))
    if not blocks:
        raise ValueError(f"history has no {metric!r} measurements; train a learner that has measure().")
    cmap = plt.get_cmap("viridis")
    for k, block in enumerate(blocks):
        ax.plot(history.iteration, history.extra[f"{metric}/{block}"], color=cmap(k / max(1, len(blocks) - 1)),
                label=f"block {block}")
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{history.method}: {metric.replace('_', ' ')} by block" + (f"  [run size: {size}]" if size else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def channel_cosines(synthetic, true):
    """Cosine between synthetic and true gradient per channel of a feature-map gradient (N, C, H, W),
    over all examples and positions: which channels' gradients the synthesizer has learned to predict."""
    if synthetic.dim() != 4 or synthetic.shape != true.shape:
        raise ValueError(f"expected two gradients of one shape (N, C, H, W); got {tuple(synthetic.shape)} "
                         f"and {tuple(true.shape)}.")
    s, t = synthetic.transpose(0, 1).flatten(1).float(), true.transpose(0, 1).flatten(1).float()
    return torch.nn.functional.cosine_similarity(s, t, dim=1, eps=1e-12)


def plot_conv_gradient_comparison(synthetic, true, layer, iteration, history=None, size=None, example=None):
    """Synthetic vs true gradient of a convolutional block's feature map at one checkpoint.

    Panels: the cosine of every channel (bars, whole-batch cosine as a line); the true and synthetic
    gradient maps of one example (by default the one with the largest true gradient: a well-classified
    image's gradient is nearly zero) in its channel with the largest true gradient, on one colour scale;
    and, given the `history`, every block's whole-batch cosine over training. Same call as
    `plot_gradient_comparison`, so `widgets.GradientExplorer(..., plot=plot_conv_gradient_comparison)`.
    """
    synthetic, true = synthetic.detach().float().cpu(), true.detach().float().cpu()
    cosines = channel_cosines(synthetic, true)
    overall = float(torch.nn.functional.cosine_similarity(synthetic.flatten(), true.flatten(), dim=0))
    ratio = float(synthetic.norm() / true.norm().clamp_min(1e-30))
    panels = 4 if history is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4))
    ax = axes[0]
    ax.bar(range(len(cosines)), cosines, width=1.0, color=METHOD_COLORS["dni"])
    ax.axhline(overall, color="#222222", linewidth=1, label=f"whole batch {overall:.2f}")
    ax.set_ylim(-1, 1)
    ax.set_xlabel("channel")
    ax.set_ylabel("cosine(synthetic, true)")
    ax.set_title(f"block {layer}, iteration {iteration:,}\n|synthetic| / |true| = {ratio:.2f}")
    ax.legend(loc="lower right", fontsize=8)
    if example is None:
        example = int(true.flatten(1).norm(dim=1).argmax())
    channel = int(true[example].flatten(1).norm(dim=1).argmax())
    scale = max(float(true[example, channel].abs().max()), float(synthetic[example, channel].abs().max())) or 1.0
    for ax, values, name in ((axes[1], true, "true"), (axes[2], synthetic, "synthetic")):
        image = ax.imshow(values[example, channel], cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(f"{name} dL/dh, example {example}, channel {channel}\n"
                     f"(cosine in this channel {float(cosines[channel]):.2f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    return _finish_comparison(fig, axes, iteration, history, size)


# ---- Notebook 08: recurrent DNI (a history per run, from rnn.train_copy / rnn.train_text) ----

RECURRENT_LABELS = {"tbptt": "truncated BPTT", "dni": "DNI", "dni_aux": "DNI + Aux"}


def recurrent_color(method):
    """Truncated BPTT takes backprop's colour (it is backprop, cut into windows); DNI keeps its own."""
    return method_color("backprop" if method == "tbptt" else method)


def _once(label, seen):
    """A legend label the first time a method is drawn, none after (several seeds share one entry)."""
    if label in seen:
        return None
    seen.add(label)
    return label


def plot_curriculum(histories, size=None, x="characters"):
    """One panel per truncation T: the curriculum level (copy length being trained) over training, one
    line per run (several seeds of a method share its colour). x: "characters" (time steps read: window
    steps x T) or "windows"."""
    windows = sorted({h.meta["window"] for h in histories})
    fig, axes = plt.subplots(1, len(windows), figsize=(4.2 * len(windows), 3.4), sharey=True, squeeze=False)
    for ax, window in zip(axes[0], windows):
        seen = set()
        for h in (h for h in histories if h.meta["window"] == window):
            scale = window if x == "characters" else 1
            steps = [0] + [s * scale for s in h.iteration]
            offset = 0.04 * (h.meta.get("seed", 0) - 1)          # seeds drawn a hair apart, so ties stay visible
            ax.step(steps, [1 + offset] + [v + offset for v in h.extra["level"]], where="post", alpha=0.8,
                    color=recurrent_color(h.method), label=_once(RECURRENT_LABELS[h.method], seen))
        ax.set_title(f"T = {window}")
        ax.set_xlabel(f"{x} read")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("curriculum level (copy length N)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{histories[0].meta['task'].replace('_', '-')} task: curriculum level over training" + _suffix(size))
    fig.tight_layout()
    return fig


def plot_solved(histories, size=None):
    """The longest copy length solved, for each T and method: one dot per seed, a bar at the median."""
    windows = sorted({h.meta["window"] for h in histories})
    methods = [m for m in RECURRENT_LABELS if any(h.method == m for h in histories)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        for j, window in enumerate(windows):
            solved = sorted(h.meta["solved"] for h in histories if h.method == method and h.meta["window"] == window)
            if not solved:
                continue
            x = j + (i - (len(methods) - 1) / 2) * width
            ax.bar(x, statistics.median(solved), width, color=recurrent_color(method), alpha=0.45,
                   label=RECURRENT_LABELS[method] if j == 0 else None)
            spread = [x + width * 0.25 * (k - (len(solved) - 1) / 2) for k in range(len(solved))]
            ax.plot(spread, solved, "o", color=recurrent_color(method), ms=5, mec="black", mew=0.5)
    ax.set_xticks(range(len(windows)), [f"T = {w}" for w in windows])
    ax.set_ylabel("longest length solved")
    task = histories[0].meta.get("task", "copy").replace("_", "-")
    ax.set_title(f"{task.capitalize()}: longest length solved (dots: seeds, bars: median)" + _suffix(size), fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def plot_future_cosine(histories, size=None, title=None):
    """Left: the error over training (bits per output vector at the length being trained), every run.
    Right: for the runs with a synthesizer, the whole-batch cosine between its prediction and the true
    discounted future gradient at window boundaries (history.extra["cos_future"]), over training."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    seen_left, seen_right = set(), set()
    for h in histories:
        characters = [s * h.meta["window"] for s in h.iteration]
        label = f"{RECURRENT_LABELS[h.method]}, T = {h.meta['window']}"
        style = "-" if h.meta["window"] == min(g.meta["window"] for g in histories) else "--"
        left.plot(characters, h.train_loss, style, color=recurrent_color(h.method), alpha=0.8, label=_once(label, seen_left))
        if "cos_future" in h.extra:
            right.plot(characters, h.extra["cos_future"], style, color=recurrent_color(h.method), alpha=0.8,
                       label=_once(label, seen_right))
    left.set_xlabel("characters read")
    left.set_ylabel("error (bits per output vector)")
    left.set_title(title or "Error at the length being trained" + _suffix(size), fontsize=10)
    right.axhline(0, color="black", lw=0.8)
    right.set_xlabel("characters read")
    right.set_ylabel("cosine (whole batch)")
    right.set_title("Synthetic vs true future gradient at the window boundary", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reach(norms, window, cosines, size=None):
    """Left: how strongly the loss k steps ahead depends on the state (true gradient norms, mean over
    anchors), with the part truncated BPTT can see (k < T) shaded. Right: cosine of the synthetic
    gradient with the true gradient of all later loss at window boundaries, per method and T."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    lags = range(1, len(norms) + 1)
    left.semilogy(lags, [n if n > 0 else math.nan for n in norms], "o-", color="#444444", ms=3,
                  label="true |d loss(t+k) / d s(t)|")
    left.axvspan(0.5, window - 0.5, color=recurrent_color("tbptt"), alpha=0.12, label=f"within a window of T = {window}")
    left.set_xlabel("k (steps between the state and the loss)")
    left.set_ylabel("per-example gradient norm")
    left.set_title("How far back the true gradient reaches" + _suffix(size))
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    windows = sorted({w for _, w in cosines})
    methods = [m for m in RECURRENT_LABELS if any(m == k for k, _ in cosines)]
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(windows))]
        right.bar(xs, [cosines.get((method, w), math.nan) for w in windows], width, color=recurrent_color(method),
                  label=RECURRENT_LABELS[method])
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(range(len(windows)), [f"T = {w}" for w in windows])
    right.set_ylabel("cosine (whole batch)")
    right.set_title("Synthetic vs true future gradient at the boundary")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_text(histories, size=None):
    """Training bits per character over the characters read, one line per run (seeds share a colour; the
    legend gives each method's held-out bits per character, mean over its seeds)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for method in [m for m in RECURRENT_LABELS if any(h.method == m for h in histories)]:
        runs = [h for h in histories if h.method == method]
        held_out = statistics.fmean(h.meta["test_bpc"] for h in runs)
        for k, h in enumerate(runs):
            ax.plot([s * h.meta["window"] for s in h.iteration], h.train_loss, color=recurrent_color(method), alpha=0.8,
                    label=f"{RECURRENT_LABELS[method]} (held-out {held_out:.3f} bpc, mean of {len(runs)})" if k == 0 else None)
    ax.set_xlabel("characters read")
    ax.set_ylabel("training bits per character")
    ax.set_title(f"Character model, T = {histories[0].meta['window']}" + _suffix(size))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ---- Notebook 09: what each pipeline stage did when (reports from pipeline.launch) ----

EVENT_COLORS = {"forward": "#1f77b4", "backward": "#ff7f0e", "synthesizer": "#2ca02c", "wait": "#d9d9d9"}


def plot_timeline(reports, start=None, length=None, ax=None, title=None):
    """What each stage did when: one row per process, coloured by kind of work (grey = waiting).

    `start` and `length` (seconds after the first event) pick a window; the default shows the first
    20% of the run after its first 10%. Returns the Figure.
    """
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
