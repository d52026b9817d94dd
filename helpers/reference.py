"""The converged picture: runs a reader cannot afford to train, loaded instead of trained, beside the paper.

The reference tier is the long size (r2rt's 25,000-iteration schedule, `config.SIZES["long"]`) over seeds 0-2,
trained once by `make seeds SG_SIZE=long` (scripts/seeds.py) and committed in results/seeds_long.json with each
run's learning curve (test accuracy every 1,000 iterations). The quick size's seeds (5,000 iterations) are in
results/seeds_quick.json. Notebooks 01-06, 09 and 10 read both here, so that every verdict between two methods is
given at both sizes and beside the paper's own Table 1
(Jaderberg et al. 2016, arXiv v1; `PAPER_TABLE1`).

A verdict between methods is called a difference only where the seeds separate them: every seed of one above
every seed of the other (`verdict`). scripts/results_table.py renders the same numbers into results/README.md.
"""
import json
import statistics

import matplotlib.pyplot as plt

from .plots import method_color
from .results import COMMITTED

# Test error (%) of the paper's Table 1, MNIST, arXiv v1 (August 2016): 500k iterations, one run per cell. The
# depth counts the output layer. Source: ../shared/ANCHORS.md (read from the v1 table; the camera-ready may differ).
PAPER_TABLE1 = {
    ("fcn", 3): {"nobackprop": 9.3, "backprop": 2.0, "dni": 1.9, "cdni": 2.2},
    ("fcn", 4): {"nobackprop": 12.6, "backprop": 1.8, "dni": 2.2, "cdni": 1.9},
    ("fcn", 5): {"nobackprop": 16.2, "backprop": 1.8, "dni": 3.4, "cdni": 1.7},
    ("fcn", 6): {"nobackprop": 21.4, "backprop": 1.8, "dni": 4.3, "cdni": 1.6},
    ("cnn", 3): {"nobackprop": 0.9, "backprop": 0.8, "dni": 0.9, "cdni": 1.0},
    ("cnn", 4): {"nobackprop": 2.8, "backprop": 0.6, "dni": 0.7, "cdni": 0.8},
}
PAPER_SOURCE = "Jaderberg et al. 2016, arXiv v1, Table 1 (MNIST test error, 500k iterations, one run per cell)"
DNI_LABELS = ("dni_paper", "dni_1x1024", "dni_linear")     # DNI with 2, 1 and 0 hidden synthesizer layers


STEMS = {"test": "seeds", "validation": "dni_search", "cnn": "cnn"}     # split -> results/<stem>_<size>.json


def runs(size="long", split="test", directory=None):
    """Every committed run of the seeds experiment at `size` ("quick" or "long"); split "validation": the
    long size's DNI synthesizer-depth search (scored on held-out training images, never the test set); split
    "cnn": the long size's CNN rows of Table 1 (results/cnn_long.json, config.CNN_TIER's schedule). `directory`:
    where the files are (results/ unless a test or scripts/results_table.py says otherwise)."""
    path = (directory or COMMITTED) / f"{STEMS[split]}_{size}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `make seeds SG_SIZE={size}` makes it (the long size takes "
                                "CPU hours; a clone of the series has it committed).")
    return json.loads(path.read_text())["runs"]


def seeds_of(label, layers=3, size="long", split="test", directory=None):
    """The runs of one configuration (a label of scripts/seeds.py, e.g. "cdni" or "dni_paper"), by seed."""
    return sorted((r for r in runs(size, split, directory) if r["label"] == label and r.get("layers", 3) == layers),
                  key=lambda r: r["seed"])


def accuracies(label, layers=3, size="long", split="test", directory=None):
    """Final test accuracies (fractions) of `label` at `layers`, seed 0 first; [] where none is committed."""
    return [r["test_accuracy"] for r in seeds_of(label, layers, size, split, directory)]


