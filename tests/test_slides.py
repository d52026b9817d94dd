"""The slide rules of scripts/slides.py hold in every notebook, and its check catches each kind of violation.

A deck is only usable in a room if every slide fits on the screen (about 1,000 characters of prose), the
presenter has notes for every section, and the closing sections ("What we saw", Summary, Exercises, References)
each get a slide instead of sharing one. The browser test (tests/test_browser.py) renders a deck for real.
"""
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import slides  # noqa: E402


def read(path):
    return nbformat.read(path, as_version=4)


def sections(notebook):
    """`## ` heading cell -> the markdown cells of its section (up to the next `# ` or `## ` heading)."""
    found, current = {}, None
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        if cell.source.startswith(("# ", "## ")):
            current = cell.source.splitlines()[0] if cell.source.startswith("## ") else None
            if current:
                found[current] = []
        if current:
            found[current].append(cell)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_slide_carries_more_than_the_limit(path):
    too_big = [(n, title, size) for n, (title, size) in enumerate(slides.slides(read(path)), 1) if size > slides.LIMIT]
    assert not too_big, f"slides over {slides.LIMIT} characters of prose (number, title, size): {too_big}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_section_has_speaker_notes(path):
    found = sections(read(path))
    assert found, "the notebook has `## ` sections"
    missing = [h for h, cells in found.items() if not any(c.source.startswith(slides.NOTES) for c in cells)]
    assert not missing, f"sections without a **Speaker notes** cell: {missing}"
    assert all(slides.kind(c) == "notes" for cells in found.values() for c in cells if c.source.startswith(slides.NOTES))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_closing_sections_each_start_a_slide(path):
    cells = [c for c in read(path).cells if c.cell_type == "markdown"]
    for heading in slides.END_SECTIONS:
        starts = [c for c in cells if c.source.startswith(heading)]
        inside = [c for c in cells if f"\n{heading}" in c.source]
        assert not inside, f"{heading!r} shares a cell with the section before it"
        if heading != "## What we saw":   # 00 has nothing to report yet; every notebook has the other three
            assert len(starts) == 1, heading
        assert all(slides.kind(c) == "slide" for c in starts), f"{heading!r} is not a slide of its own"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_check_passes(path):
    notebook = read(path)
    assert slides.apply(notebook) == 0, "slide metadata out of date: run python scripts/slides.py"
    assert slides.problems(notebook, path.name) == []


def planted(extra):
    """A small notebook that keeps every rule, with `extra` markdown cells appended."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(s) for s in (
        "# Title", "## Idea", "**Speaker notes** — say it.", "Some prose.", *extra)]
    slides.apply(notebook)
    return notebook


def test_a_clean_notebook_passes():
    assert slides.problems(planted([]), "x.ipynb") == []


def test_the_check_names_an_oversized_slide():
    found = slides.problems(planted(["word " * 300]), "x.ipynb")
    assert len(found) == 1 and "x.ipynb, slide 3 ('word word" in found[0] and "1499 characters" in found[0]


def test_a_long_cell_after_a_full_slide_becomes_a_continuation():
    notebook = planted(["a" * 600, "b" * 600])
    assert [slides.kind(c) for c in notebook.cells][-2:] == ["-", "subslide"]
    assert slides.problems(notebook, "x.ipynb") == []


def test_the_check_names_a_section_without_notes():
    found = slides.problems(planted(["## Summary\n\n- done"]), "x.ipynb")
    assert found == ["x.ipynb, slide 3 ('## Summary'): no **Speaker notes** cell in this section"]


def test_the_check_names_a_closing_section_that_shares_a_cell():
    found = slides.problems(planted(["Prose.\n\n## Summary\n\n- done"]), "x.ipynb")
    assert any("'## Summary' sits inside a cell" in f for f in found)


def test_a_closing_section_typed_by_hand_as_a_continuation_is_caught():
    notebook = planted(["## Exercises\n\n1. Try it.", "**Speaker notes** — none needed."])
    notebook.cells[-2].metadata["slideshow"]["slide_type"] = "-"
    assert any("'## Exercises' is not a slide of its own" in f for f in slides.problems(notebook, "x.ipynb"))


def test_prose_leaves_out_link_targets_and_tags():
    badge = "[![Open In Colab](https://x.y/badge.svg)](https://x.y/a/very/long/address.ipynb)"
    assert slides.prose(nbformat.v4.new_markdown_cell(badge)) == len("Open In Colab")
    folded = "<details><summary>Answer</summary>\n\nYes.\n\n</details>"
    assert slides.prose(nbformat.v4.new_markdown_cell(folded)) == len("Answer\n\nYes.")


def test_building_without_npm_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install npm"):
        slides.vendor(tmp_path)


def test_run_logistics_are_skipped_and_goals_and_exercises_get_slides_of_their_own():
    """A room needs the argument, not how long the notebook runs: "Before you start" is skipped; the goals
    start a sub-slide after the title's motivation; each numbered exercise after the first is its own sub-slide
    (the first shares the "## Exercises" slide, whether in the heading's cell or right after it)."""
    notebook = planted(["**Before you start** — Prerequisites: 00.", "**In this notebook you will learn**\n- x",
                        "## Exercises", "**1.** First.", "**2.** Second.", "**3.** Third.",
                        "**Speaker notes** — one at a time."])
    kinds = [slides.kind(c) for c in notebook.cells][4:]
    assert kinds == ["skip", "subslide", "slide", "-", "subslide", "subslide", "notes"]
    assert slides.problems(notebook, "x.ipynb") == []
