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
          "input_target": INPUT, "context": CONTEXT}
DASHED, DOTTED = (0, (3, 2)), (0, (1, 1.6))   # fine enough to show on a short arrow
STYLES = {"unlocked": DASHED, "input_target": DOTTED}
NAMES = {"forward": "forward", "unlocked": "forward, not waiting for a gradient", "true": "true gradient",
         "synthetic": "synthetic gradient", "input": "synthetic input",
         "input_target": "what a synthetic input learns from", "context": "label / context"}


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


def _arrow(ax, start, end, kind, label=None, rad=0.0, ends=None, connection=None):
    """An arrow of one of the kinds in COLORS (drawn in STYLES' line style, solid otherwise). Its kind is kept
    on the patch (gid), and `ends` = (what it leaves, what it reaches), by name, as `patch.ends` (for tests)."""
    patch = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, linewidth=1.4, color=COLORS[kind],
                            linestyle=STYLES.get(kind, "-"), connectionstyle=connection or f"arc3,rad={rad}",
                            shrinkA=2, shrinkB=2)
    patch.set_gid(kind)
    patch.ends = ends
    ax.add_patch(patch)
    if label:
        ax.text((start[0] + end[0]) / 2 + 0.15, (start[1] + end[1]) / 2, label, fontsize=8, color=COLORS[kind],
                ha="left", va="center")
    return patch


def _legend(ax, kinds):
    for k, kind in enumerate(kinds):
        y = 0.55 - 0.45 * k
        ax.plot([0.2, 0.9], [y, y], color=COLORS[kind], linestyle=STYLES.get(kind, "-"), lw=1.4, clip_on=False,
                gid=f"legend:{kind}")
        ax.text(1.05, y, NAMES[kind], fontsize=7, va="center", color="#444444")


def arrows(fig):
    """The kinds of every arrow drawn on a diagram (for tests and for readers who want to count them)."""
    return [p.get_gid() for ax in fig.axes for p in ax.patches if isinstance(p, FancyArrowPatch)]


def edges(fig):
    """Every named arrow as (kind, from, to): what a diagram says is sent where (for tests)."""
    return [(p.get_gid(), *p.ends) for ax in fig.axes for p in ax.patches
            if isinstance(p, FancyArrowPatch) and getattr(p, "ends", None)]


def _stack(ax, layers, x=3.5, bottom=2.3, step=1.9):
    """The hidden blocks f_1 .. f_{layers-1}, then the output layer with the loss (the series counts depth
    as the paper does: a 3-layer network has two hidden blocks and the output layer)."""
    names = [f"$f_{i}$" for i in range(1, layers)] + [f"$f_{layers}$, loss $L$"]
    return [_box(ax, x, bottom + k * step, name, w=2.2 if k < layers - 1 else 2.6) for k, name in enumerate(names)]


def backprop(layers=3):
    """Forward through every block to the loss; the true gradient comes back through every block above."""
    fig, ax = _canvas("backprop: every block waits for the loss")
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.0, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.3), (3.5, blocks[0][1] - 0.45), "forward", ends=("x", "f1"))
    for i, (a, b) in enumerate(zip(blocks, blocks[1:]), start=1):
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "forward", ends=(f"f{i}", f"f{i + 1}"))
        _arrow(ax, (b[0] + 0.4, b[1] - 0.45), (a[0] + 0.4, a[1] + 0.45), "true", ends=(f"f{i + 1}", f"f{i}"))
    _legend(ax, ["forward", "true"])
    return fig


def _label_into(ax, targets, x=9.7, name="y"):
    """The label y, fed from the right into each box in `targets` ((x, y, w, h), name) as context."""
    for box, target in targets:
        _arrow(ax, (x, box[1]), (box[0] + box[2] / 2, box[1]), "context", ends=(name, target))
    ax.text(x + 0.05, targets[0][0][1], f"${name}$", color=CONTEXT, fontsize=9, va="center")


