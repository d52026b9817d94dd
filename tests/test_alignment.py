"""Update alignment and the gradient cosine's baselines (helpers/probe.py): the measurement is exact where the
answer is known and never changes the learner or the run it measures.

`update_alignment` compares the update a learner applies with backprop's from the same parameters and the same
optimizer state, so: backprop itself gives (1, 1) to the bit; a DNI whose synthesizers are oracles (the exact
gradient) gives cosine 1 under Adam with a trained state, which a comparison against a *fresh* optimizer would
not; a synthetic gradient scaled by 0.5 under SGD gives ratio 0.5; nobackprop's hidden blocks do not move.
"""
import torch
import torch.nn.functional as F
import pytest

from helpers import config, dni, learners, models, probe, training
from helpers.config import RunSize


class Oracle(torch.nn.Module):
    """The exact per-example dL/dh from running the rest of the network (as in tests/test_dni.py). The network
    is held in a plain list, so a deep copy of the learner gives the oracle the copied network, not the original."""

    def __init__(self, model, block):
        super().__init__()
        self.network, self.block = [model], block

    def forward(self, h, context):
        h = h.detach().requires_grad_()
        loss = F.cross_entropy(self.network[0][self.block + 1:](h), context.argmax(1))
        return torch.autograd.grad(loss, h)[0] * h.shape[0]


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def trained(method, steps=5, layers=3, **options):
    """A learner after a few steps, so that its optimizer state (Adam's moments) is not trivial."""
    config.seed_everything(0)
    learner = learners.make(method, models.fcn(layers, hidden=32), 1e-3, **options)
    for step in range(steps):
        learner.step(*batch(seed=step + 1))
    return learner


def test_backprop_agrees_with_itself_exactly():
    metrics = probe.update_alignment(trained("backprop", layers=4), *batch())
    assert metrics == {f"upd{name}/{i}": 1.0 for i in range(3) for name in ("_cos", "_ratio", "_step_cos")}


def test_both_steps_draw_the_same_random_numbers():
    """With dropout in a block, backprop agrees with itself only if both steps start from one random state,
    and the real run's random stream must go on as if nothing had been measured."""
    config.seed_everything(0)
    model = models.fcn(3, hidden=32)
    model[0].append(torch.nn.Dropout(0.5))
    learner = learners.make("backprop", model, 1e-3)
    learner.step(*batch(seed=1))
    state = torch.get_rng_state()
    metrics = probe.update_alignment(learner, *batch())
    assert torch.equal(torch.get_rng_state(), state)
    assert metrics["upd_cos/0"] == 1.0 and metrics["upd_ratio/0"] == 1.0


def test_an_oracle_dni_gives_backprops_update_from_the_same_adam_state():
    config.seed_everything(0)
    model = models.fcn(3, hidden=32)
    learner = dni.DNI(model, 1e-3, conditioned=True, synthesizers=[Oracle(model, i) for i in range(2)])
    for step in range(5):
        learner.step(*batch(seed=step + 1))
    metrics = probe.update_alignment(learner, *batch())
    for i in range(2):
        assert metrics[f"upd_cos/{i}"] == pytest.approx(1, abs=1e-5)
        assert metrics[f"upd_ratio/{i}"] == pytest.approx(1, abs=1e-5)


def test_the_ratio_is_the_size_of_the_update_against_backprops():
    """An oracle scaled by 0.5 under SGD moves each block by half of backprop's step, in the same direction."""
    config.seed_everything(0)
    model = models.fcn(3, hidden=32)
    learner = dni.DNI(model, 0.1, conditioned=True, scale=0.5, optimizer=torch.optim.SGD,
                      synthesizers=[Oracle(model, i) for i in range(2)])
    metrics = probe.update_alignment(learner, *batch())
    for i in range(2):
        assert metrics[f"upd_cos/{i}"] == pytest.approx(1, abs=1e-5)
        assert metrics[f"upd_ratio/{i}"] == pytest.approx(0.5, abs=1e-5)


def test_nobackprop_does_not_move_its_hidden_blocks():
    metrics = probe.update_alignment(trained("nobackprop"), *batch())
    assert metrics == {f"upd{name}/{i}": 0.0 for i in range(2) for name in ("_cos", "_ratio", "_step_cos")}


def test_a_learned_synthetic_gradient_is_partly_aligned():
    metrics = probe.update_alignment(trained("cdni", steps=20), *batch())
    assert all(0 < metrics[f"upd_cos/{i}"] < 0.999 for i in range(2)), metrics


