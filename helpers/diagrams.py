"""Each method's computational graph, drawn: one pure function per method, returning a matplotlib Figure.

The colours follow the paper's figures (Jaderberg et al. 2016): forward connections black, a forward
connection that no longer waits for a gradient (update-unlocked) dashed, true gradients green, synthetic
gradients blue, synthetic inputs red; labels and other context grey. Blocks are drawn bottom (input) to top
(loss). Every notebook shows the diagram of the method it introduces (02 DNI, 03 cDNI, 04 synthetic loss and
critic, 06 full unlock, 08 recurrent DNI, 09 pipeline, 10 DGL; 00 and 01 backprop) and its slide reuses it:
notebooks 00-10.
"""
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

FORWARD, TRUE, SYNTHETIC, INPUT, CONTEXT = "#000000", "#2ca02c", "#1f77b4", "#d62728", "#8c8c8c"
COLORS = {"forward": FORWARD, "unlocked": FORWARD, "true": TRUE, "synthetic": SYNTHETIC, "input": INPUT,
          "context": CONTEXT}


def _canvas(title, width=4.2, height=4.6):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, 10)
    ax.set_ylim(-2.0, 10)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig, ax


def _box(ax, x, y, text, color="#222222", w=2.2, h=0.9, fill="#f4f4f4"):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", facecolor=fill,
                                edgecolor=color, linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=9, color=color)
    return (x, y, w, h)


def _arrow(ax, start, end, kind, label=None, rad=0.0):
    """An arrow of one of the kinds in COLORS ('unlocked' is dashed). Its kind is kept on the patch (gid)."""
    patch = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, linewidth=1.4, color=COLORS[kind],
                            linestyle="--" if kind == "unlocked" else "-", connectionstyle=f"arc3,rad={rad}",
                            shrinkA=2, shrinkB=2)
    patch.set_gid(kind)
    ax.add_patch(patch)
    if label:
        ax.text((start[0] + end[0]) / 2 + 0.15, (start[1] + end[1]) / 2, label, fontsize=8, color=COLORS[kind],
                ha="left", va="center")
    return patch


def _legend(ax, kinds):
    names = {"forward": "forward", "unlocked": "forward, not waiting for a gradient", "true": "true gradient",
             "synthetic": "synthetic gradient", "input": "synthetic input", "context": "label / context"}
    for k, kind in enumerate(kinds):
        y = 0.55 - 0.45 * k
        ax.plot([0.2, 0.9], [y, y], color=COLORS[kind], linestyle="--" if kind == "unlocked" else "-", lw=1.4,
                clip_on=False)
        ax.text(1.05, y, names[kind], fontsize=7, va="center", color="#444444")


def arrows(fig):
    """The kinds of every arrow drawn on a diagram (for tests and for readers who want to count them)."""
    return [p.get_gid() for ax in fig.axes for p in ax.patches if isinstance(p, FancyArrowPatch)]


def _stack(ax, layers, x=3.5, bottom=2.3, step=1.9):
    """The hidden blocks f_1 .. f_{layers-1}, then the output layer with the loss (the series counts depth
    as the paper does: a 3-layer network has two hidden blocks and the output layer)."""
    names = [f"$f_{i}$" for i in range(1, layers)] + [f"$f_{layers}$, loss $L$"]
    return [_box(ax, x, bottom + k * step, name, w=2.2 if k < layers - 1 else 2.6) for k, name in enumerate(names)]


def backprop(layers=3):
    """Forward through every block to the loss; the true gradient comes back through every block above."""
    fig, ax = _canvas("backprop: every block waits for the loss")
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 0.9 + 0.4, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.6), (3.5, blocks[0][1] - 0.45), "forward")
    for a, b in zip(blocks, blocks[1:]):
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "forward")
        _arrow(ax, (b[0] + 0.4, b[1] - 0.45), (a[0] + 0.4, a[1] + 0.45), "true")
    _legend(ax, ["forward", "true"])
    return fig