def _decoupled(title, layers, synthesizer, box_width, target="true", lower="synthetic", conditioned=False,
               values=False):
    """The update-unlocked stack shared by DNI, cDNI, the synthetic loss and the critic: block i's output goes
    up without waiting, a model beside it (`synthesizer`, a format string of i) hands it its gradient at once,
    and that model learns from what the block above sends down (`target` at the top, `lower` below; with
    `values`, a loss value as well, grey)."""
    fig, ax = _canvas(title, width=5.2)
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.0, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.3), (3.5, blocks[0][1] - 0.45), "forward", ends=("x", "f1"))
    edge = box_width / 2
    models = []
    for i, (a, b) in enumerate(zip(blocks, blocks[1:]), start=1):
        name = f"M{i}"
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "unlocked", ends=(f"f{i}", f"f{i + 1}"))
        m = _box(ax, 7.6, a[1] + 0.55, synthesizer.format(i), color=SYNTHETIC, w=box_width, h=0.7)
        models.append((m, name))
        _arrow(ax, (a[0] + 1.1, a[1] + 0.1), (m[0] - edge, m[1] - 0.1), "forward", ends=(f"f{i}", name))  # h_i in
        _arrow(ax, (m[0] - edge, m[1] - 0.3), (a[0] + 1.1, a[1] - 0.2), "synthetic", ends=(name, f"f{i}"))  # its gradient
        kind = target if i == len(blocks) - 1 else lower                                        # what it learns from
        _arrow(ax, (b[0] + 1.1, b[1] - 0.3), (m[0], m[1] + 0.35), kind, rad=-0.2, ends=(f"f{i + 1}", name))
        if values and kind != "context":
            _arrow(ax, (b[0] + 1.3, b[1]), (m[0] + 0.4, m[1] + 0.35), "context", rad=-0.35, ends=(f"f{i + 1}", name))
        if values or kind == "context":                                                         # a value, not a gradient
            ax.text(m[0] + 0.9, m[1] + 0.9, "loss value", fontsize=7, color=CONTEXT, ha="left")
    if conditioned:
        _label_into(ax, models)
    return fig, ax


def dni(layers=3, conditioned=False):
    """DNI (or cDNI): each block's output goes up without waiting; its synthesizer M_i hands it a synthetic
    gradient at once; M_i learns from the gradient the block above sends down (true at the top)."""
    name = "cDNI" if conditioned else "DNI"
    fig, ax = _decoupled(f"{name}: updates without waiting for the blocks above", layers, "$M_{}$", 1.3, conditioned=conditioned)
    _legend(ax, ["forward", "unlocked", "true", "synthetic"] + (["context"] if conditioned else []))
    return fig


def synthetic_loss(layers=3, critic=True):
    """Synthetic loss / critic: each block descends the slope of a learned loss L-hat_i(h_i, y); the critic
    also fits that slope to the gradient the block above sends down (Sobolev training). Both read the label
    and learn from a loss value sent down (grey: a value, not a gradient); only the critic learns from slopes."""
    title = "critic (values and slopes)" if critic else "synthetic loss (values only)"
    fig, ax = _decoupled(title, layers, "$\\hat L_{}(h, y)$", 2.0, conditioned=True,
                         **({"values": True} if critic else {"target": "context", "lower": "context"}))
    _legend(ax, ["forward", "unlocked"] + (["true"] if critic else []) + ["synthetic", "context"])
    return fig


def full_unlock(layers=3):
    """The complete unlock (Jaderberg et al. 2016): block i > 1 reads a synthetic input I_i(x),
    predicted from the data, instead of the block below's output, and updates from a label-conditioned
    synthetic gradient M_i(h_i, y). No forward edge joins two blocks: what block i-1 computes is only I_i's
    regression target (dotted red), and the gradient at block i+1's input only M_i's (sent down, late)."""
    fig, ax = _canvas("full unlock: no block waits for another", width=6.2)
    ax.set_xlim(-1.0, 10.5)
    blocks = _stack(ax, layers)
    data = _box(ax, 3.5, 1.0, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.3), (3.5, blocks[0][1] - 0.45), "forward", ends=("x", "f1"))
    bus = -0.6                                             # x also goes up the left edge, into every I_i
    tops = [b[1] - 0.2 for b in blocks[1:]]
    ax.plot([data[0] - 0.5, bus, bus], [data[1], data[1], tops[-1]], color=FORWARD, lw=1.4)
    models = []
    for i, (a, b) in enumerate(zip(blocks, blocks[1:]), start=1):
        name = f"I{i + 1}"
        inp = _box(ax, 0.9, b[1] - 0.2, f"$I_{i + 1}(x)$", color=INPUT, w=1.5, h=0.7)
        _arrow(ax, (bus, inp[1]), (inp[0] - 0.75, inp[1]), "forward", ends=("x", name))
        _arrow(ax, (inp[0] + 0.75, inp[1]), (b[0] - b[2] / 2, b[1] - 0.2), "input", ends=(name, f"f{i + 1}"))
        _arrow(ax, (a[0] - a[2] / 2, a[1] + 0.2), (inp[0] + 0.3, inp[1] - 0.35), "input_target", rad=-0.25,
               ends=(f"f{i}", name))                           # what I_{i+1} regresses onto
        m = _box(ax, 7.6, a[1] + 0.55, f"$M_{i}$", color=SYNTHETIC, w=1.3, h=0.7)
        models.append((m, f"M{i}"))
        _arrow(ax, (a[0] + 1.1, a[1] + 0.1), (m[0] - 0.65, m[1] - 0.1), "forward", ends=(f"f{i}", f"M{i}"))
        _arrow(ax, (m[0] - 0.65, m[1] - 0.3), (a[0] + 1.1, a[1] - 0.2), "synthetic", ends=(f"M{i}", f"f{i}"))
        kind = "true" if i == len(blocks) - 1 else "synthetic"
        _arrow(ax, (b[0] + 1.1, b[1] - 0.3), (m[0], m[1] + 0.35), kind, rad=-0.2, ends=(f"f{i + 1}", f"M{i}"))
    _label_into(ax, models, x=9.9)
    _legend(ax, ["forward", "true", "synthetic", "input", "input_target", "context"])
    return fig


