"""Slides for presenting the notebooks: the slide metadata rules, their check, and offline reveal.js decks.

    python scripts/slides.py            # (re)apply slide types to every notebook, in place; print slide sizes
    python scripts/slides.py --check    # exit 1 if slide types differ from the rules or a slide breaks a rule
    python scripts/slides.py --build    # render every notebook to build/slides/*.slides.html (`make slides`)

Rules, so that a reading group sees the argument and not the plumbing:
- the title cell and every `## ` section start a slide (a `# Part` heading too); `### ` starts a sub-slide;
- "What we saw", "Summary", "Exercises" and "References" are `## ` sections, each in a cell of its own, so each
  starts a slide; no `## ` heading may sit inside a cell, where it would start nothing;
- a code cell that draws a figure, or has more than 12 lines, gets a sub-slide of its own; in the deck a figure
  cell shows its outputs only (its code stays in the notebook), and a figure is at most FIGURE_HEIGHT pixels
  high, so on a 1280x720 screen the figure is in view without scrolling; prose after a figure shares its slide
  only up to CAPTION characters, more starts a continuation, and so does a code cell after a figure;
- a list stays with its lead-in: a markdown cell followed by list items in the next cells starts a continuation
  if it and the list together would not fit; only a list longer than a slide goes on, between two items, on a
  continuation; the check fails where anything else cuts a list (e.g. a figure between its halves);
- the set-up cell, the "checks" and "save results" cells are skipped, and so is the "**Before you start**" cell
  (prerequisites and run times: for a reader about to run the notebook, not for a room);
- "**In this notebook you will learn**" (the goals) starts a sub-slide after the title slide's motivation;
- every numbered exercise ("**2.** ...") starts a sub-slide of its own, so a group takes them one at a time;
- a markdown cell starting with "**Speaker notes**" becomes speaker notes, and every `## ` section has some;
- a markdown cell that would take its slide past LIMIT characters of prose starts a sub-slide (a continuation);
  one cell over LIMIT on its own is an error: split it at a paragraph or move detail into the speaker notes;
- everything else continues the current slide.

The decks work with no network: reveal.js and MathJax are installed from the npm registry into
build/slides/vendor/ on the first build (kept afterwards), and the template points at them by relative paths.
"""
import argparse
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "slides"
LIMIT = 1000                      # characters of prose on one slide or sub-slide
END_SECTIONS = ("## What we saw", "## Summary", "## Exercises", "## References")
NOTES = "**Speaker notes**"
READING = ("expected", "misreading")   # what the notes of a section with a figure tell the presenter
BEFORE = "**Before you start**"
GOALS = "**In this notebook you will learn**"
EXERCISE = re.compile(r"\*\*\d+\.\*\* ")
STARTS = {"slide", "subslide"}
FIGURE_HEIGHT = 520               # pixels of reveal's 960x700 slide: room for a line of printed output above
CAPTION = 300                     # characters of prose that fit below a figure on its slide (about three lines)
LIST_ITEM = re.compile(r"(?:[-*+]|\d+[.)])\s")
# nbconvert's reveal template is written for reveal.js 4.0.2 (its CDN default) and its layout (dist/, plugin/);
# MathJax 3 because the template's MathJax 2 calls are replaced below.
PACKAGES = {"reveal.js": "4.0.2", "mathjax": "3.2.2"}
VENDOR_FILES = ("reveal.js/dist/reveal.js", "reveal.js/plugin/notes/notes.js", "mathjax/es5/tex-chtml-full.js")

LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def prose(cell):
    """Characters a reader sees: markdown text with link targets and HTML tags left out (a badge is its label)."""
    if cell.cell_type != "markdown":
        return 0
    text, previous = cell.source, None
    while text != previous:          # a badge is a link around an image: strip both layers
        previous, text = text, LINK.sub(r"\1", text)
    return len(TAG.sub("", text).strip())


def slide_type(cell, previous, on_slide, together=None, below_figure=False):
    """The slide type the rules give `cell`, after `previous`, with `on_slide` characters already on the slide;
    `together`: the prose that must share a slide with the cell (itself and the list items after it);
    `below_figure`: the slide so far shows a figure."""
    text = cell.source.lstrip()
    if cell.cell_type == "markdown":
        if text.startswith(NOTES):
            return "notes"
        if text.startswith("# ") or text.startswith("## "):
            return "slide"
        if text.startswith(("### ", GOALS)):
            return "subslide"
        if text.startswith(("Checks that hold", "Save what this run", BEFORE)):
            return "skip"
        if EXERCISE.match(text) and not (previous is not None and previous.source.lstrip().startswith("## Exercises")):
            return "subslide"
        if on_slide and on_slide + (prose(cell) if together is None else together) > LIMIT:
            return "subslide"
        return "-"
    if "google.colab" in text or "save_results(" in text:
        return "skip"
    if previous is not None and previous.cell_type == "markdown" and previous.source.lstrip().startswith("Checks that hold"):
        return "skip"
    if draws(cell) or below_figure or len(text.splitlines()) > 12:
        return "subslide"
    return "-"


