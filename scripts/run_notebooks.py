"""Execute notebooks headless, in place, at one run size: the outputs you commit come from here.

    SG_SIZE=quick python scripts/run_notebooks.py                 # every notebook
    SG_SIZE=quick python scripts/run_notebooks.py notebooks/01_*.ipynb

Each notebook runs top to bottom in a fresh kernel (its own folder as working directory), then its
widget state and widget outputs are dropped (GitHub cannot render them) and it is written back. A failing notebook is left
untouched and reported; the others still run.

At the end it prints each notebook's wall time against the budget (quick size: 8 minutes a notebook, 45 for the
series, on a 2-core CPU) and writes them to results/timings_<size>.json (a smoke run: results/smoke/). Runs that an
earlier notebook stored (training.train(..., reuse=True)) are loaded, so the times are those of the series run in
order; `--times-only` prints the last recorded table without running anything.
"""
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers import results  # noqa: E402
BUDGET_MINUTES = {"quick": (8, 45)}   # per notebook, whole series (issue: "quick means quick")


def run(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    strip_widgets(notebook)
    nbformat.write(notebook, path)


def strip_widgets(notebook):
    """Drop widget state and widget outputs: without a live kernel they render as nothing (or break
    GitHub's renderer). Notebooks draw a static figure next to every widget for that reason."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]


def main(paths):
    if paths == ["--times-only"]:
        print_times(load_times(os.environ.get("SG_SIZE", "quick")))
        return
    paths = [Path(p).resolve() for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    size = os.environ.get("SG_SIZE", "quick")
    failed, times = [], load_times(size).get("notebooks", {})
    for path in paths:
        start = time.perf_counter()
        print(f"{path.name} at size {size} ...", flush=True)
        try:
            run(path)
        except CellExecutionError as error:
            failed.append(path.name)
            print(f"  FAILED, left unchanged:\n{str(error)[-2000:]}", flush=True)
            continue
        seconds = time.perf_counter() - start
        times[path.stem] = round(seconds, 1)
        print(f"  done in {seconds:.0f} s", flush=True)
        save_times(size, times)
    print_times(load_times(size))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def times_path(size):
    return results.results_path(f"timings_{size}", size)


def load_times(size):
    path = times_path(size)
    return json.loads(path.read_text()) if path.exists() else {"size": size, "notebooks": {}}


def save_times(size, times):
    """Each notebook's latest wall time, written after every notebook (a stopped run keeps the rest)."""
    record = {"size": size, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
              "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "notebooks": dict(sorted(times.items()))}
    results.write_json(times_path(size), record)


def print_times(record):
    """The wall-time table: one line per notebook, the total, and the budget where the size has one."""
    size, notebooks = record.get("size", "?"), record.get("notebooks", {})
    if not notebooks:
        print(f"no wall times recorded at size {size} yet: run `make notebooks SG_SIZE={size}`")
        return
    each, total = BUDGET_MINUTES.get(size, (None, None))
    print(f"wall time per notebook at size {size} ({record.get('machine', 'this machine')}, {record.get('written', '')})")
    for name, seconds in notebooks.items():
        over = "  over the budget" if each and seconds > each * 60 else ""
        print(f"  {name:28s} {seconds / 60:5.1f} min{over}")
    whole = sum(notebooks.values())
    budget = f" (budget {each} min a notebook, {total} min in all)" if each else ""
    print(f"  {'series':28s} {whole / 60:5.1f} min{budget}" + ("  over the budget" if total and whole > total * 60 else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
