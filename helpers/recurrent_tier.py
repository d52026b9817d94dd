"""The long recurrent tier, loaded instead of trained: notebook 08 reads it here (issue 27).

Notebook 08 trains its copy curricula at T = 5 for minutes, and the lengths it reaches there (1-3) still let an
input and its answer share a window (the answer comes N+1 steps after its input, so they share one only when
N+1 < T). That cannot show the paper's recurrent headline: a synthetic gradient at the end of each window lets
an RNN learn dependencies longer than the window (Jaderberg et al. 2016, the recurrent section and its table).
The long tier trains the copy and repeat-copy curricula at T = 2-5 for truncated BPTT, DNI and DNI + Aux over
seeds 0-2 for far longer (`config.RECURRENT_TIER["long"]`, CPU hours), once, with `make recurrent SG_SIZE=long`
(scripts/recurrent.py), and commits results/recurrent_long.json: for every run the curriculum's level, the
error and (DNI) the synthetic gradient's cosine to the true future gradient at the length being trained, at
each log point; the longest length solved; seconds, threads and CPU.

Here, for notebook 08 and the script's `--report`: `runs` loads the file, `PAPER` holds the paper's cells with
`PAPER_SOURCE`, `table` lays ours beside them as the paper does (rows: window T; columns: method),
`plot_levels` draws the level over characters read, one panel per window, and `cosine_by_level` /
`plot_cosine_by_level` give the synthetic gradient's cosine at each level it trained (not one average over a
whole curriculum, which mixes the easy early levels with the one the run is stuck at); `error_at_level` /
`plot_error_at_level` follow the error on one length, to tell a run still learning from one that has stopped.
"""
import json
import statistics

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, MaxNLocator

from . import config, results
from .plots import RECURRENT_LABELS, recurrent_color
from .rnn import METHODS
from .training import History

TASKS = ("copy", "repeat_copy")
# The longest sequence length modelled (higher is better), 256 LSTM units; no cell at T = 8 for copy tasks.
PAPER = {
    "copy": {"tbptt": {2: 7, 3: 8, 4: 10, 5: 8}, "dni": {2: 16, 3: 14, 4: 18, 5: 18},
             "dni_aux": {2: 16, 3: 17, 4: 19, 5: 18}},
    "repeat_copy": {"tbptt": {2: 7, 3: 5, 4: 19, 5: 23}, "dni": {2: 39, 3: 33, 4: 39, 5: 59},
                    "dni_aux": {2: 39, 3: 59, 4: 67, 5: 59}},
}
PAPER_SOURCE = ("Jaderberg et al. 2016, arXiv 1608.05343 v1, recurrent table (Copy and Repeat Copy: the longest "
                "sequence length modelled), read from the v1 table image in norman3/papers "
                "(images/synthetic_gradients/f14.png) and matching QData/deep2Read's slides (slide 17); the "
                "camera-ready version may differ")
# The character model (notebook 08's last section) at the tier's size: truncated BPTT and DNI (the paper's table also
# has DNI + Aux) at the windows in config.RECURRENT_TIER["long"]["text_windows"]. Penn Treebank, bits per character
# (lower is better): a different corpus from ours, so only the trend across methods and windows compares.
TEXT = "text"
TEXT_METHODS = ("tbptt", "dni")
PAPER_TEXT = {"tbptt": {2: 1.39, 3: 1.38, 4: 1.37, 5: 1.37, 8: 1.35}, "dni": {2: 1.37, 3: 1.36, 4: 1.35, 5: 1.35, 8: 1.34},
              "dni_aux": {2: 1.37, 3: 1.36, 4: 1.35, 5: 1.35, 8: 1.33}}
LOGS = {"smoke": 6}      # log points per run (the level, the error, the cosine), else 100; smoke: CI takes seconds
THRESHOLD = 0.15         # the curriculum's threshold (bits per output vector), rnn.Curriculum's default
WINDOWS_KEY = {"copy": "windows", "repeat_copy": "repeat_windows"}     # config.RECURRENT_TIER's key per task
TEXT_LOGS = 40           # log points of a character-model run: each evaluates the held-out text twice
HELD_OUT = "the last 10% of the text: its first half validation (early stopping), its second half test"
MAX_REPEATS = 3          # repeat copy's largest R, as in notebook 08