def draws(cell):
    """A code cell that shows a figure: it calls plt.show() or has an image among its outputs."""
    return cell.cell_type == "code" and ("plt.show()" in cell.source or any(
        "image/png" in o.get("data", {}) for o in cell.get("outputs", [])))


def starts_list(cell):
    return cell.cell_type == "markdown" and LIST_ITEM.match(cell.source.lstrip()) is not None


def with_its_list(cells, k):
    """Prose of cell k and of the list items in the markdown cells right after it: one block for the LIMIT rule,
    so a continuation slide starts before a list's lead-in rather than inside the list."""
    size = prose(cells[k])
    if starts_list(cells[k]):
        return size
    for cell in cells[k + 1:]:
        if not starts_list(cell):
            break
        size += prose(cell)
    return size


def apply(notebook):
    """Set `metadata.slideshow.slide_type` on every cell; returns the number of cells changed."""
    changed, previous, on_slide, below_figure = 0, None, 0, False
    for k, cell in enumerate(notebook.cells):
        wanted = slide_type(cell, previous, on_slide, with_its_list(notebook.cells, k), below_figure)
        if cell.metadata.get("slideshow", {}).get("slide_type") != wanted:
            cell.metadata["slideshow"] = {"slide_type": wanted}
            changed += 1
        if wanted in STARTS:
            on_slide, below_figure = 0, False
        if wanted not in ("notes", "skip"):
            on_slide += prose(cell)
        if wanted != "skip" and draws(cell):
            on_slide, below_figure = LIMIT - CAPTION, True   # the figure fills the slide but for a caption
        previous = cell
    return changed


def kind(cell):
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def slides(notebook):
    """The (sub-)slides as nbconvert builds them from the metadata: a list of (first line, characters of prose)."""
    found = []
    for cell in notebook.cells:
        if kind(cell) in ("notes", "skip"):
            continue
        if kind(cell) in STARTS or not found:
            found.append([cell.source.strip().splitlines()[0][:60] if cell.source.strip() else "", 0])
        found[-1][1] += prose(cell)
    return [tuple(s) for s in found]


def problems(notebook, name):
    """Every broken rule in one notebook, each naming the notebook and the slide."""
    found = []
    for number, (title, size) in enumerate(slides(notebook), start=1):
        if size > LIMIT:
            found.append(f"{name}, slide {number} ({title!r}): {size} characters of prose, over {LIMIT}; split it at "
                         "a paragraph or move detail into a **Speaker notes** cell")
    section, has_notes, number, figure, notes = None, True, 0, False, ""
    for cell in notebook.cells + [nbformat.v4.new_markdown_cell("## (end)")]:
        if kind(cell) in STARTS or (number == 0 and kind(cell) not in ("notes", "skip")):
            number += 1
        text = cell.source.lstrip()
        figure = figure or (kind(cell) != "skip" and draws(cell))
        if cell.cell_type != "markdown":
            continue
        where = f"{name}, slide {number}"
        if text.startswith("# ") or text.startswith("## "):
            if section and not has_notes:
                found.append(f"{section}: no **Speaker notes** cell in this section")
            elif section and figure and not all(word in notes.lower() for word in READING):
                found.append(f"{section}: shows a figure, but its **Speaker notes** do not say what to expect and "
                             "how it is commonly misread (write 'Expected: ...' and 'Common misreading: ...')")
            section = f"{where} ({text.splitlines()[0]!r})" if text.startswith("## ") else None
            has_notes, figure, notes = False, False, ""
        if text.startswith(NOTES):
            has_notes, notes = True, notes + text
        inside = [line for line in text.splitlines()[1:] if line.startswith("## ")]
        if inside:
            found.append(f"{where}: {inside[0]!r} sits inside a cell; start a new cell there so it starts a slide")
        if text.startswith(END_SECTIONS) and kind(cell) != "slide":
            found.append(f"{where}: {text.splitlines()[0]!r} is not a slide of its own")
    return found + split_lists(notebook, name)


def split_lists(notebook, name):
    """Lists cut by a slide boundary: a markdown cell that starts with a list item, separated from the markdown
    cell before it (the list's first half, or its lead-in) by a cell that starts a slide. The list item starting
    a continuation itself is allowed: that is a list too long for one slide, going on between two items."""
    found, number, previous, cut = [], 0, None, False
    for cell in notebook.cells:
        if kind(cell) in ("notes", "skip"):
            continue
        starts = kind(cell) in STARTS or number == 0
        number += starts
        if cell.cell_type != "markdown":
            cut = cut or starts
            continue
        if starts_list(cell) and previous is not None and cut:
            found.append(f"{name}, slide {number}: the list starting {cell.source.lstrip()[:40]!r} is cut from the "
                         f"markdown before it on slide {previous} by a slide between them; keep a list and its "
                         "lead-in together (move the figure or code above the lead-in, or below the list)")
        previous, cut = number, False
    return found


