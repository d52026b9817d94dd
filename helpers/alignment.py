"""Which alignment tracks accuracy? The committed experiment of scripts/alignment.py (`make alignment`), read back.

Every method of notebooks 01-05 hands each hidden block some signal instead of the true gradient. Two numbers
say how close it is, per hidden block, measured by `helpers.probe` on 256 test images at every evaluation:

- the **gradient cosine** (`cos_batch/i`): the whole-batch cosine of the signal with the true gradient;
- the **update cosine** (`upd_cos/i`): the cosine between the parameter update the method applies and the one
  backprop would apply from the same parameters and the same optimizer state;
- the **step cosine** (`upd_step_cos/i`): the same with Adam's momentum set aside in both, so that what the two
  updates share from the past does not count: this step's signal as Adam scales it.

`scripts/alignment.py` trains the 3-layer MNIST FCN with each method over seeds 0-2 at the quick size and
records all three (with the two baselines of `probe`: a constant batch-mean prediction and the true gradients
shuffled across examples); this module ranks methods by each and by accuracy (Spearman's rank correlation
over methods, means over seeds) and draws the comparison. Notebooks 03, 04 and 05 use it.
"""
import statistics

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from .plots import method_color
from .results import COMMITTED, load_results

LABELS = ["nobackprop", "dni_linear", "cdni", "synthetic_loss", "critic", "fa", "dfa"]   # backprop: exactly 1
NAMES = {"nobackprop": "no backprop", "dni_linear": "DNI (linear)", "cdni": "cDNI (linear)",
         "synthetic_loss": "synthetic loss", "critic": "critic", "fa": "FA", "dfa": "DFA", "backprop": "backprop"}
MEASURES = ("gradient cosine", "update cosine", "step cosine")
TAIL = 0.25          # measures are averaged over the last quarter of the evaluations: one reading is noisy


def runs(size="quick"):
    """{(label, seed): run record} of the committed experiment at `size`."""
    path = COMMITTED / f"alignment_{size}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not there: `make alignment SG_SIZE={size}` makes it (about half an "
                                "hour on two CPU cores at the quick size).")
    return {(r["label"], r["seed"]): r for r in load_results(path)["runs"]}


def late(values, tail=TAIL):
    """The mean of the last `tail` of a list of per-evaluation values (at least the last one)."""
    k = max(1, round(len(values) * tail))
    return statistics.fmean(values[-k:])


def measures(run):
    """One run's late gradient cosine and update cosine (each the mean over its hidden blocks; NaN-free: a
    method that sends no signal, no backprop, gets gradient cosine 0; backprop 1) and its final test accuracy."""
    extra = run["history"]["extra"]
    blocks = sorted({int(k.split("/")[1]) for k in extra if k.startswith("upd_cos/")})
    exact = 1.0 if run["label"] == "backprop" else 0.0      # backprop's signal is the true gradient
    grad = [late(extra[f"cos_batch/{i}"]) if f"cos_batch/{i}" in extra else exact for i in blocks]
    update = [late(extra[f"upd_cos/{i}"]) for i in blocks]
    step = [late(extra[f"upd_step_cos/{i}"]) for i in blocks]
    mean = [late(extra[f"mean_cos_batch/{i}"]) for i in blocks]
    shuffled = [late(extra[f"shuffled_cos_batch/{i}"]) for i in blocks]
    return {"gradient cosine": statistics.fmean(grad), "update cosine": statistics.fmean(update),
            "step cosine": statistics.fmean(step),
            "accuracy": run["test_accuracy"], "batch-mean baseline": statistics.fmean(mean),
            "shuffled baseline": statistics.fmean(shuffled)}


def table(size="quick", labels=LABELS):
    """{label: {measure: [per seed]}} for the labels that have runs."""
    found = runs(size)
    out = {}
    for label in labels:
        mine = [measures(found[k]) for k in sorted(found) if k[0] == label]
        if mine:
            out[label] = {name: [m[name] for m in mine] for name in mine[0]}
    return out


def ranks(values):
    """Ranks 1..n of `values`, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a, b):
    """Spearman's rank correlation of two equal-length lists: 1 when they order the items the same way."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def summary(size="quick", labels=LABELS):
    """Print each method's measures (mean over seeds, with every seed) and the rank correlation of each
    alignment with accuracy over methods; returns {measure: rank correlation with accuracy}."""
    rows = table(size, labels)
    print(f"3-layer MNIST FCN, {size} size, seeds 0-2; alignment = mean over the hidden blocks and the last "
          f"{TAIL:.0%} of the evaluations")
    print(f"{'method':16s} {'accuracy':>9s} {'gradient':>9s} {'update':>7s} {'step':>6s}   "
          "per seed (accuracy / gradient / update / step cosine)")
    for label, m in rows.items():
        seeds = "  ".join(f"{a:.2%}/{g:.2f}/{u:.2f}/{t:.2f}" for a, g, u, t in
                          zip(m["accuracy"], m["gradient cosine"], m["update cosine"], m["step cosine"]))
        print(f"{NAMES.get(label, label):16s} {statistics.fmean(m['accuracy']):9.2%} "
              f"{statistics.fmean(m['gradient cosine']):9.2f} {statistics.fmean(m['update cosine']):7.2f} "
              f"{statistics.fmean(m['step cosine']):6.2f}   {seeds}")
    means = {name: [statistics.fmean(m[name]) for m in rows.values()] for name in next(iter(rows.values()))}
    base = [statistics.fmean(m["batch-mean baseline"]) for m in rows.values()]
    shuffled = [statistics.fmean(m["shuffled baseline"]) for m in rows.values()]
    print(f"baselines (gradient cosine, over all runs): a constant batch-mean prediction {statistics.fmean(base):.2f}, "
          f"true gradients shuffled across examples {statistics.fmean(shuffled):.2f}")
    found = {name: spearman(means[name], means["accuracy"]) for name in MEASURES}
    print("rank correlation with accuracy over methods: " +
          ", ".join(f"{name} {value:+.2f}" for name, value in found.items()))
    return found


def plot(size="quick", labels=LABELS, highlight=None, axes=None):
    """Test error (log scale, so that 2% and 2.5% are as far apart as 20% and 25%) against each of the three
    cosines (`MEASURES`), one dot per run (method x seed), coloured by method; `highlight` (labels) draws the
    others faded."""
    rows = table(size, labels)
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.4), sharey=True)
    for ax, name in zip(axes, MEASURES):
        for label, m in rows.items():
            family = "dni" if label.startswith("dni") else label
            faded = highlight is not None and label not in highlight
            ax.scatter(m[name], [100 * (1 - a) for a in m["accuracy"]], s=36, color=method_color(family),
                       alpha=0.25 if faded else 0.9, label=NAMES.get(label, label), edgecolor="none")
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"{name} (late in training, mean over blocks)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"test error against the {name}  [run size: {size}]", fontsize=10)
    axes[0].set_ylabel("final test error (%, log scale; lower is better)")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[0].figure.tight_layout()
    return axes[0].figure
