"""Every figure of the series. Pure functions: they take data and return a matplotlib Figure.

Each method keeps one colour in every notebook (`METHOD_COLORS`), so a reader can compare figures at a
glance; every figure says which run size produced it. Learning curves (01-07, 09), the locking timeline,
the cost of a step and the pipelined schedule (00), gradient comparisons (02-07, through widgets.GradientExplorer), the recurrent figures (08) and the
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


# ---- Notebook 00: who waits, what a step costs, and where the speed comes from ----

WORK = ("forward", "backward", "synthesizer", "synthesizer_training")
WORK_LABELS = {"forward": "forward", "backward": "backward (local for DNI)", "synthesizer": "synthesizer forward",
               "synthesizer_training": "synthesizer training", "update": "update", "waiting": "waiting"}
WORK_COLORS = {"forward": "#1f77b4", "backward": "#ff7f0e", "synthesizer": "#9edae5",
               "synthesizer_training": "#17becf", "update": "#2ca02c", "waiting": "#e6e6e6"}


def schematic_costs(layers=3):
    """The work of each layer in one step, in units of one layer's forward pass, every layer the same size:
    forward 1; backward 2 (weight gradient and input gradient; 1 for the first layer, whose input needs no
    gradient); a synthesizer as big as its layer (linear): forward 1, training 1 (its weight gradient). The
    top layer has the loss and no synthesizer. The same counting as `benchmarks/step_time.py`'s ideal ratio."""
    return [{"forward": 1.0, "backward": 1.0 if i == 0 else 2.0, "synthesizer": 0.0 if i == layers - 1 else 1.0,
             "synthesizer_training": 0.0 if i == layers - 1 else 1.0} for i in range(layers)]


def locking_schedule(costs, method):
    """When each layer does what during one step, one device per layer: {layer: [(start, length, kind)]}
    (an update has length 0). Forward locking holds for both methods. Backprop: layer i's backward waits for
    layer i+1's. DNI: layer i updates after its forward, its synthesizer's forward and its local backward;
    its synthesizer trains when its target (the input gradient of layer i+1, true at the top) has arrived."""
    n, busy, t = len(costs), {}, 0.0
    forward_end = []
    for c in costs:
        forward_end.append(t + c["forward"])
        t += c["forward"]
    if method == "backprop":
        t = forward_end[-1]
        for i in reversed(range(n)):
            c = costs[i]
            busy[i + 1] = [(forward_end[i] - c["forward"], c["forward"], "forward"), (t, c["backward"], "backward"),
                           (t + c["backward"], 0.0, "update")]
            t += c["backward"]
        return busy
    target_ready = {}
    for i in reversed(range(n)):
        c, t = costs[i], forward_end[i]
        spans = [(t - c["forward"], c["forward"], "forward")]
        if c["synthesizer"] or i < n - 1:
            spans.append((t, c["synthesizer"], "synthesizer"))
            t += c["synthesizer"]
        spans += [(t, c["backward"], "backward"), (t + c["backward"], 0.0, "update")]
        t += c["backward"]
        target_ready[i] = t                             # the gradient at this layer's input exists from now on
        if i < n - 1:
            start = max(t, target_ready[i + 1])
            spans.append((start, c["synthesizer_training"], "synthesizer_training"))
        busy[i + 1] = spans
    return busy


def _draw_busy(ax, busy, end, title):
    for layer, spans in busy.items():
        ax.broken_barh([(0, end)], (layer - 0.35, 0.7), color=WORK_COLORS["waiting"])
        for start, length, kind in spans:
            if kind == "update":
                ax.plot([start, start], [layer - 0.42, layer + 0.42], color=WORK_COLORS["update"], lw=3)
            else:
                ax.broken_barh([(start, length)], (layer - 0.35, 0.7), color=WORK_COLORS[kind])
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, end)


def _work_legend(fig, kinds, y=-0.02):
    handles = [Patch(color=WORK_COLORS[k], label=WORK_LABELS[k]) for k in kinds]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, y))