def choose_dni(scores):
    """The paper's rule for DNI's synthesizer depth, on {label: validation accuracy}: the highest accuracy, a
    tie going to the smaller synthesizer; None until every depth in DNI_LABELS has a score. scripts/seeds.py
    queues the chosen runs by it, and Table 1 (here and in results/README.md) reads them by it."""
    if any(label not in scores for label in DNI_LABELS):
        return None
    return max(DNI_LABELS, key=lambda label: (scores[label], DNI_LABELS.index(label)))


def chosen_dni(layers, directory=None):
    """The DNI configuration the validation search chose at `layers` (highest validation accuracy over 0, 1
    and 2 hidden synthesizer layers, seed 0), with the validation accuracies found; (None, {...}) while the
    search at that depth is incomplete."""
    try:
        found = {label: seeds_of(label, layers, "long", "validation", directory) for label in DNI_LABELS}
    except FileNotFoundError:                       # the search has not started
        return None, {}
    scores = {label: found[label][0]["test_accuracy"] for label in DNI_LABELS if found[label]}
    return choose_dni(scores), scores


def verdict(a, b):
    """'higher on every seed', 'lower on every seed' or 'no clear difference' for accuracies `a` against `b`;
    fewer than 3 seeds a side is too few to call."""
    if min(len(a), len(b)) < 3:
        return "fewer than 3 seeds: not compared"
    if min(a) > max(b):
        return "higher on every seed"
    if max(a) < min(b):
        return "lower on every seed"
    return "no clear difference"


def paper_accuracy(method, layers, net="fcn"):
    """The paper's Table 1 cell as an accuracy (fraction), or None where the table has no such cell."""
    error = PAPER_TABLE1.get((net, layers), {}).get(method)
    return None if error is None else 1 - error / 100


def spread(values):
    """'mean (min-max)' in percent, for a line of a table."""
    if not values:
        return "not yet run"
    return f"{100 * statistics.fmean(values):.2f}% ({100 * min(values):.2f}-{100 * max(values):.2f})"


def compare(a, b, layers=3, method_a=None, method_b=None):
    """One printed line per size: `a` against `b` (labels of scripts/seeds.py) at `layers`, over seeds, with
    the paper's cells. Returns {size: verdict} so that a notebook can assert what its prose says."""
    verdicts = {}
    for size in ("quick", "long"):
        try:
            va, vb = accuracies(a, layers, size), accuracies(b, layers, size)
        except FileNotFoundError:
            va, vb = [], []
        if not va and not vb:           # e.g. the quick tier, which has seeds at 3 layers only: say so in one line
            verdicts[size] = "no seeds at this size"
            print(f"{size:5s} {a} vs {b}: no {size}-size seeds at {layers} layers")
            continue
        verdicts[size] = verdict(va, vb) if va and vb else "not in the reference tier yet"
        print(f"{size:5s} {a} {spread(va)} vs {b} {spread(vb)}: {verdicts[size]}")
    pa, pb = paper_accuracy(method_a or _method(a), layers), paper_accuracy(method_b or _method(b), layers)
    if pa is not None and pb is not None:
        print(f"paper {a} {100 * pa:.1f}% vs {b} {100 * pb:.1f}% ({layers} layers, 500k iterations, one run)")
    return verdicts


def _family(label):
    """The method a label of scripts/seeds.py belongs to, for its colour (plots.METHOD_COLORS)."""
    base = label.removeprefix("cnn_").split("_p")[0]
    return "dni" if base.startswith("dni") else "dgl_buffer" if base.startswith("dgl_buffer") else base


def _method(label):
    """The paper's Table 1 column a label of scripts/seeds.py stands in: its DNI column used the 2x1024 synthesizer
    (`dni_paper`); DNI with a smaller synthesizer has no cell of its own there. The CNN rows' labels ("cnn_dni")
    stand in their method's column of the table's CNN block."""
    label = label.removeprefix("cnn_")
    return "dni" if label == "dni_paper" else label