def settings(size, task):
    """What one run of `task` at `size` is trained with, as recorded in each run (a run counts as finished only
    for the settings it was trained with, so changing config.RECURRENT_TIER starts the tier afresh)."""
    s = config.recurrent_tier_size(size)
    if task == TEXT:
        return dict(hidden=s["hidden"], batch=s["batch"], lr=s.get("text_lr", s.get("lr", config.RECURRENT_LR)),
                    logs=LOGS.get(size, TEXT_LOGS), characters=s["text_characters"],
                    text_chars_max=s["text_chars_max"], held_out=HELD_OUT)
    return dict(hidden=s["hidden"], batch=s["batch"], lr=s.get("lr", config.RECURRENT_LR), threshold=THRESHOLD,
                logs=LOGS.get(size, 100),
                characters=s["characters"] if task == "copy" else s["repeat_characters"],
                max_repeats=MAX_REPEATS if task == "repeat_copy" else None)


def windows(size, task):
    """The windows T the tier trains `task` at, at `size` (the text windows: notebook 08's one window below the
    long size)."""
    s = config.recurrent_tier_size(size)
    if task == TEXT:
        return s["text_windows"] if "text_windows" in s else [s["text_window"]]
    return s[WINDOWS_KEY[task]]


_windows = windows       # under another name: `plan` has a filter called `windows`


def plan(size, tasks=TASKS + (TEXT,), methods=METHODS, windows=None, seeds=None):
    """The tier's queue at `size`, in order: (task, method, window, seed) tuples; the character model first (its
    twelve runs cost about an hour of one core at the long size), then the copy tasks window by window from the
    smallest. The filters keep part of it. scripts/recurrent.py trains it; notebook 08 counts it."""
    kept_seeds = [seed for seed in config.recurrent_tier_size(size)["seeds"] if seeds is None or seed in seeds]
    by_task = {task: [w for w in _windows(size, task) if windows is None or w in windows] for task in tasks}
    text = [(TEXT, method, window, seed) for window in by_task.pop(TEXT, [])
            for seed in kept_seeds for method in methods if method in TEXT_METHODS]
    return text + [(task, method, window, seed) for window in sorted(set().union(*by_task.values()))
                   for task in by_task if window in by_task[task] for seed in kept_seeds for method in methods]


def path(size="long", directory=None):
    """The tier's results file: results/recurrent_<size>.json (smoke: results/smoke/), in the committed results
    unless `directory` is given (scripts/recurrent.py writes where $SG_RESULTS points)."""
    return results.results_path(f"recurrent_{size}", size, directory or results.COMMITTED)


def runs(size="long", directory=None):
    """The runs of the tier at `size` trained with today's settings (see `settings`), as records: "dataset"
    (copy or repeat_copy), "method", "window", "seed", "solved", "seconds", "threads", "cpu", "history"."""
    file = path(size, directory)
    if not file.exists():
        raise FileNotFoundError(f"{file} is missing: `make recurrent SG_SIZE={size}` makes it (scripts/recurrent.py; "
                                "the long size takes CPU hours, resumes where it stopped, and is committed).")
    found = json.loads(file.read_text())["runs"]
    return [r for r in found if r.get("settings") == json.loads(json.dumps(settings(size, r["dataset"])))]


def superseded(size="long", directory=None):
    """The runs in the file trained with other settings than today's (kept, never counted: notebook 08 reads the
    tier's first runs at Adam 1e-3 as the evidence for its learning rate)."""
    found = json.loads(path(size, directory).read_text())["runs"]
    return [r for r in found if r.get("settings") != json.loads(json.dumps(settings(size, r["dataset"])))]


def solved(found, task, method, window):
    """{seed: longest length solved} of the runs of `task`, `method` at `window`."""
    return {r["seed"]: r["solved"] for r in found if (r["dataset"], r["method"], r["window"]) == (task, method, window)}


