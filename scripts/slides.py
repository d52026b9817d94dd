"""Slide metadata for presenting the notebooks (reveal.js via nbconvert, or live with jupyterlab-rise).

    python scripts/slides.py            # (re)apply slide types to every notebook, in place
    python scripts/slides.py --check    # exit 1 if a notebook's slide types differ from the rules

Rules, so that a reading group sees the argument and not the plumbing:
- the title cell and every `## ` section start a slide; `### ` starts a sub-slide;
- a code cell that draws a figure, or has more than 12 lines, gets a sub-slide of its own;
- the set-up cell, the "checks" and "save results" cells are skipped;
- a markdown cell starting with "**Speaker notes**" becomes speaker notes;
- everything else continues the current slide.
"""
import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def slide_type(cell, previous):
    text = cell.source.lstrip()
    if cell.cell_type == "markdown":
        if text.startswith("**Speaker notes**"):
            return "notes"
        if text.startswith("# ") or text.startswith("## "):
            return "slide"
        if text.startswith("### "):
            return "subslide"
        if text.startswith("Checks that hold") or text.startswith("Save what this run"):
            return "skip"
        return "-"
    if "google.colab" in text or "save_results(" in text:
        return "skip"
    if previous is not None and previous.cell_type == "markdown" and previous.source.lstrip().startswith("Checks that hold"):
        return "skip"
    draws = "plt.show()" in text or any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
    if draws or len(text.splitlines()) > 12:
        return "subslide"
    return "-"


def apply(notebook):
    """Set `metadata.slideshow.slide_type` on every cell; returns the number of cells changed."""
    changed, previous = 0, None
    for cell in notebook.cells:
        wanted = slide_type(cell, previous)
        if cell.metadata.get("slideshow", {}).get("slide_type") != wanted:
            cell.metadata["slideshow"] = {"slide_type": wanted}
            changed += 1
        previous = cell
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    stale = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if apply(notebook):
            stale.append(path.name)
            if not args.check:
                nbformat.write(notebook, path)
    if args.check and stale:
        sys.exit(f"slide metadata out of date in {', '.join(stale)}: run python scripts/slides.py")
    print(("out of date: " if args.check else "updated: ") + (", ".join(stale) or "none"))


if __name__ == "__main__":
    main()
