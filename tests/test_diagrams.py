"""Every method's diagram draws, under Agg, with the paper's colour convention where it matters."""
import matplotlib
import pytest

from helpers import diagrams

matplotlib.use("Agg")


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_every_diagram_draws(name, tmp_path):
    fig = diagrams.DIAGRAMS[name]()
    fig.savefig(tmp_path / f"{name}.png", dpi=60)
    assert diagrams.arrows(fig), "a diagram is made of arrows"


def kinds(name):
    return set(diagrams.arrows(diagrams.DIAGRAMS[name]()))


def test_the_colours_say_what_each_method_sends():
    assert kinds("backprop") == {"forward", "true"}, "backprop: no synthetic gradient, every forward waits"
    for name in ("dni", "cdni", "critic", "full_unlock", "recurrent", "pipeline"):
        assert {"synthetic", "unlocked"} <= kinds(name), name
    assert "context" in kinds("cdni") and "context" not in kinds("dni"), "only cDNI's synthesizer sees the label"
    assert "input" in kinds("full_unlock") and all("input" not in kinds(n) for n in diagrams.DIAGRAMS if n != "full_unlock")
    assert "synthetic" not in kinds("dgl") and "true" in kinds("dgl"), "DGL follows true gradients of local losses"