def for_the_room(notebook):
    """The notebook as its deck shows it, changed in memory: a figure cell's code is left out (nbconvert skips a
    cell's source when `metadata.transient.remove_source` is set), so the figure is the slide, and a cell that
    shows several figures becomes one sub-slide per figure (each with the text printed before it), so that no
    two figures are stacked past the bottom of the screen."""
    cells = []
    for cell in notebook.cells:
        if not draws(cell):
            cells.append(cell)
            continue
        cell.metadata["transient"] = {"remove_source": True}
        parts, current = [], []
        for output in cell.get("outputs", []):
            current.append(output)
            if "image/png" in output.get("data", {}):
                parts, current = parts + [current], []
        if current:                      # text printed after the last figure stays with it
            parts = parts[:-1] + [parts[-1] + current] if parts else [current]
        for k, outputs in enumerate(parts or [[]]):
            piece = copy.deepcopy(cell) if k else cell
            piece.outputs = outputs
            if k:
                piece.metadata["slideshow"] = {"slide_type": "subslide"}
                piece["id"] = f"{cell.get('id', 'figure')}-{k}"[-64:]   # cell ids are unique
            cells.append(piece)
    notebook.cells = cells
    return notebook


# The reveal template of nbconvert, with every file it loads served from vendor/: jQuery, require.js and mermaid
# (used by none of these decks) are dropped, MathJax 3 replaces the CDN's MathJax 2, reveal.js loads directly.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
                        processEscapes: true, tags: 'ams'}};
</script>
<script src="vendor/node_modules/mathjax/es5/tex-chtml-full.js"></script>
<style>
a[href*="colab.research.google.com"] { display: none; }  /* the Open-in-Colab badge: a link, not a slide */
.reveal .jp-OutputArea-output img { max-height: {{ resources.figure_height }}px; width: auto; max-width: 100%; }
</style>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, history: true, plugins: [RevealNotes],
                   transition: "{{ resources.reveal.transition | default('slide', true) }}",
                   slideNumber: "{{ resources.reveal.number | default('', true) }}",
                   width: {{ resources.reveal.width | default('960', true) }},
                   height: {{ resources.reveal.height | default('700', true) }}});
</script>
{% endblock footer_js %}
"""


def vendor(out=OUT):
    """reveal.js and MathJax under out/vendor, from the npm registry the first time; kept for later builds."""
    root = out / "vendor"
    if all((root / "node_modules" / f).is_file() for f in VENDOR_FILES):
        return root
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("`make slides` needs npm to fetch reveal.js and MathJax once (Debian/Ubuntu: "
                         "apt-get install npm; elsewhere install Node.js, which includes npm)")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error",
                    *(f"{name}@{version}" for name, version in PACKAGES.items())], check=True)
    return root


def render(notebook, name="deck"):
    """One deck's HTML: `notebook` as the room sees it (`for_the_room`), through the offline template."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(extra_loaders=[DictLoader({"offline.html.j2": TEMPLATE})],
                              template_file="offline.html.j2", reveal_url_prefix="vendor/node_modules/reveal.js",
                              reveal_theme="white")   # "white" loads its fonts from vendor/, "simple" from Google
    resources = {"metadata": {"name": name}, "figure_height": FIGURE_HEIGHT}
    return exporter.from_notebook_node(for_the_room(notebook), resources=resources)[0]


def build(paths, out=OUT):
    """Render each notebook, outputs included, to out/<name>.slides.html that opens with no network."""
    vendor(out)
    written = []
    for path in paths:
        target = out / (Path(path).stem + ".slides.html")
        target.write_text(render(nbformat.read(path, as_version=4), Path(path).stem), encoding="utf-8")
        written.append(target)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a rule is broken")
    parser.add_argument("--build", action="store_true", help="render offline reveal.js decks into build/slides/")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if args.build:
        for target in build(paths):
            print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
        return
    stale, broken = [], []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if apply(notebook):
            stale.append(path.name)
            if not args.check:
                nbformat.write(notebook, path)
        if args.check:   # what nbconvert would build from the metadata as it is on disk
            notebook = nbformat.read(path, as_version=4)
        sizes = [size for _, size in slides(notebook)]
        print(f"{path.name}: {len(sizes)} slides, the largest {max(sizes)} characters of prose")
        broken += problems(notebook, path.name)
    print(("out of date: " if args.check else "updated: ") + (", ".join(stale) or "none"))
    if args.check and stale:
        broken.append(f"slide metadata out of date in {', '.join(stale)}: run python scripts/slides.py")
    if broken and args.check:
        sys.exit("\n".join(broken))
    for problem in broken:
        print("rule broken:", problem, file=sys.stderr)


if __name__ == "__main__":
    main()