def _decoupled(title, layers, synthesizer, box_width, target="true", lower="synthetic", conditioned=False):
    """The update-unlocked stack shared by DNI, cDNI, the synthetic loss and the critic: block i's output goes
    up without waiting, a model beside it (`synthesizer`, a format string of i) hands it its gradient at once,
    and that model learns from what the block above sends down (`target` at the top, `lower` below)."""
    fig, ax = _canvas(title, width=5.2)
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.3, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.6), (3.5, blocks[0][1] - 0.45), "forward")
    edge = box_width / 2
    for i, (a, b) in enumerate(zip(blocks, blocks[1:])):
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "unlocked")
        m = _box(ax, 7.6, a[1] + 0.55, synthesizer.format(i + 1), color=SYNTHETIC, w=box_width, h=0.7)
        _arrow(ax, (a[0] + 1.1, a[1] + 0.1), (m[0] - edge, m[1] - 0.1), "forward")          # h_i into the model
        _arrow(ax, (m[0] - edge, m[1] - 0.3), (a[0] + 1.1, a[1] - 0.2), "synthetic")         # the gradient it hands back
        kind = target if i == len(blocks) - 2 else lower                                      # what it learns from
        _arrow(ax, (b[0] + 1.1, b[1] - 0.3), (m[0], m[1] + 0.35), kind, rad=-0.2)
        if conditioned:
            _arrow(ax, (9.7, m[1]), (m[0] + edge, m[1]), "context")
    if conditioned:
        ax.text(9.75, blocks[0][1] + 0.55, "$y$", color=CONTEXT, fontsize=9, va="center")
    return fig, ax


def dni(layers=3, conditioned=False):
    """DNI (or cDNI): each block's output goes up without waiting; its synthesizer M_i hands it a synthetic
    gradient at once; M_i learns from the gradient the block above sends down (true at the top)."""
    name = "cDNI" if conditioned else "DNI"
    fig, ax = _decoupled(f"{name}: update right after the forward step", layers, "$M_{}$", 1.3, conditioned=conditioned)
    _legend(ax, ["forward", "unlocked", "true", "synthetic"] + (["context"] if conditioned else []))
    return fig


def synthetic_loss(layers=3, critic=True):
    """Synthetic loss / critic: each block descends the slope of a learned loss L-hat_i(h_i, y); the critic
    also fits that slope to the gradient the block above sends down (Sobolev training)."""
    title = "critic (values and slopes)" if critic else "synthetic loss (values only)"
    fig, ax = _decoupled(title, layers, "$\\hat L_{}(h, y)$", 2.0, **({} if critic else {"target": "context", "lower": "context"}))
    _legend(ax, ["forward", "unlocked", "true", "synthetic", "context"])
    return fig


def full_unlock(layers=3):
    """The complete unlock: block i > 1 reads a synthetic input I_i(x) instead of waiting for the block
    below, and updates from a synthetic gradient; both synthesizers learn from what the neighbours send."""
    fig, ax = _canvas("full unlock: no block waits for another", width=5.6)
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.3, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.6), (3.5, blocks[0][1] - 0.45), "forward")
    for i, (a, b) in enumerate(zip(blocks, blocks[1:])):
        inp = _box(ax, 0.9, b[1] - 0.2, f"$I_{i + 2}(x)$", color=INPUT, w=1.5, h=0.7)
        _arrow(ax, (inp[0] + 0.75, inp[1]), (b[0] - 1.1, b[1] - 0.2), "input")
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (inp[0] + 0.3, inp[1] - 0.35), "unlocked", rad=0.2)   # its target
        m = _box(ax, 7.6, a[1] + 0.55, f"$M_{i + 1}$", color=SYNTHETIC, w=1.3, h=0.7)
        _arrow(ax, (m[0] - 0.65, m[1] - 0.3), (a[0] + 1.1, a[1] - 0.2), "synthetic")
        kind = "true" if i == len(blocks) - 2 else "synthetic"
        _arrow(ax, (b[0] + 1.1, b[1] - 0.3), (m[0], m[1] + 0.35), kind, rad=-0.2)
    _legend(ax, ["unlocked", "true", "synthetic", "input"])
    return fig


