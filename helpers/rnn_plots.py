"""Figures for notebook 08 (recurrent DNI). Pure functions: data in, matplotlib Figure out.

Colours follow the series (`plots.METHOD_COLORS`): truncated BPTT takes backprop's colour (it is
backprop, cut into windows), DNI keeps its own, DNI + Aux gets "dni_aux".
"""
import math

import matplotlib.pyplot as plt

from .plots import method_color

LABELS = {"tbptt": "truncated BPTT", "dni": "DNI", "dni_aux": "DNI + Aux"}


def color(method):
    return method_color("backprop" if method == "tbptt" else method)


def _suffix(size):
    return f"  [run size: {size}]" if size else ""


def plot_curriculum(histories, size=None, x="characters"):
    """One panel per truncation T: the curriculum level (copy length being trained) over training, one
    curve per method. x: "characters" (time steps read: window steps x T) or "windows"."""
    windows = sorted({h["window"] for h in histories})
    fig, axes = plt.subplots(1, len(windows), figsize=(3.2 * len(windows), 3.4), sharey=True, squeeze=False)
    for ax, window in zip(axes[0], windows):
        for h in (h for h in histories if h["window"] == window):
            scale = window if x == "characters" else 1
            steps = [0] + [s * scale for s in h["step"]]
            ax.step(steps, [1] + h["level"], where="post", color=color(h["method"]), label=LABELS[h["method"]])
        ax.set_title(f"T = {window}")
        ax.set_xlabel(f"{x} read")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("curriculum level (copy length N)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{histories[0]['task'].replace('_', '-')} task: curriculum level over training" + _suffix(size))
    fig.tight_layout()
    return fig


def plot_solved(histories, size=None):
    """Grouped bars: the longest copy length solved for each T and method."""
    windows = sorted({h["window"] for h in histories})
    methods = [m for m in LABELS if any(h["method"] == m for h in histories)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        solved = {h["window"]: h["solved"] for h in histories if h["method"] == method}
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(windows))]
        ax.bar(xs, [solved.get(w, 0) for w in windows], width, color=color(method), label=LABELS[method])
    ax.set_xticks(range(len(windows)), [f"T = {w}" for w in windows])
    ax.set_ylabel("longest copy length solved")
    ax.set_title("Copy task: longest length solved within the budget" + _suffix(size))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def plot_reach(norms, window, cosines, size=None):
    """Left: how strongly the loss k steps ahead depends on the state (true gradient norms, mean over
    anchors), with the part truncated BPTT can see (k < T) shaded. Right: cosine of the synthetic
    gradient with the true gradient of all later loss at window boundaries, per method and T."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    lags = range(1, len(norms) + 1)
    left.semilogy(lags, [n if n > 0 else math.nan for n in norms], "o-", color="#444444", ms=3,
                  label="true |d loss(t+k) / d s(t)|")
    left.axvspan(0.5, window - 0.5, color=color("tbptt"), alpha=0.12, label=f"within a window of T = {window}")
    left.set_xlabel("k (steps between the state and the loss)")
    left.set_ylabel("per-example gradient norm")
    left.set_title("How far back the true gradient reaches" + _suffix(size))
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    windows = sorted({w for _, w in cosines})
    methods = [m for m in LABELS if any(m == k for k, _ in cosines)]
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(windows))]
        right.bar(xs, [cosines.get((method, w), math.nan) for w in windows], width, color=color(method),
                  label=LABELS[method])
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(range(len(windows)), [f"T = {w}" for w in windows])
    right.set_ylabel("cosine (whole batch)")
    right.set_title("Synthetic vs true future gradient at the boundary")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_text(histories, size=None):
    """Training bits per character over the characters read, one curve per method (held-out in the legend)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for h in histories:
        ax.plot([s * h["window"] for s in h["step"]], h["train_bpc"], color=color(h["method"]),
                label=f"{LABELS[h['method']]} (held-out {h['test_bpc']:.2f} bpc)")
    ax.set_xlabel("characters read")
    ax.set_ylabel("training bits per character")
    ax.set_title(f"Character model, T = {histories[0]['window']}" + _suffix(size))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