def recurrent(windows=3, window=3):
    """Recurrent DNI (Jaderberg et al. 2016, the RNN figure): truncated BPTT inside each window of T steps
    (true gradients, green); the state s at a window's end goes on into the next window without waiting
    (dashed), but the graph is cut there. A synthesizer M reads that state and hands it M(s) at once (blue).
    M's target arrives from the next window: the gradient at its start (green) plus M's own prediction at
    the next cut pushed back through it, discounted by 0.1 (blue)."""
    fig, ax = _canvas(f"recurrent DNI: windows of T = {window}", width=8.2, height=3.6)
    dx, gap = 1.0, 1.6                                     # a cell every dx; the cut adds a gap
    width = windows * window * dx + (windows - 1) * (gap - dx) + 0.6
    ax.set_xlim(0, width + 0.4)
    ax.set_ylim(-2.4, 9.5)
    y, starts, models = 4.0, [], []
    for w in range(windows):
        x0 = 0.6 + w * (window * dx + gap - dx)
        cells = [x0 + t * dx for t in range(window)]
        starts.append(cells[0])
        for t, x in enumerate(cells):
            _box(ax, x, y, "$s$", w=0.6, h=0.7)
            if t > 0:
                _arrow(ax, (x - dx + 0.3, y + 0.12), (x - 0.3, y + 0.12), "forward", ends=(f"s{w}.{t - 1}", f"s{w}.{t}"))
                _arrow(ax, (x - 0.3, y - 0.18), (x - dx + 0.3, y - 0.18), "true", ends=(f"s{w}.{t}", f"s{w}.{t - 1}"))
        end = cells[-1]
        cut = end + gap / 2
        ax.plot([cut, cut], [1.6, 8.6], color="#bbbbbb", lw=0.9, ls=":")
        m = _box(ax, end + 0.45, 7.2, "$M(s)$", color=SYNTHETIC, w=1.0, h=0.7)
        models.append((m, end))
        _arrow(ax, (end - 0.1, y + 0.35), (m[0] - 0.35, m[1] - 0.35), "forward", ends=(f"s{w}.end", f"M{w}"))
        _arrow(ax, (m[0] + 0.05, m[1] - 0.35), (end + 0.2, y + 0.35), "synthetic", ends=(f"M{w}", f"s{w}.end"))
        if w < windows - 1:
            _arrow(ax, (end + 0.3, y + 0.12), (end + gap - 0.3, y + 0.12), "unlocked", ends=(f"s{w}.end", f"s{w + 1}.0"))
    for w in range(windows - 1):                         # M's target: the next window's start, and the next M
        (m, end), (after, _) = models[w], models[w + 1]
        start = starts[w + 1]
        _arrow(ax, (start, y + 0.35), (m[0] + 0.5, m[1] - 0.15), "true", rad=0.25, ends=(f"s{w + 1}.0", f"M{w}"))
        _arrow(ax, (after[0] - 0.5, after[1] + 0.1), (m[0] + 0.5, m[1] + 0.1), "synthetic", rad=0.25,
               ends=(f"M{w + 1}", f"M{w}"), label=None)
        ax.text((m[0] + after[0]) / 2, m[1] + 1.15, "$\\times 0.1$", color=SYNTHETIC, fontsize=8, ha="center")
    ax.text(0.2, -1.75, "M's target: the gradient arriving at the next window's start (green), plus M's own "
            "prediction\nat the next cut pushed back through that window, discounted by 0.1 (blue). Dotted: the cut.",
            fontsize=7, color="#444444", ha="left", va="center")
    _legend(ax, ["forward", "unlocked", "true", "synthetic"])
    return fig