def recurrent(windows=3, window=3):
    """Recurrent DNI: truncated BPTT inside each window of T steps (true gradients); at each window's end a
    synthesizer M(s) stands in for every later gradient (synthetic); the state goes on, the graph is cut."""
    fig, ax = _canvas(f"recurrent DNI: windows of T = {window}", width=7.5, height=3.2)
    ax.set_xlim(0, 10 * windows / 3 + 0.5)
    x0, dx = 0.6, 10 / 3 / window
    for w in range(windows):
        cells = []
        for t in range(window):
            x = x0 + (w * window + t) * dx
            cells.append(_box(ax, x, 4.5, "$s$", w=0.7, h=0.7))
            if t > 0:
                _arrow(ax, (x - dx + 0.35, 4.6), (x - 0.35, 4.6), "forward")
                _arrow(ax, (x - 0.35, 4.3), (x - dx + 0.35, 4.3), "true")
        end = cells[-1][0]
        m = _box(ax, end + dx / 2, 7.4, "$M$", color=SYNTHETIC, w=0.7, h=0.6)
        _arrow(ax, (m[0], m[1] - 0.3), (end + 0.2, 4.85), "synthetic")
        if w < windows - 1:
            _arrow(ax, (end + 0.35, 4.6), (end + dx - 0.35, 4.6), "unlocked")
        ax.axvline(end + dx / 2, ymin=0.15, ymax=0.6, color="#bbbbbb", lw=0.8, ls=":")
    _legend(ax, ["forward", "unlocked", "true", "synthetic"])
    return fig


def pipeline(stages=3):
    """The decoupled pipeline: one process per stage; activations go up without waiting, each stage updates
    from its own synthesizer and sends its input gradient down; the true targets arrive later."""
    fig, ax = _canvas(f"decoupled pipeline: {stages} processes", width=5.2)
    boxes = [_box(ax, 3.5, 2.3 + 2.2 * k, f"stage {k}\n(process {k})", w=2.6, h=1.1) for k in range(stages)]
    for k, (a, b) in enumerate(zip(boxes, boxes[1:])):
        _arrow(ax, (a[0] - 0.5, a[1] + 0.55), (b[0] - 0.5, b[1] - 0.55), "unlocked", label="")
        _arrow(ax, (b[0] + 0.5, b[1] - 0.55), (a[0] + 0.5, a[1] + 0.55), "true" if k == stages - 2 else "synthetic")
        m = _box(ax, 7.6, a[1], f"$M_{k}$", color=SYNTHETIC, w=1.2, h=0.7)
        _arrow(ax, (m[0] - 0.6, m[1]), (a[0] + 1.3, a[1]), "synthetic")
    _legend(ax, ["unlocked", "true", "synthetic"])
    return fig


def dgl(layers=3):
    """Decoupled greedy learning: each block trains against its own small classifier (a local loss, a true
    gradient of *that* loss); nothing comes down from above."""
    fig, ax = _canvas("DGL: a local loss per block", width=5.2)
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.3, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.6), (3.5, blocks[0][1] - 0.45), "forward")
    for i, (a, b) in enumerate(zip(blocks, blocks[1:])):
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "unlocked")
        head = _box(ax, 7.6, a[1] + 0.3, f"head $\\ell_{i + 1}$", color=TRUE, w=1.6, h=0.7)
        _arrow(ax, (a[0] + 1.1, a[1] + 0.2), (head[0] - 0.8, head[1] + 0.1), "forward")
        _arrow(ax, (head[0] - 0.8, head[1] - 0.2), (a[0] + 1.1, a[1] - 0.2), "true")
    _legend(ax, ["forward", "unlocked", "true"])
    return fig


DIAGRAMS = {"backprop": backprop, "dni": dni, "cdni": lambda: dni(conditioned=True),
            "synthetic_loss": lambda: synthetic_loss(critic=False), "critic": synthetic_loss,
            "full_unlock": full_unlock, "recurrent": recurrent, "pipeline": pipeline, "dgl": dgl}
