"""Figures used across the series. Pure functions: they take data and return a matplotlib Figure.

Each method keeps one colour in every notebook (`METHOD_COLORS`), so a reader can compare figures at a
glance; every figure says which run size produced it.
"""
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
}
LAYER_STYLES = {3: "-", 4: "--", 5: "-.", 6: ":"}


def method_color(method):
    return METHOD_COLORS.get(method, "#17becf")


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
