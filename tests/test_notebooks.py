"""Static checks of every notebook: Colab, slides and committed-output hygiene (nbval runs them)."""
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import slides  # noqa: E402

BADGE = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/main/(notebooks/[\w.-]+\.ipynb)")


def read(path):
    return nbformat.read(path, as_version=4)


def repository():
    return BADGE.search((ROOT / "README.md").read_text()).group(1)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_points_at_this_notebook(path):
    first = read(path).cells[0]
    assert first.cell_type == "markdown"
    match = BADGE.search(first.source)
    assert match, "the first cell carries an Open-in-Colab badge"
    assert match.group(2) == f"notebooks/{path.name}" and match.group(1) == repository()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_first_and_colab_safe(path):
    notebook = read(path)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source and "sys.path.insert" in code[0].source
    assert "pip install" not in code[0].source  # Colab's torch is never replaced
    assert "config.setup(" in code[1].source, "the second code cell prints run size, device and seed"
    assert notebook.metadata.get("accelerator") == "GPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_on_a_simulated_colab(path, monkeypatch, tmp_path):
    """Run the first cell as Colab would: it clones this repository and makes `helpers` importable."""
    source = [c for c in read(path).cells if c.cell_type == "code"][0].source
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or
                        subprocess.CompletedProcess(args, 0, "", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(compile(source, path.name, "exec"), namespace)
    assert calls and calls[0][:2] == ["git", "clone"] and calls[0][-2] == f"https://github.com/{repository()}"
    assert sys.path[0] == calls[0][-1] == str(namespace["root"])
    assert source.count(f"https://github.com/{repository()}") == 1, "the address lives in one named constant"


@pytest.mark.parametrize("path", NOTEBOOKS[:1] + NOTEBOOKS[-1:], ids=lambda p: p.name)
def test_a_failed_clone_says_what_to_change(path, monkeypatch):
    source = [c for c in read(path).cells if c.cell_type == "code"][0].source
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, 128, "", "fatal: repository 'https://github.com/x/y/' not found"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(RuntimeError, match="Set REPOSITORY at the top of this cell"):
        exec(compile(source, path.name, "exec"), {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    notebook = read(path)
    assert path.stat().st_size < 3_000_000
    assert "widgets" not in notebook.metadata, "no widget state in metadata (GitHub cannot render it)"
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"an error output in {path.name}"
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
    sizes = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    if any(sizes):
        assert any("Run size" in "".join(s) for s in sizes), "committed outputs say which run size made them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_slide_metadata_is_complete_and_current(path):
    notebook = read(path)
    assert all("slide_type" in c.metadata.get("slideshow", {}) for c in notebook.cells)
    assert slides.apply(notebook) == 0, "run: python scripts/slides.py"
    kinds = [c.metadata["slideshow"]["slide_type"] for c in notebook.cells]
    assert kinds[0] == "slide" and "notes" in kinds and kinds.count("slide") >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_shape(path):
    cells = read(path).cells
    markdown = [c for c in cells if c.cell_type == "markdown"]
    assert len(markdown) >= len(cells) / 3, "a lesson explains before it computes"
    text = "\n".join(c.source for c in markdown)
    for heading in ("## Summary", "## Exercises", "## References"):
        assert heading in text, heading
    json.dumps(cells)  # serialisable


def test_cnn_notebook_says_when_it_used_the_cifar_standin():
    """Wherever notebook 07's committed outputs come from the CIFAR-10 stand-in, they say so in words."""
    path = ROOT / "notebooks" / "07_cnn.ipynb"
    outputs = [o for c in read(path).cells for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert text, "notebook 07 is committed with its outputs"
    if "cifar10-standin" in text:
        assert "STAND-IN" in text and "not CIFAR-10" in text and "say nothing about CIFAR-10" in text
    source = "\n".join(c.source for c in read(path).cells)
    assert "cifar-10-python.tar.gz" in source, "the notebook says how to get the real data"
