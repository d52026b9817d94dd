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
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
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


def test_a_list_cut_by_a_figure_is_named():
    """02's two regression targets were split by the diagram between them: the second half sat on the figure's
    sub-slide, away from its lead-in."""
    notebook = planted(["Targets:\n\n- **top**: the true gradient", "**Speaker notes** — Expected: two targets. "
                        "Common misreading: one target."])
    notebook.cells.append(nbformat.v4.new_code_cell("fig = diagrams.dni()\nplt.show()"))
    notebook.cells.append(nbformat.v4.new_markdown_cell("- **lower**: bootstrapped"))
    slides.apply(notebook)
    found = slides.problems(notebook, "x.ipynb")
    assert len(found) == 1 and "x.ipynb, slide 3: the list starting '- **lower**" in found[0], found
    notebook.cells[-2:] = notebook.cells[-2:][::-1]          # the figure below the list: nothing is cut
    slides.apply(notebook)
    assert slides.problems(notebook, "x.ipynb") == []


def test_a_list_moves_to_a_continuation_with_its_lead_in():
    """Lead-in and list do not fit after the first paragraph: the lead-in starts the continuation, not the list."""
    notebook = planted(["a" * 600, "Three findings:", "- " + "b" * 200, "- " + "c" * 200])
    assert [slides.kind(c) for c in notebook.cells][-4:] == ["-", "subslide", "-", "-"]
    assert slides.problems(notebook, "x.ipynb") == []


def test_a_list_longer_than_a_slide_goes_on_between_two_items():
    notebook = planted(["Findings:", "- " + "b" * 500, "- " + "c" * 500])
    assert [slides.kind(c) for c in notebook.cells][-3:] == ["subslide", "-", "subslide"]
    assert slides.problems(notebook, "x.ipynb") == []


def test_the_deck_shows_a_figure_without_its_code():
    """On a figure's slide the figure is the slide: the deck leaves out the cell's code (the notebook keeps it)
    and caps the image's height; a cell that draws nothing keeps its code."""
    notebook = planted([])
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    figure = nbformat.v4.new_code_cell("curves = 'the plotting input'\nplt.plot(curves)")
    figure.outputs = [nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": "<Figure>"})]
    notebook.cells += [figure, nbformat.v4.new_code_cell("table = 'a computation'")]
    slides.apply(notebook)
    html = slides.render(notebook)
    assert png in html and "the plotting input" not in html and "a computation" in html
    assert f"max-height: {slides.FIGURE_HEIGHT}px" in html


def test_a_cell_with_two_figures_gives_each_its_own_sub_slide_in_the_deck():
    """Two figures of one cell stacked on one slide run past the bottom of the screen (04's two diagrams)."""
    figure = nbformat.v4.new_code_cell("plot()\nplt.show()\nprint('second')\nplot()\nplt.show()")
    figure.outputs = [nbformat.v4.new_output("display_data", {"image/png": "AAAA"}),
                      nbformat.v4.new_output("stream", text="second\n"),
                      nbformat.v4.new_output("display_data", {"image/png": "BBBB"}),
                      nbformat.v4.new_output("stream", text="after\n")]
    notebook = planted([])
    notebook.cells.append(figure)
    slides.apply(notebook)
    room = slides.for_the_room(notebook)
    first, second = room.cells[-2:]
    assert [slides.kind(first), slides.kind(second)] == ["subslide", "subslide"]
    shown = [[o.get("data", {}).get("image/png", o.get("text")) for o in c.outputs] for c in (first, second)]
    assert shown == [["AAAA"], ["second\n", "BBBB", "after\n"]]
    assert first.id != second.id


def test_a_figure_keeps_its_slide_to_itself_and_a_caption():
    """A figure fills its slide but for about three lines: a short caption stays below it, a longer paragraph
    or a code cell (e.g. one printing the numbers behind the figure) starts a continuation."""
    notebook = planted([])
    cells = [nbformat.v4.new_code_cell("plt.plot(x)\nplt.show()"), nbformat.v4.new_markdown_cell("The caption."),
             nbformat.v4.new_markdown_cell("A paragraph. " * 30), nbformat.v4.new_code_cell("plt.plot(x)\nplt.show()"),
             nbformat.v4.new_code_cell("print(numbers)")]
    notebook.cells += cells
    slides.apply(notebook)
    assert [slides.kind(c) for c in cells] == ["subslide", "-", "subslide", "subslide", "subslide"]


def test_a_section_with_a_figure_needs_notes_that_say_what_to_expect_and_how_it_is_misread():
    """Speaker notes that are stage directions ("show the figure") leave a presenter with nothing to say when the
    room reads a curve the wrong way: a section that draws a figure names the expected result and the common
    misreading."""
    figure = nbformat.v4.new_code_cell("plt.plot(x)\nplt.show()")
    directions = planted(["## Curves", "**Speaker notes** — Show the figure."])
    directions.cells.append(figure)
    slides.apply(directions)
    found = slides.problems(directions, "x.ipynb")
    assert len(found) == 1 and "x.ipynb, slide 3 ('## Curves'): shows a figure" in found[0]
    taught = planted(["## Curves", "**Speaker notes** — Expected: the curve rises. Common misreading: a plateau "
                      "is not convergence."])
    taught.cells.append(figure)
    slides.apply(taught)
    assert slides.problems(taught, "x.ipynb") == []
    no_figure = planted(["## Words", "**Speaker notes** — Read it aloud."])
    assert slides.problems(no_figure, "x.ipynb") == []
