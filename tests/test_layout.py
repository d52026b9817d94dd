"""The house rules of helpers/: every module listed once, says which notebooks use it, imports only modules
below it; every method is built through the one registry and follows the one protocol."""
import ast
import pathlib
import re

import pytest
import torch

import helpers
from helpers import learners, models

HELPERS = pathlib.Path(helpers.__file__).resolve().parent


def modules():
    return sorted(p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__")


def test_every_module_is_listed_in_the_package_docstring():
    assert sorted(helpers.MODULES) == modules()
    for name in modules():
        assert re.search(rf"^    {name} ", helpers.__doc__, re.M), f"{name} is not described in helpers/__init__.py"


@pytest.mark.parametrize("name", modules())
def test_each_module_names_the_notebooks_that_use_it(name):
    doc = ast.get_docstring(ast.parse((HELPERS / f"{name}.py").read_text()))
    assert doc and re.search(r"[Nn]otebooks? \d\d|\(\d\d[,)-]|\d\d-\d\d", doc), f"{name}.py's docstring names no notebook"


@pytest.mark.parametrize("name", modules())
def test_a_module_imports_only_modules_listed_above_it(name):
    order = {m: k for k, m in enumerate(helpers.MODULES)}
    tree = ast.parse((HELPERS / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported |= {node.module} if node.module else {a.name for a in node.names}
    for other in imported:
        assert order[other] < order[name], f"{name} imports {other}, which is listed after it"


@pytest.mark.parametrize("method", sorted(learners.METHODS))
def test_every_registered_method_builds_and_follows_the_protocol(method):
    layers = 4 if method == "multirate" else 3
    learner = learners.make(method, models.fcn(layers, hidden=16), 1e-3)
    assert isinstance(learner, learners.Learner)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loss, logits = learner.step(x, y)
    assert loss.shape == () and logits.shape == (8, 10)
    assert learners.parameters(learner), "a learner trains something"


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="backprop"):
        learners.make("backpropagation", models.fcn(3), 1e-3)