def pipeline(stages=3):
    """The decoupled pipeline (notebook 09): one process per stage. A stage sends its activations up without
    waiting and updates at once from its synthesizer M_k(h_k, y). The gradient at the input of the stage above
    arrives Δ steps later (the stage above is busy with other batches meanwhile) and trains M_k, on that
    batch's kept activations and labels; it never reaches the stage itself."""
    fig, ax = _canvas(f"decoupled pipeline: {stages} processes", width=6.0, height=5.2)
    ax.set_xlim(-0.5, 10.8)
    boxes = [_box(ax, 3.0, 2.3 + 2.2 * k, f"stage {k}\n(process {k})", w=2.6, h=1.1) for k in range(stages)]
    _box(ax, 3.0, 0.7, "$x$", w=1.0, h=0.5)
    _arrow(ax, (3.0, 0.95), (3.0, boxes[0][1] - 0.55), "forward", ends=("x", "stage 0"))
    models = []
    for k, (a, b) in enumerate(zip(boxes, boxes[1:])):
        name = f"M{k}"
        _arrow(ax, (a[0] - 0.5, a[1] + 0.55), (b[0] - 0.5, b[1] - 0.55), "unlocked", ends=(f"stage {k}", f"stage {k + 1}"))
        m = _box(ax, 7.4, a[1] + 0.1, f"$M_{k}$", color=SYNTHETIC, w=1.2, h=0.7)
        models.append((m, name))
        _arrow(ax, (a[0] + 1.3, a[1] + 0.2), (m[0] - 0.6, m[1] + 0.05), "forward", ends=(f"stage {k}", name))
        _arrow(ax, (m[0] - 0.6, m[1] - 0.2), (a[0] + 1.3, a[1] - 0.25), "synthetic", ends=(name, f"stage {k}"))
        late = "true" if k == stages - 2 else "synthetic"   # the top stage's input gradient is true
        _arrow(ax, (b[0] + 1.3, b[1] - 0.1), (m[0], m[1] + 0.35), late, rad=-0.25, ends=(f"stage {k + 1}", name))
        ax.text(6.3, (b[1] + m[1]) / 2 + 0.1, "arrives $\\Delta$\nsteps later", color=COLORS[late], fontsize=7, ha="center",
                gid="delay", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    _label_into(ax, models, x=9.6)
    _legend(ax, ["forward", "unlocked", "true", "synthetic", "context"])
    return fig


def dgl(layers=3):
    """Decoupled greedy learning: each block trains against its own small classifier on the label (a local
    loss, and the true gradient of *that* loss); nothing comes down from above."""
    fig, ax = _canvas("DGL: a local loss per block", width=5.2)
    blocks = _stack(ax, layers)
    _box(ax, 3.5, 1.0, "$x$", w=1.0, h=0.6)
    _arrow(ax, (3.5, 1.3), (3.5, blocks[0][1] - 0.45), "forward", ends=("x", "f1"))
    heads = []
    for i, (a, b) in enumerate(zip(blocks, blocks[1:]), start=1):
        name = f"head{i}"
        _arrow(ax, (a[0] - 0.4, a[1] + 0.45), (b[0] - 0.4, b[1] - 0.45), "unlocked", ends=(f"f{i}", f"f{i + 1}"))
        head = _box(ax, 7.6, a[1] + 0.3, f"head $\\ell_{i}$", color=TRUE, w=1.6, h=0.7)
        heads.append((head, name))
        _arrow(ax, (a[0] + 1.1, a[1] + 0.2), (head[0] - 0.8, head[1] + 0.1), "forward", ends=(f"f{i}", name))
        _arrow(ax, (head[0] - 0.8, head[1] - 0.2), (a[0] + 1.1, a[1] - 0.2), "true", ends=(name, f"f{i}"))
    _label_into(ax, heads)
    _legend(ax, ["forward", "unlocked", "true", "context"])
    return fig


DIAGRAMS = {"backprop": backprop, "dni": dni, "cdni": lambda: dni(conditioned=True),
            "synthetic_loss": lambda: synthetic_loss(critic=False), "critic": synthetic_loss,
            "full_unlock": full_unlock, "recurrent": recurrent, "pipeline": pipeline, "dgl": dgl}