def ratio(dni, tbptt):
    """The median of DNI's longest lengths over truncated BPTT's, as text ("-" where either is missing)."""
    if not dni or not tbptt:
        return "-"
    a, b = statistics.median(dni), statistics.median(tbptt)
    return f"{a / b:.1f}x" if b else ("inf" if a else "-")


def table(found, task, size="long"):
    """The paper's layout as text: one row per window T, one column per method; in each cell every seed's
    longest solved length ('.' = not trained yet) and, after '|', the paper's cell; then DNI / truncated BPTT
    (ratio of medians), ours ("-" until every seed of both has landed) and the paper's."""
    seeds = config.recurrent_tier_size(size)["seeds"]
    rows = {}
    for window in sorted({r["window"] for r in found if r["dataset"] == task} | set(windows(size, task))):
        mine = {method: solved(found, task, method, window) for method in METHODS}
        cells = [f"{' '.join(str(mine[m].get(s, '.')) for s in seeds)} | {PAPER[task][m].get(window, '-')}"
                 for m in METHODS]
        paper = [[PAPER[task][m][window]] if window in PAPER[task][m] else [] for m in ("dni", "tbptt")]
        complete = all(len(mine[m]) == len(seeds) for m in ("dni", "tbptt"))     # a ratio only over every seed
        ours = ratio(list(mine["dni"].values()), list(mine["tbptt"].values())) if complete else "-"
        rows[window] = cells + [f"{ours} | {ratio(*paper)}"]
    width = max([len(RECURRENT_LABELS[m]) for m in METHODS] + [len(c) for cells in rows.values() for c in cells]) + 3
    lines = [f"{task.replace('_', ' ')}: longest length solved (ours: seeds {' '.join(map(str, seeds))}, "
             f"'.' not trained yet | the paper, arXiv v1, one run)",
             f"{'T':>3}  " + "".join(f"{RECURRENT_LABELS[m]:<{width}}" for m in METHODS)
             + "DNI / truncated BPTT (ours | paper)"]
    lines += [f"{window:>3}  " + "".join(f"{c:<{width}}" for c in cells[:-1]) + cells[-1]
              for window, cells in rows.items()]
    return "\n".join(lines)


def bpc(found, method, window):
    """{seed: held-out bits per character, early-stopped} of the character-model runs of `method` at `window`."""
    return {r["seed"]: r["test_bpc"] for r in found if (r["dataset"], r["method"], r["window"]) == (TEXT, method, window)}


def text_table(found, size="long"):
    """The paper's Penn Treebank row laid out for our text: one row per window T; per method every seed's test bits
    per character at its lowest validation bits ('.' = not trained yet) and, after '|', the paper's cell; then DNI
    minus truncated BPTT (difference of means), ours and the paper's."""
    seeds = config.recurrent_tier_size(size)["seeds"]
    lines = [f"character model: held-out bits per character, lower is better (ours: seeds {' '.join(map(str, seeds))}, "
             "early-stopped on validation, Python's documentation | the paper, Penn Treebank, one run)",
             f"{'T':>3}  " + "".join(f"{RECURRENT_LABELS[m]:<26}" for m in TEXT_METHODS) + "DNI - truncated BPTT (ours | paper)"]
    for window in sorted({r["window"] for r in found if r["dataset"] == TEXT} | set(windows(size, TEXT))):
        mine = {m: bpc(found, m, window) for m in TEXT_METHODS}
        cells = [f"{' '.join(f'{mine[m][s]:.3f}' if s in mine[m] else '.' for s in seeds)} | {PAPER_TEXT[m].get(window, '-')}"
                 for m in TEXT_METHODS]
        ours = (f"{statistics.fmean(mine['dni'].values()) - statistics.fmean(mine['tbptt'].values()):+.3f}"
                if mine["dni"] and mine["tbptt"] else "-")
        paper = (f"{PAPER_TEXT['dni'][window] - PAPER_TEXT['tbptt'][window]:+.2f}" if window in PAPER_TEXT["dni"] else "-")
        lines.append(f"{window:>3}  " + "".join(f"{c:<26}" for c in cells) + f"{ours} | {paper}")
    return "\n".join(lines)