def plot_converged(labels, layers=3, quick=None, names=None, ax=None, title=None, ylim=None, split="test"):
    """Test accuracy to the end of the long schedule for each of `labels` at `layers` (every seed of the long size,
    thin solid lines), this notebook's quick runs over them (`quick`: {label: History}, dashed, ending at the quick
    size's last iteration) and the paper's Table 1 cell as a marker at the right edge where it has one. split
    "test": the MNIST FCN (25,000 iterations; notebooks 01-06, 09, 10); "cnn": the CNN rows (notebook 07)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.4))
    names = names or {}
    net = "cnn" if split == "cnn" else "fcn"
    long = {label: seeds_of(label, layers, "long", split) for label in labels}
    end = max((run["history"]["iteration"][-1] for found in long.values() for run in found), default=25_000)
    lows, papers = [], 0
    for label in labels:
        method = _method(label)
        color = method_color(_family(label))
        for k, run in enumerate(long[label]):
            h = run["history"]
            ax.plot(h["iteration"], h["test_accuracy"], color=color, lw=1.1, alpha=0.85,
                    label=f"{names.get(label, label)}, long (seeds)" if k == 0 else None)
            lows.append(min(h["test_accuracy"][1:] or h["test_accuracy"]))
        if quick and label in quick:
            h = quick[label]
            ax.plot(h.iteration, h.test_accuracy, color=color, lw=1.6, ls="--",
                    label=f"{names.get(label, label)}, quick (this notebook)")
            lows.append(min(h.test_accuracy[len(h.test_accuracy) // 2:]))     # its second half stays in view
        paper = paper_accuracy(method, layers, net)
        if paper is not None:
            papers += 1
            ax.plot([end * 1.024], [paper], marker="<", ms=8, color=color, clip_on=False, ls="none")
    if quick:
        ax.axvline(max(h.iteration[-1] for h in quick.values()), color="#999999", lw=0.8, ls=":")
    ax.set_xlim(0, end * 1.04)
    if ylim is None and lows:
        ylim = (max(0.0, min(lows) - 0.005), None)
    if ylim:
        ax.set_ylim(*ylim)
    keys = (["dotted: where the quick size stops"] if quick else []) + (["triangles: the paper's Table 1, 500k"] if papers else [])
    ax.set_xlabel("iteration" + (f"\n({'; '.join(keys)})" if keys else ""), fontsize=9)   # only what this panel draws
    ax.set_ylabel("test accuracy")
    sizes = "long + quick" if quick else "long"
    default = f"{layers}-layer MNIST {net.upper()}: " + ("the quick runs inside the long ones" if quick else "the long runs")
    ax.set_title((title or default) + f"  [run size: {sizes}]", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    return ax.figure


def dni_for_table(layers, directory=None):
    """(label, why) of the DNI configuration in our Table 1 at `layers`: the validation search's choice once
    the search at that depth is complete, else the paper's own 2x1024 synthesizer."""
    label, scores = chosen_dni(layers, directory)
    if label is not None:
        return label, "chosen on validation (" + ", ".join(f"{k} {100 * v:.2f}%" for k, v in scores.items()) + ")"
    return "dni_paper", "the paper's 2x1024 synthesizer; the validation search at this depth is not complete"


def mark(values, paper_error):
    """Our test errors over seeds against the paper's one number: 'better' / 'worse' only where every seed is on
    that side of it, else 'within our spread'."""
    return mark_errors([100 * (1 - v) for v in values], paper_error)


def mark_errors(errors, paper_error):
    """`mark` on test errors in percent (as `table1_cells` holds them)."""
    return "better" if max(errors) < paper_error else "worse" if min(errors) > paper_error else "within our spread"


TABLE1_METHODS = ("nobackprop", "backprop", "dni", "cdni")       # the paper's columns, in its order


