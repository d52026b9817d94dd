"""Execute notebooks headless, in place, at one run size: the outputs you commit come from here.

    SG_SIZE=quick python scripts/run_notebooks.py                 # every notebook
    SG_SIZE=quick python scripts/run_notebooks.py notebooks/01_*.ipynb

Each notebook runs top to bottom in a fresh kernel (its own folder as working directory), then its
widget state and widget outputs are dropped (GitHub cannot render them) and it is written back. A failing notebook is left
untouched and reported; the others still run.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


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
    paths = [Path(p).resolve() for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    size = os.environ.get("SG_SIZE", "quick")
    failed = []
    for path in paths:
        start = time.perf_counter()
        print(f"{path.name} at size {size} ...", flush=True)
        try:
            run(path)
        except CellExecutionError as error:
            failed.append(path.name)
            print(f"  FAILED, left unchanged:\n{str(error)[-2000:]}", flush=True)
            continue
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main(sys.argv[1:])