def histories(found, task):
    """The runs of `task` as `training.History` objects (what helpers.plots' recurrent figures take)."""
    return [History(**r["history"]) for r in found if r["dataset"] == task]


def cosine_by_level(run):
    """{level: mean cosine} of one run with a synthesizer: the synthetic gradient's cosine to the true discounted
    future gradient, averaged over the log points at which the curriculum was training that level (the probe
    measures at the length being trained). Empty for truncated BPTT, which has no synthesizer, and for the
    character model, which has no curriculum."""
    extra = run["history"]["extra"]
    by_level = {}
    for level, cosine in zip(extra.get("level", []), extra.get("cos_future", [])):
        if cosine == cosine:                                   # a NaN: nothing measured at that log point
            by_level.setdefault(level, []).append(cosine)
    return {level: sum(values) / len(values) for level, values in sorted(by_level.items())}


def _panels(runs_of_task, what):
    """One panel per window the runs cover, and for each panel its runs as (run, offset, legend label): methods and
    their seeds are drawn a hair apart (a tenth of a level between methods, less between seeds), so that a tie
    stays visible instead of one method's lines hiding another's, and each method is named once per panel."""
    shown = sorted({r["window"] for r in runs_of_task})
    if not shown:
        raise ValueError(f"no {what} to draw: the tier has none finished yet.")
    fig, axes = plt.subplots(1, len(shown), figsize=(max(6.4, 4.2 * len(shown)), 3.4), sharey=True, squeeze=False)
    panels = []
    for ax, window in zip(axes[0], shown):
        seen, runs = set(), []
        for r in (r for r in runs_of_task if r["window"] == window):
            offset = 0.12 * (METHODS.index(r["method"]) - 1) + 0.04 * (r["seed"] - 1)
            runs.append((r, offset, RECURRENT_LABELS[r["method"]] if r["method"] not in seen else None))
            seen.add(r["method"])
        panels.append((ax, window, runs))
    return fig, axes[0], panels


def _finish(fig, axes, xlabel, ylabel, title):
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cosine_by_level(found, task="copy", size="long"):
    """One panel per window T: for each run with a synthesizer, the mean cosine at each curriculum level it
    trained (dots joined by a line, seeds of a method in its colour). The shaded band is the levels N >= T,
    where an input and its answer never share a window, so only the synthetic gradient can carry the
    dependency; the last dot of each line is the level the run was still training when it ended."""
    runs_of_task = [r for r in found if r["dataset"] == task and r["history"]["extra"].get("cos_future")]
    fig, axes, panels = _panels(runs_of_task, f"{task} runs with a synthesizer")
    for ax, window, runs in panels:
        top = 1
        for r, offset, label in runs:
            levels = cosine_by_level(r)
            top = max(top, *levels)
            ax.plot([level + offset for level in levels], list(levels.values()), "o-", alpha=0.8,
                    color=recurrent_color(r["method"]), label=label)
        ax.axvspan(window - 0.5, max(top, window) + 0.5, color="0.85", zorder=0,
                   label=f"N >= T = {window}: across the cut only")
        ax.axhline(0, color="0.4", lw=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"T = {window}", fontsize=9)
    return _finish(fig, axes, "curriculum level N (copy length trained)", "cosine to the true future gradient",
                   f"{task.replace('_', '-')}: the synthetic gradient's cosine at each level  [run size: {size}]")


def plot_levels(found, task="copy", size="long"):
    """One panel per window T: the curriculum level (the length being trained; solved = level - 1) over the
    characters read, one line per run (seeds of a method share its colour); each panel's title gives the
    paper's cells, which are too far above a CPU run's levels to share its axis."""
    fig, axes, panels = _panels([r for r in found if r["dataset"] == task], f"{task} runs")
    for ax, window, runs in panels:
        for r, offset, label in runs:
            h = r["history"]
            characters = [0] + [s * window for s in h["iteration"]]
            ax.step(characters, [1 + offset] + [v + offset for v in h["extra"]["level"]], where="post", alpha=0.8,
                    color=recurrent_color(r["method"]), label=label)
        ax.axhline(window + 0.5, color="0.3", ls=":", lw=1,
                   label="above: solved N >= T" if ax is axes[0] else None)   # level = solved + 1
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        paper = ", ".join(f"{RECURRENT_LABELS[m]} {PAPER[task][m][window]}" for m in METHODS
                          if window in PAPER[task][m])
        ax.set_title(f"T = {window}" + (f"\npaper: {paper}" if paper else ""), fontsize=9)
    return _finish(fig, axes, "characters read", "curriculum level (copy length N)",
                   f"{task.replace('_', '-')}: curriculum level over training  [run size: {size}]")