def test_the_step_cosine_sets_the_shared_momentum_aside():
    """`upd_cos` under Adam is mostly the first moment both updates share; `upd_step_cos` must not depend on it
    at all (here: the momentum scaled by 10 changes the one and leaves the other exactly as it was), and it
    must not leave the real learner's momentum zeroed."""
    learner = trained("cdni", steps=20)
    before = probe.update_alignment(learner, *batch())
    for optimizer in learner.optimizers:
        for state in optimizer.state.values():
            state["exp_avg"].mul_(10)
    after = probe.update_alignment(learner, *batch())
    assert all(after[f"upd_step_cos/{i}"] == before[f"upd_step_cos/{i}"] for i in range(2)), (before, after)
    assert any(abs(after[f"upd_cos/{i}"] - before[f"upd_cos/{i}"]) > 1e-3 for i in range(2)), (before, after)
    assert all(before[f"upd_step_cos/{i}"] < before[f"upd_cos/{i}"] for i in range(2)), before
    assert all(state["exp_avg"].abs().sum() > 0 for o in learner.optimizers for state in o.state.values())


def everything(learner):
    """Every tensor a learner holds that a step could change: parameters and buffers (BatchNorm statistics)
    of every module it owns, and its optimizers' state; plus the torch random state."""
    found = {"rng": torch.get_rng_state()}
    owned = ("synthesizers", "loss_models", "heads")
    modules = [learner.model] + [m for name in owned for m in getattr(learner, name, [])]
    modules += [m for u in getattr(learner, "units", []) for m in u.modules]
    for k, module in enumerate(modules):
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            found[f"module{k}.{name}"] = t.detach().clone()
    for k, optimizer in enumerate(learner.optimizers):
        optimizer = getattr(optimizer, "optimizer", optimizer)
        for j, state in enumerate(optimizer.state.values()):
            for name, t in state.items():
                found[f"optimizer{k}.{j}.{name}"] = t.clone() if torch.is_tensor(t) else t
    return found


@pytest.mark.parametrize("method", ["backprop", "nobackprop", "dni", "cdni", "synthetic_loss", "critic", "fa",
                                    "dfa", "full_unlock", "dgl", "dgl_buffer", "stochastic_cdni"])
def test_measuring_leaves_the_learner_and_the_random_state_as_they_were(method):
    learner = trained(method)
    before = everything(learner)
    metrics = probe.update_metrics(learner, *batch())
    after = everything(learner)
    assert {"upd_cos/0", "upd_ratio/1", "mean_cos_batch/1", "shuffled_cos_example/0"} <= set(metrics)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(torch.as_tensor(before[k]), torch.as_tensor(after[k]))]
    assert not changed, changed


def test_recording_it_during_training_changes_no_other_number(mnist_small):
    size = RunSize("probe", iterations=20, lr=1e-3, batch_size=32, eval_every=10)

    def run(probe_update):
        config.seed_everything(0)
        learner = learners.make("cdni", models.fcn(3, hidden=16), size.lr)
        history = training.train(learner, mnist_small, size, progress=False, probe_update=probe_update)
        return history, [p.detach().clone() for p in learners.parameters(learner)], torch.rand(3)

    (plain, weights, after), (probed, probed_weights, probed_after) = run(False), run(True)
    for field in ("train_loss", "train_accuracy", "test_accuracy"):
        assert getattr(plain, field) == getattr(probed, field), field
    assert {k: v for k, v in probed.extra.items() if k in plain.extra} == plain.extra
    assert len(probed.extra["upd_cos/0"]) == 2 and "shuffled_cos_batch/1" in probed.extra
    assert all(torch.equal(a, b) for a, b in zip(weights, probed_weights))
    assert torch.equal(after, probed_after), "the random stream goes on as without the probe"


def test_a_constant_predictor_scores_what_the_batch_mean_explains():
    """The batch-mean baseline is 1 when every example has the same gradient and sqrt(N)|mean| / |G| in
    general; it is exactly 0 when the gradients cancel over the batch."""
    same = torch.randn(1, 5).expand(8, 5)
    assert probe.batch_mean_baseline([same])["cos_batch/0"] == pytest.approx(1)
    g = torch.randn(8, 5, generator=torch.Generator().manual_seed(0)) + 1
    expected = (8 ** 0.5 * g.mean(0).norm() / g.norm()).item()
    assert probe.batch_mean_baseline([g])["cos_batch/0"] == pytest.approx(expected)
    assert probe.batch_mean_baseline([g - g.mean(0)])["cos_batch/0"] == pytest.approx(0, abs=1e-6)


def test_the_shuffled_baseline_never_gives_an_example_its_own_gradient():
    """With orthogonal per-example gradients, any example that kept its own would raise the cosine above 0."""
    orthogonal = torch.eye(6)
    for seed in range(30):
        metrics = probe.shuffled_baseline([orthogonal, 2 * orthogonal], torch.Generator().manual_seed(seed))
        assert metrics["cos_batch/0"] == 0 and metrics["cos_example/1"] == 0
    same = torch.randn(1, 5).expand(8, 5)
    assert probe.shuffled_baseline([same], torch.Generator().manual_seed(0))["cos_batch/0"] == pytest.approx(1)
