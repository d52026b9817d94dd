"""Synthetic loss and critics: zero init, the gradient a block receives, Sobolev terms, targets, learning."""
import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import config, critics, models, training
from helpers.config import RunSize


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def randomise(loss_models, std=0.05):
    for m in loss_models:
        for p in m.parameters():
            torch.nn.init.normal_(p, std=std)


@pytest.mark.parametrize("hidden_layers", [0, 1, 2])
def test_fresh_loss_model_predicts_zero_loss_and_zero_gradient(hidden_layers):
    torch.manual_seed(0)
    m = critics.LossModel(32, 10, hidden_layers, hidden=16)
    h, y = torch.randn(8, 32), F.one_hot(torch.arange(8), 10).float()
    value, gradient = critics.value_and_gradient(m, h, y)
    assert value.shape == (8,) and gradient.shape == (8, 32)
    assert torch.count_nonzero(value) == 0 and torch.count_nonzero(gradient) == 0


@pytest.mark.parametrize("learner_class", [critics.SyntheticLoss, critics.Critic])
def test_first_step_moves_only_the_output_layer(learner_class):
    config.seed_everything(0)
    model = models.fcn(4)
    before = copy.deepcopy(model)
    learner = learner_class(model, 1e-3)
    learner.step(*batch())
    for i in range(3):   # fresh loss models: exactly zero gradient, so Adam leaves the hidden blocks alone
        for p, q in zip(model[i].parameters(), before[i].parameters()):
            assert torch.equal(p, q), f"hidden block {i} moved"
    assert not torch.equal(model[3][0].weight, before[3][0].weight)
    assert any(torch.count_nonzero(p) for m in learner.loss_models for p in m.parameters()), "loss models learned"


@pytest.mark.parametrize("hidden_layers", [0, 1])
def test_each_block_receives_the_gradient_of_its_loss_model(hidden_layers):
    config.seed_everything(1)
    model = models.fcn(4)
    learner = critics.Critic(model, 0.1, hidden_layers=hidden_layers, hidden=32, optimizer=torch.optim.SGD)
    randomise(learner.loss_models)
    before, loss_models = copy.deepcopy(model), copy.deepcopy(learner.loss_models)
    x, y = batch()
    onehot = F.one_hot(y, 10).float()
    expected, h = [], x
    for i in range(3):
        h_in = h.detach()
        h = before[i](h_in)
        mean_predicted_loss = loss_models[i](h, onehot).mean()   # the block descends the predicted batch loss
        expected.append(torch.autograd.grad(mean_predicted_loss, list(before[i].parameters())))
    learner.step(x, y)
    for i in range(3):
        for p, p0, g in zip(model[i].parameters(), before[i].parameters(), expected[i]):
            assert g.abs().max() > 0
            torch.testing.assert_close(p0 - p, 0.1 * g, atol=1e-6, rtol=1e-4, msg=f"block {i}")