def error_at_level(run, level):
    """(characters read, training error in bits per output vector) at each log point of `run` while it trained
    `level`: how the error moved on one length of the curriculum, which tells a run still learning when its budget
    ended from one that had stopped (notebook 08 reads repeat copy at T = 3 with it)."""
    h = run["history"]
    points = [(i * run["window"], loss) for i, trained, loss in zip(h["iteration"], h["extra"]["level"], h["train_loss"])
              if trained == level]
    return [c for c, _ in points], [e for _, e in points]


def plot_error_at_level(found, task, window, level, size="long"):
    """The error on one curriculum length over the characters read, one line per run (seeds of a method share its
    colour): a line ends where the run solved the length and moved on, or at the end of its budget. The dotted line
    is the threshold the curriculum asks for before it moves on."""
    runs = sorted((r for r in found if (r["dataset"], r["window"]) == (task, window)),
                  key=lambda r: (METHODS.index(r["method"]), r["seed"]))
    if not any(error_at_level(r, level)[0] for r in runs):
        raise ValueError(f"no {task} run at T = {window} trained N = {level}: nothing to draw.")
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    seen = set()
    for r in runs:
        characters, error = error_at_level(r, level)
        ax.plot(characters, error, color=recurrent_color(r["method"]), lw=1, alpha=0.8,
                label=RECURRENT_LABELS[r["method"]] if r["method"] not in seen and characters else None)
        if characters:                   # a method is named by its first run that trained the level
            seen.add(r["method"])
    ax.axhline(THRESHOLD, color="0.3", ls=":", lw=1, label=f"threshold to move on ({THRESHOLD})")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax.set_ylim(bottom=0)
    return _finish(fig, [ax], "characters read", f"error while training N = {level}\n(bits per output vector)",
                   f"{task.replace('_', '-')}, T = {window}: the error on N = {level}, every run  [run size: {size}]")


def plot_text(found, size="long"):
    """One panel per window T: each character-model run's held-out test bits per character over the characters
    read (solid; seeds of a method share its colour), its validation bits (dotted), and a dot on the test curve
    where the validation bits were lowest: the early-stopped number the table reports. Each panel's title gives
    the paper's Penn Treebank cells (another corpus: compare the order of the methods, not the values)."""
    fig, axes, panels = _panels([r for r in found if r["dataset"] == TEXT], "character-model runs")
    for ax, window, runs in panels:
        for r, _, label in runs:
            h, color = r["history"], recurrent_color(r["method"])
            characters = [s * window for s in h["iteration"]]
            ax.plot(characters, h["extra"]["test_bpc"], color=color, lw=1.2, alpha=0.85, label=label)
            ax.plot(characters, h["extra"]["valid_bpc"], color=color, lw=0.8, ls=":", alpha=0.7)
            ax.plot([r["stopped_at"]], [r["test_bpc"]], "o", color=color, ms=5)
        low = min(min(r["history"]["extra"]["test_bpc"]) for r, _, _ in runs)
        ax.set_ylim(low - 0.05, low + 0.6)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        paper = ", ".join(f"{RECURRENT_LABELS[m]} {PAPER_TEXT[m][window]}" for m in TEXT_METHODS if window in PAPER_TEXT[m])
        ax.set_title(f"T = {window}" + (f"\npaper (Penn Treebank): {paper}" if paper else ""), fontsize=9)
    return _finish(fig, axes, "characters read (per row of the batch)",
                   "held-out bits per character\n(solid: test; dotted: validation)",
                   f"character model, held-out bits (dot: lowest validation)  [run size: {size}]")