def plot_locking(layers=3, costs=None, unit="one layer's forward pass"):
    """Who is busy when during one training step, one device per layer, for backprop and for DNI
    (Jaderberg et al. 2016, section 1). Bar lengths are each kind of work's cost (`costs`: one dict per
    layer with the keys of WORK; default `schematic_costs`), so the DNI panel shows everything DNI does:
    forward, synthesizer forward, local backward, and the synthesizer's training once its target arrives.

    Backprop: layer i cannot update before the forward pass has reached the loss and the backward pass has
    come back down (update and backward locking). DNI: layer i updates right after its own work, earlier,
    although the step as a whole holds more work. Each panel's title gives its total work.
    """
    costs = schematic_costs(layers) if costs is None else costs
    layers = len(costs)
    schedules = {m: locking_schedule(costs, m) for m in ("backprop", "dni")}
    end = max(s + d for busy in schedules.values() for spans in busy.values() for s, d, _ in spans) * 1.02
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.3 + 0.6 * layers), sharey=True, sharex=True)
    for ax, method, title in ((axes[0], "backprop", "backprop: each layer waits for the whole backward pass"),
                              (axes[1], "dni", "synthetic gradients: each layer updates after its own work")):
        total = sum(d for spans in schedules[method].values() for _, d, _ in spans)
        _draw_busy(ax, schedules[method], end, f"{title}\n(total work {total:g})")
        ax.set_xlabel(f"time, in units of {unit}")
    axes[0].set_yticks(range(1, layers + 1), [f"layer {i}" for i in range(1, layers + 1)])
    axes[0].invert_yaxis()
    _work_legend(fig, ["forward", "backward", "synthesizer", "synthesizer_training", "update", "waiting"])
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_step_costs(costs, measured=None, size=None):
    """What one training step costs, per method. `costs`: {method: [one dict per block, keys of WORK]} in
    multiply-adds per example; left, one stacked bar per method with its ratio to backprop. `measured`:
    {method: ms per step}, drawn on the right with the measured ratio, so the two can be read side by side."""
    methods = list(costs)
    totals = {m: sum(sum(block.values()) for block in costs[m]) for m in methods}
    base = totals.get("backprop", totals[methods[0]])
    panels = 2 if measured else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 1.5 + 0.55 * len(methods)), squeeze=False)
    ax = axes[0][0]
    for row, method in enumerate(methods):
        left = 0.0
        for kind in WORK:
            value = sum(block[kind] for block in costs[method])
            ax.barh(row, value, left=left, color=WORK_COLORS[kind], edgecolor="white",
                    label=WORK_LABELS[kind] if row == 0 else None)
            left += value
        ax.text(left, row, f"  {totals[method] / base:.2f}x", va="center", fontsize=9)
    ax.set_yticks(range(len(methods)), methods)
    ax.invert_yaxis()
    ax.set_xlim(0, max(totals.values()) * 1.25)
    ax.set_xlabel("multiply-adds per example, one training step")
    ax.set_title("counted: the work in a step (ratio to backprop)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    if measured:
        ax = axes[0][1]
        base_ms = measured.get("backprop", measured[methods[0]])
        for row, method in enumerate(methods):
            ax.barh(row, measured[method], color=method_color(method))
            ax.text(measured[method], row, f"  {measured[method] / base_ms:.2f}x", va="center", fontsize=9)
        ax.set_yticks(range(len(methods)), methods)
        ax.invert_yaxis()
        ax.set_xlim(0, max(measured.values()) * 1.25)
        ax.set_xlabel("ms per step, median (measured here)")
        ax.set_title("measured: one process, one step after another" + _suffix(size), fontsize=10)
    fig.tight_layout()
    return fig


def pipeline_periods(costs):
    """The one-line cost model of throughput, one device per block: a locked step (backprop) finishes a
    batch every sum_k (F_k + B_k); a decoupled pipeline, every block on a different batch, finishes one every
    max_k (F_k + S_k + B_k + R_k) (forward, synthesizer forward, local backward, synthesizer training)."""
    return {"locked": sum(c["forward"] + c["backward"] for c in costs),
            "decoupled": max(sum(c[k] for k in WORK) for c in costs)}


def pipeline_schedule(costs, batches, mode):
    """What each block does when over `batches` batches, one device per block: a list of
    (block, kind, start, length, batch). locked: batch b+1 enters block 1 only after block 1 has updated
    from batch b's backward pass. decoupled: block k takes batch b as soon as block k-1 has sent it up and
    block k is free; after its local backward it trains its synthesizer on batch b-1, whose target (the input
    gradient of block k+1) has arrived by then or is waited for."""
    n, events = len(costs), []
    free = [0.0] * n
    if mode == "locked":
        for b in range(batches):
            t = free[0]
            for k, c in enumerate(costs):
                events.append((k, "forward", t, c["forward"], b))
                t += c["forward"]
            for k in reversed(range(n)):
                events.append((k, "backward", t, costs[k]["backward"], b))
                t += costs[k]["backward"]
                free[k] = t
        return events
    ready = {}                                           # (block, batch): when its input gradient exists
    for b in range(batches + 1):
        arrived = 0.0                                    # when batch b's activations reach the block
        for k, c in enumerate(costs):
            t = free[k]
            if b < batches:
                t = max(t, arrived)
                events.append((k, "forward", t, c["forward"], b))
                t += c["forward"]
                arrived = t
                if k < n - 1:
                    events.append((k, "synthesizer", t, c["synthesizer"], b))
                    t += c["synthesizer"]
                events.append((k, "backward", t, c["backward"], b))
                t += c["backward"]
                ready[k, b] = t
            if k < n - 1 and b > 0:                      # train the synthesizer on the previous batch
                t = max(t, ready[k + 1, b - 1])
                events.append((k, "synthesizer_training", t, c["synthesizer_training"], b - 1))
                t += c["synthesizer_training"]
            free[k] = t
    return events


def plot_pipeline_schedule(costs=None, blocks=3, batches=4):
    """A schematic timeline of several batches, one device per block: locked (backprop: a batch goes up and
    back down before the next may enter) against decoupled (every block works on a different batch at once).
    Forward bars carry their batch number. The title gives `pipeline_periods`, the one-line cost model."""
    costs = schematic_costs(blocks) if costs is None else costs
    schedules = {m: pipeline_schedule(costs, batches, m) for m in ("locked", "decoupled")}
    end = max(s + d for events in schedules.values() for _, _, s, d, _ in events) * 1.02
    periods = pipeline_periods(costs)
    fig, axes = plt.subplots(2, 1, figsize=(11, 1.6 + 1.0 * len(costs)), sharex=True)
    for ax, mode in zip(axes, ("locked", "decoupled")):
        for k in range(len(costs)):
            ax.broken_barh([(0, end)], (k + 1 - 0.35, 0.7), color=WORK_COLORS["waiting"])
        for k, kind, start, length, b in schedules[mode]:
            ax.broken_barh([(start, length)], (k + 1 - 0.35, 0.7), color=WORK_COLORS[kind], edgecolor="white")
            if kind == "forward":
                ax.text(start + length / 2, k + 1, str(b + 1), ha="center", va="center", fontsize=8, color="white")
        ax.set_yticks(range(1, len(costs) + 1), [f"block {k}" for k in range(1, len(costs) + 1)])
        ax.invert_yaxis()
        ax.set_xlim(0, end)
        name = "locked (backprop)" if mode == "locked" else "decoupled (synthetic gradients)"
        ax.set_title(f"{name}: one batch every {periods[mode]:g} units", fontsize=10)
    axes[1].set_xlabel("time, in units of one block's forward pass (schematic; numbers on bars: batch)")
    fig.suptitle("Schematic, one device per block. Locked: a batch every sum over blocks of (F + B); decoupled: every "
                 "max over blocks of (F + S + B + R)\n(F forward, B backward, S synthesizer forward, R synthesizer "
                 "training)", fontsize=10)
    _work_legend(fig, ["forward", "backward", "synthesizer", "synthesizer_training", "waiting"])
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_gradient_comparison(synthetic, true, layer, iteration, history=None, size=None, units=64, examples=32,
                             label="synthetic"):
    """Synthetic vs true gradient of one hidden block at one checkpoint, side by side.

    synthetic, true: (batch, units) tensors (per-example dL/dh, as `dni.DNI.measure` records them).
    label: what the first tensor is, in the panels ("synthetic"; for DGL, "DGL head": its local gradient).
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
    ax.set_ylabel(f"{label} gradient component")
    ax.set_title(f"block {layer}, iteration {iteration:,}\nwhole-batch cosine {cosine:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    scale = float(true[:examples, :units].abs().max()) or 1.0
    for ax, values, name in ((axes[1], synthetic, label), (axes[2], true, "true")):
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


def plot_conv_gradient_comparison(synthetic, true, layer, iteration, history=None, size=None, example=None,
                                  label="synthetic"):
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
    ax.set_ylabel(f"cosine({label}, true)")
    ax.set_title(f"block {layer}, iteration {iteration:,}\n|{label}| / |true| = {ratio:.2f}")
    ax.legend(loc="lower right", fontsize=8)
    if example is None:
        example = int(true.flatten(1).norm(dim=1).argmax())
    channel = int(true[example].flatten(1).norm(dim=1).argmax())
    scale = max(float(true[example, channel].abs().max()), float(synthetic[example, channel].abs().max())) or 1.0
    for ax, values, name in ((axes[1], true, "true"), (axes[2], synthetic, label)):
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


def plot_update_alignment(histories, size=None, title=None):
    """Notebook 08: the cosine between the LSTM's update in a window and full BPTT's from the same state
    (history.extra["upd_step_cos"], momentum set aside; `rnn.update_alignment`) over training, every run; for
    DNI also the same window's update with the synthetic gradient left out (["upd_step_cos_cut"], dotted)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    seen = set()
    for h in histories:
        if "upd_step_cos" not in h.extra:
            continue
        characters = [s * h.meta["window"] for s in h.iteration]
        color = recurrent_color(h.method)
        ax.plot(characters, h.extra["upd_step_cos"], color=color, alpha=0.8,
                label=_once(f"{RECURRENT_LABELS[h.method]}: its own update", seen))
        if "upd_step_cos_cut" in h.extra:
            ax.plot(characters, h.extra["upd_step_cos_cut"], ":", color=color, alpha=0.8,
                    label=_once(f"{RECURRENT_LABELS[h.method]}'s update without M (same state)", seen))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("characters read")
    ax.set_ylabel("cosine to full BPTT's update")
    ax.set_title((title or "The LSTM's update in a window against full BPTT's") + _suffix(size), fontsize=10)
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