def table1_cells(net="fcn", depths=None, directory=None):
    """{(layers, method): (paper error, [our test errors by seed], our label)}: the one layout of Table 1, which
    `table1` prints and scripts/results_table.py renders into results/README.md. net "fcn" (3-6 layers; DNI as
    `dni_for_table` picks it) or "cnn" (3 and 4 layers: notebook 07's CNN at config.CNN_TIER's filters and
    schedule, far smaller than the paper's). A missing CNN rows' file (the tier trains them after the FCN block)
    leaves their cells empty; a missing FCN file raises `runs`' error (it is committed)."""
    cells = {}
    for layers in depths or ((3, 4) if net == "cnn" else (3, 4, 5, 6)):
        for method in TABLE1_METHODS:
            if net == "cnn":
                label = f"cnn_{method}"
            else:
                label = dni_for_table(layers, directory)[0] if method == "dni" else method
            try:
                values = accuracies(label, layers, "long", "cnn" if net == "cnn" else "test", directory)
            except FileNotFoundError:
                if net != "cnn":
                    raise
                values = []
            cells[layers, method] = (PAPER_TABLE1[net, layers][method], [100 * (1 - v) for v in values], label)
    return cells


def table1(net="fcn", depths=None):
    """Our long-size test errors beside the paper's Table 1, one printed line per depth and method (notebook 03);
    returns `table1_cells`."""
    cells = table1_cells(net, depths)
    for (layers, method), (paper, errors, label) in cells.items():
        ours = (f"{statistics.fmean(errors):.2f} (seeds {' '.join(f'{e:.2f}' for e in errors)}): "
                f"{mark_errors(errors, paper)}") if errors else "not yet in the reference tier"
        print(f"{layers} layers  {method:10s} paper {paper:4.1f}   ours {ours}" + (f"   [{label}]" if method == "dni" else ""))
    return cells


SYNTHESIZER_NAMES = {"dni_paper": "2x1024", "dni_1x1024": "1x1024", "dni_linear": "linear"}
METHOD_NAMES = {"nobackprop": "no backprop", "backprop": "backprop", "dni": "DNI", "cdni": "cDNI"}


def plot_table1(methods=("backprop", "dni", "cdni"), ax=None, directory=None):
    """Table 1's MNIST FCN block as a figure (notebook 03): test error against depth, every seed of ours (dots) and
    their mean (solid line) beside the paper's single runs (dashed line, open triangles), one colour per method;
    beside each DNI mean, the synthesizer depth it used (`dni_for_table`). No backprop (9-23% error) is left to the
    printed table, so that the gaps of a tenth of a point stay visible."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.4))
    cells = table1_cells("fcn", directory=directory)
    depths = sorted({layers for layers, _ in cells})
    for k, method in enumerate(methods):
        color = method_color(method)
        offset = (k - (len(methods) - 1) / 2) * 0.06                   # methods side by side at each depth
        ours = [(layers, cells[layers, method][1]) for layers in depths if cells[layers, method][1]]
        for layers, errors in ours:
            ax.plot([layers + offset] * len(errors), errors, "o", ms=3.5, color=color, alpha=0.7)
        ax.plot([layers + offset for layers, _ in ours], [statistics.fmean(e) for _, e in ours], "-", color=color,
                lw=1.6, label=f"{METHOD_NAMES[method]}, ours (long, dots: seeds)")
        ax.plot(depths, [cells[layers, method][0] for layers in depths], "--", marker="^", mfc="none", color=color,
                lw=1.1, label=f"{METHOD_NAMES[method]}, the paper (500k, one run)")
        if method == "dni":
            for layers, errors in ours:
                ax.annotate(SYNTHESIZER_NAMES.get(cells[layers, method][2], cells[layers, method][2]),
                            (layers + offset, statistics.fmean(errors)), textcoords="offset points", xytext=(-7, 0),
                            ha="right", va="center", fontsize=8, color=color)
    ax.set_xticks(depths)
    ax.set_xlim(depths[0] - 0.4, depths[-1] + 0.3)                      # room for the synthesizer names
    ax.set_xlabel("layers (DNI's synthesizer, chosen on held-out training images, written beside its mean)", fontsize=9)
    ax.set_ylabel("test error (%)")
    ax.set_title("MNIST FCN: Table 1's error by depth, ours beside the paper's  [run size: long]", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))     # beside the axes: no point hidden
    return ax.figure