def test_sobolev_loss_has_a_value_term_and_a_gradient_term():
    value, gradient = torch.tensor([1.0, 2.0]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, v, g = critics.sobolev_loss(value, gradient, value + 1, gradient)
    assert v.item() == pytest.approx(1.0) and g.item() == 0
    _, v, g = critics.sobolev_loss(value, gradient, value, gradient + 1)
    assert v.item() == 0 and g.item() == pytest.approx(2.0)   # squared norm per example, mean over examples
    total, v, g = critics.sobolev_loss(value, gradient, value + 1, gradient + 1, value_weight=0.5, gradient_weight=3)
    assert total.item() == pytest.approx(0.5 * 1.0 + 3 * 2.0)


def test_sobolev_training_fits_the_slope_that_values_alone_leave_free():
    """Fit L̂(h) to f(h) = |h|² / 2 + a·h from 4 points in 16 dimensions: values alone fit the points but
    not the slope; values and gradients fit both (Czarnecki et al. 2017, Sobolev training, figure 1)."""
    torch.manual_seed(0)
    a = torch.randn(16)
    h = torch.randn(4, 16)
    y = torch.zeros(4, 10)
    f, df = 0.5 * h.pow(2).sum(1) + h @ a, h + a
    cosines = {}
    for name, gradient_weight in [("values", 0.0), ("sobolev", 1.0)]:
        m = critics.LossModel(16, 10, hidden_layers=0)
        optimizer = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(1500):
            value, gradient = critics.value_and_gradient(m, h, y, create_graph=True)
            loss, v, _ = critics.sobolev_loss(value, gradient, f, df, gradient_weight=gradient_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert v.item() < 1e-2 * f.pow(2).mean().item(), f"{name}: the values are fitted"
        cosines[name] = F.cosine_similarity(critics.value_and_gradient(m, h, y)[1], df, dim=1).mean().item()
    assert cosines["sobolev"] > 0.99
    assert cosines["values"] < cosines["sobolev"] - 0.1


def test_targets_are_true_on_top_and_bootstrapped_below(monkeypatch):
    config.seed_everything(2)
    model = models.fcn(4)
    learner = critics.Critic(model, 1e-3)
    randomise(learner.loss_models)
    before, loss_models = copy.deepcopy(model), copy.deepcopy(learner.loss_models)
    captured = []
    original = critics.sobolev_loss
    monkeypatch.setattr(critics, "sobolev_loss", lambda *args, **kw: captured.append(args[2:4]) or original(*args, **kw))
    x, y = batch()
    learner.step(x, y)
    onehot, n = F.one_hot(y, 10).float(), x.shape[0]
    hs, h = [], x
    for block in list(before)[:-1]:
        h = block(h)
        hs.append(h)
    top = hs[-1].detach().requires_grad_()
    per_example = F.cross_entropy(before[-1](top), y, reduction="none")
    true_top = torch.autograd.grad(per_example.mean(), top)[0] * n
    torch.testing.assert_close(captured[-1][0], per_example.detach())
    torch.testing.assert_close(captured[-1][1], true_top)
    for i in range(2):
        h_i = hs[i].detach().requires_grad_()
        out = before[i + 1](h_i)
        value_above, gradient_above = critics.value_and_gradient(loss_models[i + 1], out, onehot)
        bootstrapped = torch.autograd.grad(out, h_i, grad_outputs=gradient_above)[0]
        torch.testing.assert_close(captured[i][0], value_above.detach(), msg=f"value target of block {i}")
        torch.testing.assert_close(captured[i][1], bootstrapped, msg=f"gradient target of block {i}")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="hidden_layers"):
        critics.LossModel(16, 10, 3)
    with pytest.raises(ValueError, match="one-hot"):
        critics.LossModel(16, 10)(torch.randn(4, 16), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="gradient_weight"):
        critics.Critic(models.fcn(3), 1e-3, gradient_weight=0)


TINY = RunSize("test", iterations=60, lr=1e-3, batch_size=64, eval_every=20)


def train(learner_class, dataset, seed=0):
    config.seed_everything(seed)
    learner = learner_class(models.fcn(3), TINY.lr)
    return learner, training.train(learner, dataset, TINY, seed=seed, progress=False)


def test_critic_learns_and_its_gradient_points_the_right_way(mnist_small):
    learner, history = train(critics.Critic, mnist_small)
    assert learner.method == "critic" and history.test_accuracy[-1] > 0.6
    for i in range(2):
        assert len(history.extra[f"cos_batch/{i}"]) == 3
    assert history.extra["cos_batch/1"][-1] > 0.2
    predicted, true = learner.predicted_loss(mnist_small.x_test[:200], mnist_small.y_test[:200])
    assert predicted.shape == true.shape == (200,)
    assert torch.corrcoef(torch.stack([predicted, true]))[0, 1] > 0.3   # it predicts which examples are hard


@pytest.mark.parametrize("learner_class", [critics.SyntheticLoss, critics.Critic])
def test_only_the_critic_learns_from_gradient_targets(learner_class, monkeypatch):
    x, y = batch()
    trained, original = [], critics.sobolev_loss
    for scramble in (False, True):
        config.seed_everything(3)
        learner = learner_class(models.fcn(3), 1e-3)
        randomise(learner.loss_models)

        def patched(value, gradient, value_target, gradient_target, *args, **kw):
            if scramble:   # replace the gradient targets by something else entirely
                gradient_target = torch.randn_like(gradient_target)
            return original(value, gradient, value_target, gradient_target, *args, **kw)
        monkeypatch.setattr(critics, "sobolev_loss", patched)
        learner.step(x, y)
        trained.append([p.detach().clone() for m in learner.loss_models for p in m.parameters()])
    same = all(torch.equal(p, q) for p, q in zip(*trained))
    assert same == (learner_class is critics.SyntheticLoss)


def test_synthetic_loss_runs_and_measuring_changes_nothing(mnist_small):
    learner, history = train(critics.SyntheticLoss, mnist_small)
    assert learner.method == "synthetic_loss" and 0 <= history.test_accuracy[-1] <= 1
    assert len(history.extra["cos_batch/0"]) == 3 and len(history.extra["value_rmse/1"]) == 3
    state = copy.deepcopy(learner.model.state_dict())
    learner.measure(mnist_small.x_train[:64], mnist_small.y_train[:64])
    assert all(torch.equal(state[k], v) for k, v in learner.model.state_dict().items())
