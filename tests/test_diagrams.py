"""Every method's diagram draws, under Agg, with the paper's colour convention, and draws what its notebook's
text explains: who sends what to whom (`diagrams.edges`: kind, from, to)."""
import matplotlib
import matplotlib.pyplot as plt
import pytest

from helpers import diagrams

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_every_diagram_draws(name, tmp_path):
    fig = diagrams.DIAGRAMS[name]()
    fig.savefig(tmp_path / f"{name}.png", dpi=60)
    assert diagrams.arrows(fig), "a diagram is made of arrows"
    assert len(diagrams.edges(fig)) == len(diagrams.arrows(fig)), "every arrow says what it joins"


def kinds(name):
    return set(diagrams.arrows(diagrams.DIAGRAMS[name]()))


def edges(name, **options):
    source = getattr(diagrams, name) if options else diagrams.DIAGRAMS[name]
    return set(diagrams.edges(source(**options)))


def test_the_colours_say_what_each_method_sends():
    assert kinds("backprop") == {"forward", "true"}, "backprop: no synthetic gradient, every forward waits"
    for name in ("dni", "cdni", "critic", "recurrent", "pipeline"):
        assert {"synthetic", "unlocked"} <= kinds(name), name
    assert "synthetic" in kinds("full_unlock")
    assert "context" in kinds("cdni") and "context" not in kinds("dni"), "only cDNI's synthesizer sees the label"
    assert "input" in kinds("full_unlock") and all("input" not in kinds(n) for n in diagrams.DIAGRAMS if n != "full_unlock")
    assert "synthetic" not in kinds("dgl") and "true" in kinds("dgl"), "DGL follows true gradients of local losses"


def test_dni_synthesizers_read_their_block_and_learn_from_the_block_above():
    for layers in (3, 5):
        e = edges("dni", layers=layers)
        for i in range(1, layers):
            assert ("forward", f"f{i}", f"M{i}") in e and ("synthetic", f"M{i}", f"f{i}") in e
            assert ("unlocked", f"f{i}", f"f{i + 1}") in e
            target = "true" if i == layers - 1 else "synthetic"            # bootstrapped below the top
            assert (target, f"f{i + 1}", f"M{i}") in e, (layers, i)
    assert {("context", "y", "M1"), ("context", "y", "M2")} <= edges("dni", conditioned=True)


def test_full_unlock_feeds_x_to_the_input_synthesizers_and_y_to_the_gradient_synthesizers():
    for layers in (3, 4):
        e = edges("full_unlock", layers=layers)
        for i in range(2, layers + 1):
            assert ("forward", "x", f"I{i}") in e, "the input synthesizer predicts from the data"
            assert ("input", f"I{i}", f"f{i}") in e
            assert ("input_target", f"f{i - 1}", f"I{i}") in e, "its target: what the block below computed"
            assert not {k for k, a, b in e if (a, b) == (f"f{i - 1}", f"f{i}")}, "no forward edge joins two blocks"
        for i in range(1, layers):
            assert ("context", "y", f"M{i}") in e and ("forward", f"f{i}", f"M{i}") in e
    forward_into_inputs = {(a, b) for k, a, b in edges("full_unlock") if k in ("forward", "unlocked") and b.startswith("I")}
    assert forward_into_inputs == {("x", "I2"), ("x", "I3")}, "the target is not drawn as a forward edge"


def test_the_pipelines_late_gradients_train_the_synthesizers_after_a_delay():
    for stages in (3, 4):
        fig = diagrams.pipeline(stages)
        e = set(diagrams.edges(fig))
        for k in range(stages - 1):
            down = {(kind, b) for kind, a, b in e if a == f"stage {k + 1}" and kind in ("true", "synthetic")}
            assert down == {("true" if k == stages - 2 else "synthetic", f"M{k}")}, "late gradients end at M_k"
            assert ("synthetic", f"M{k}", f"stage {k}") in e and ("context", "y", f"M{k}") in e
        delays = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "delay"]
        assert len(delays) == stages - 1 and all("later" in t.get_text() for t in delays)


def test_recurrent_synthesizer_reads_the_boundary_state_and_learns_from_the_next_window():
    fig = diagrams.recurrent(windows=3, window=3)
    e = set(diagrams.edges(fig))
    for w in range(3):
        assert ("forward", f"s{w}.end", f"M{w}") in e and ("synthetic", f"M{w}", f"s{w}.end") in e
    for w in range(2):
        assert ("true", f"s{w + 1}.0", f"M{w}") in e, "the gradient at the next window's start"
        assert ("synthetic", f"M{w + 1}", f"M{w}") in e, "plus its own (discounted) prediction at the next cut"
        assert ("unlocked", f"s{w}.end", f"s{w + 1}.0") in e and ("true", f"s{w + 1}.0", f"s{w}.end") not in e
    cross = [p for ax in fig.axes for p in ax.patches if getattr(p, "ends", None) == ("s0.end", "s1.0")][0]
    legend = [line for ax in fig.axes for line in ax.lines if line.get_gid() == "legend:unlocked"][0]
    dashes = cross._unscaled_dash_pattern
    assert dashes[1] and dashes == legend._unscaled_dash_pattern, "drawn as the legend draws it: dashed"


def test_dgl_heads_read_the_label_and_nothing_comes_down_between_blocks():
    e = edges("dgl")
    assert {("context", "y", "head1"), ("context", "y", "head2"), ("true", "head1", "f1")} <= e
    assert not [edge for edge in e if edge[1].startswith("f") and edge[2].startswith("f") and edge[0] != "unlocked"]


def test_the_synthetic_loss_learns_from_values_and_the_critic_from_slopes_too():
    loss, critic = edges("synthetic_loss"), edges("critic")
    for i in (1, 2):
        assert ("context", f"f{i + 1}", f"M{i}") in loss and ("context", f"f{i + 1}", f"M{i}") in critic, "loss values"
        assert ("context", "y", f"M{i}") in loss and ("synthetic", f"M{i}", f"f{i}") in loss
    assert ("true", "f3", "M2") in critic and ("synthetic", "f2", "M1") in critic, "the critic fits slopes too"
    assert not {k for k, a, b in loss if k in ("true", "synthetic") and b.startswith("M")}, "values only"
