"""The playground of notebook 03b: its DNI step is DNI's, each switch does what it says, the runs are
reproducible, the panels are drawn from numbers, and the widget's controls act on the run."""
import copy
import time

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from helpers import dni
from helpers import playground as pg
from helpers.probe import hidden_outputs
from helpers.update_rates import StochasticDNI


def batch(n=16, seed=0):
    x, y = pg.spirals(n=40, seed=seed)
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[index], y[index]


def trained_synthesizers(learner, seed=0):
    """Give every synthesizer random weights, as if trained, so that targets and updates are not zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in learner.synthesizers:
            for p in s.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("conditioned", [False, True])
def test_with_the_defaults_the_step_is_dnis_number_for_number(conditioned):
    torch.manual_seed(0)
    model = pg.network(16)
    ours = pg.PlaygroundDNI(copy.deepcopy(model), 1e-2, conditioned=conditioned, num_classes=3, hidden=16)
    theirs = StochasticDNI(copy.deepcopy(model), 1e-2, conditioned=conditioned, num_classes=3, hidden=16)
    trained_synthesizers(ours)
    trained_synthesizers(theirs)
    for k in range(3):
        x, y = batch(seed=k)
        ours.step(x, y)
        theirs.step(x, y)
    for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
        assert torch.equal(a, b)
    for s, t in zip(ours.synthesizers, theirs.synthesizers):
        assert all(torch.equal(a, b) for a, b in zip(s.parameters(), t.parameters()))


def captured_targets(monkeypatch, learner, x, y):
    seen = []
    real = dni.regression_loss
    monkeypatch.setattr(dni, "regression_loss", lambda p, t: seen.append((p.detach(), t.detach())) or real(p, t))
    model = copy.deepcopy(learner.model)
    hs, logits = hidden_outputs(model, x)
    true = torch.autograd.grad(F.cross_entropy(logits, y), hs)
    learner.step(x, y)
    return seen, true, model


@pytest.mark.parametrize("per_example", [True, False])
def test_targets_true_gradient_at_the_top_bootstrapped_below(monkeypatch, per_example):
    torch.manual_seed(0)
    learner = pg.PlaygroundDNI(pg.network(16), 1e-2, conditioned=True, num_classes=3, per_example=per_example)
    trained_synthesizers(learner)
    x, y = batch()
    factor = len(x) if per_example else 1
    seen, true, model = captured_targets(monkeypatch, learner, x, y)
    (p0, t0), (p1, t1) = seen
    assert torch.allclose(t1, factor * true[1], atol=1e-6), "top: the true gradient, per example x B"
    h0 = model[0](x).detach().requires_grad_()
    bootstrapped = torch.autograd.grad(model[1](h0), h0, p1 / factor)[0] * factor
    assert torch.allclose(t0, bootstrapped, atol=1e-6), "below: the synthetic gradient above, through block 1"
    assert not torch.allclose(t0, factor * true[0], atol=1e-3), "below is not the true gradient"


def test_without_bootstrapping_every_block_regresses_onto_its_true_gradient(monkeypatch):
    torch.manual_seed(0)
    learner = pg.PlaygroundDNI(pg.network(16), 1e-2, conditioned=True, num_classes=3, bootstrap=False)
    trained_synthesizers(learner)
    x, y = batch()
    seen, true, _ = captured_targets(monkeypatch, learner, x, y)
    for (_, target), g in zip(seen, true):
        assert torch.allclose(target, len(x) * g, atol=1e-6)


def test_with_an_oracle_and_sgd_a_step_is_a_backprop_step():
    """Zero initialisation aside, this checks the whole interface: cuts, the x B / (/ B) pair, targets."""
    runs = {m: pg.train(pg.Settings(method=m, optimizer="sgd", lr=0.3), 40) for m in ("oracle", "backprop")}
    a, b = runs["oracle"], runs["backprop"]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    assert min(a.record.cosine[-1]) > 0.9999


def test_a_fresh_synthesizer_leaves_the_blocks_alone_and_a_random_bias_does_not():
    moved = {}
    for random_bias in (False, True):
        run = pg.Run(pg.Settings(method="cdni", random_bias=random_bias))
        before = [p.detach().clone() for p in run.model[:-1].parameters()]
        run.advance(1)
        moved[random_bias] = max((p - q).abs().max().item() for p, q in zip(run.model[:-1].parameters(), before))
    assert moved[False] == 0.0 and moved[True] > 1e-4, moved


def test_shuffled_labels_reach_the_synthesizers_and_nothing_else(monkeypatch):
    learner = pg.PlaygroundDNI(pg.network(16), 1e-2, conditioned=True, num_classes=3, shuffle_labels=True)
    x, y = batch(n=32)
    asked = []
    real = learner.context
    learner.context = lambda labels: asked.append(labels.clone()) or real(labels)
    loss, _ = learner.step(x, y)
    assert sorted(asked[0].tolist()) == sorted(y.tolist()) and not torch.equal(asked[0], y)
    assert torch.isclose(loss, F.cross_entropy(learner.model(x), y), atol=0.5)   # the loss still uses y


def test_the_same_seed_gives_the_same_run_and_another_seed_another():
    a, b, c = (pg.train(pg.Settings(method="dni", seed=s), 30) for s in (0, 0, 1))
    assert a.record.loss == b.record.loss and a.record.cosine == b.record.cosine
    assert a.record.loss != c.record.loss


def test_live_knobs_act_on_the_next_steps():
    run = pg.Run(pg.Settings(method="cdni"))
    run.advance(20)
    run.set(lr=0.05, p=0.0)
    assert all(g["lr"] == 0.05 for o in run.learner.optimizers for g in o.param_groups)
    before = [p.detach().clone() for p in run.model.parameters()]
    run.advance(5)
    assert all(torch.equal(p, q) for p, q in zip(run.model.parameters(), before)), "p = 0: no block updates"
    with pytest.raises(ValueError, match="define a run"):
        run.set(method="dni")


def test_batchnorm_couples_the_bootstrapped_targets_of_a_batch():
    assert pg.bootstrap_coupling(batchnorm=False) == 0.0
    assert pg.bootstrap_coupling(batchnorm=True) > 1e-3


def test_panels_are_drawn_from_a_snapshot():
    earlier = pg.train(pg.Settings(method="backprop"), 20)
    run = pg.train(pg.Settings(method="cdni"), 30)
    fig = pg.plot_panels(run.snapshot(block=0), previous=[earlier.record], size="smoke")
    decision, curves, cosines, scatter, twin = fig.axes
    assert "cdni, step 30" in decision.get_title() and "smoke" in curves.get_title()
    assert [line.get_label() for line in curves.lines] == ["backprop (earlier)", "cdni"]
    assert len(cosines.lines) == 2 + 2 + 1     # gradient and update cosine of two blocks, and the zero line
    assert scatter.get_title().startswith("block 0: synthetic vs true, cosine")
    assert list(cosines.lines[0].get_ydata()) == [c[0] for c in run.record.cosine]
    assert list(cosines.lines[2].get_ydata()) == [u[0] for u in run.record.update]
    plt.close(fig)
    fig = pg.plot_panels(earlier.snapshot())
    assert "no synthesizer" in fig.axes[3].get_title()
    plt.close(fig)


def test_the_update_panel_is_the_series_diagnostic_backprop_scoring_one():
    backprop = pg.train(pg.Settings(method="backprop"), 20)
    assert all(u == [1.0, 1.0] for u in backprop.record.update), "backprop's update is backprop's"
    frozen = pg.train(pg.Settings(method="nobackprop"), 20)
    assert all(u == [0.0, 0.0] for u in frozen.record.update), "no backprop moves no hidden block"
    cdni = pg.train(pg.Settings(method="cdni"), 30)
    x, y = cdni.last
    assert cdni.record.update[-1] != [1.0, 1.0] and -1 <= min(cdni.record.update[-1]) <= 1
    before = [p.detach().clone() for p in cdni.model.parameters()]
    pg.update_cosines(cdni.learner, x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, cdni.model.parameters())), "measured on copies"


def test_the_widget_steps_restarts_and_plays():
    playground = pg.Playground(pg.Settings(method="cdni"), size="smoke", frame_seconds=0.05)
    first = playground.image.value
    playground.run(20)
    assert playground.status.value.startswith("step 20 · cdni") and playground.image.value != first
    playground.method.value = "nobackprop"                       # a new run from the same start
    assert playground.run_.steps == 0 and playground.previous[-1].method == "cdni"
    playground.run(20)
    assert playground.compare.value.startswith("earlier run (cdni) at step 20")
    playground.lr.value = 0.05                                   # a live knob: same run, new learning rate
    assert playground.run_.steps == 20
    assert all(g["lr"] == 0.05 for o in playground.run_.learner.optimizers for g in o.param_groups)
    playground.start()
    time.sleep(1.0)
    playground.stop()
    assert playground.run_.steps > 20 and not playground.thread.is_alive()
    playground.reset.click()
    assert playground.run_.steps == 0 and playground.previous[-1].method == "nobackprop"
