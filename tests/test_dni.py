"""The correctness of synthetic gradients: targets, zero init, detach boundaries, oracle = backprop."""
import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import config, dni, models, training
from helpers.config import RunSize
from helpers.synthesizers import GradientSynthesizer


class Oracle(torch.nn.Module):
    """A "synthesizer" that returns the exact per-example dL/dh, by running the rest of the network."""

    def __init__(self, model, block):
        super().__init__()
        self.rest = lambda h: model[block + 1:](h)

    def forward(self, h, context):
        h = h.detach().requires_grad_()
        loss = F.cross_entropy(self.rest(h), context.argmax(1))
        return torch.autograd.grad(loss, h)[0] * h.shape[0]


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("layers", [3, 5])
def test_oracle_synthesizer_reproduces_a_backprop_step(layers):
    config.seed_everything(0)
    decoupled = models.fcn(layers)
    reference = copy.deepcopy(decoupled)
    initial = copy.deepcopy(decoupled)
    x, y = batch()
    oracles = [Oracle(decoupled, i) for i in range(layers - 1)]
    dni.DNI(decoupled, 0.1, synthesizers=oracles, conditioned=True, optimizer=torch.optim.SGD).step(x, y)
    training.Backprop(reference, 0.1, optimizer=torch.optim.SGD).step(x, y)
    for i, (a, b, before) in enumerate(zip(decoupled, reference, initial)):
        for (name, p), q, p0 in zip(a.named_parameters(), b.parameters(), before.parameters()):
            assert not torch.equal(p, p0), f"block {i} {name} did not move"
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=f"block {i} {name}")


def test_fresh_synthesizer_outputs_exactly_zero():
    for hidden_layers in (0, 1, 2):
        s = GradientSynthesizer(256, hidden_layers, hidden=64)
        assert torch.count_nonzero(s(torch.randn(16, 256))) == 0
        assert torch.count_nonzero(s.net[-1].weight) == 0 and torch.count_nonzero(s.net[-1].bias) == 0


@pytest.mark.parametrize("hidden_layers", [0, 1])
def test_synthesizer_learns_a_fixed_linear_map(hidden_layers):
    torch.manual_seed(0)
    target_map = torch.randn(32, 32) / 32 ** 0.5
    s = GradientSynthesizer(32, hidden_layers, hidden=128)
    optimizer = torch.optim.Adam(s.parameters(), lr=3e-3)
    losses = []
    for _ in range(1500):
        h = torch.randn(128, 32)
        loss = F.mse_loss(s(h), h @ target_map)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 100


def test_targets_are_the_true_gradient_on_top_and_bootstrapped_below():
    config.seed_everything(1)
    model = models.fcn(4)
    learner = dni.DNI(model, 1e-3, conditioned=True)
    for s in learner.synthesizers:  # non-zero synthesizers, so that the bootstrap is not trivially zero
        torch.nn.init.normal_(s.net[-1].weight, std=0.1)
    before = copy.deepcopy(model)
    synth_before = copy.deepcopy(learner.synthesizers)
    x, y = batch()
    captured = []
    original = F.mse_loss
    F_mse = lambda prediction, target: captured.append(target) or original(prediction, target)  # noqa: E731
    dni.F.mse_loss = F_mse
    try:
        learner.step(x, y)
    finally:
        dni.F.mse_loss = original
    context = F.one_hot(y, 10).float()
    hs, h = [], x
    for block in list(before)[:-1]:
        h = block(h)
        hs.append(h)
    n = x.shape[0]
    # top: the true per-example gradient of the loss through the output layer
    top = hs[-1].detach().requires_grad_()
    true_top = torch.autograd.grad(F.cross_entropy(before[-1](top), y), top)[0] * n
    torch.testing.assert_close(captured[-1], true_top)
    # below: block i+1's synthetic gradient, backpropagated through block i+1 alone
    for i in range(len(hs) - 1):
        h_i = hs[i].detach().requires_grad_()
        out = before[i + 1](h_i)
        g_next = synth_before[i + 1](out.detach(), context)
        expected = torch.autograd.grad(out, h_i, grad_outputs=g_next)[0]
        torch.testing.assert_close(captured[i], expected, msg=f"bootstrapped target of block {i}")


def test_no_block_gets_gradient_from_another_blocks_loss():
    config.seed_everything(2)
    model = models.fcn(4)
    learner = dni.DNI(model, 1e-3)
    x, y = batch()
    seen = {}
    for i, block in enumerate(model):
        for p in block.parameters():
            p.register_hook(lambda grad, i=i: seen.setdefault(i, []).append(grad))
    learner.step(x, y)
    # each block's parameters received exactly one gradient: from its own backward call
    assert sorted(seen) == [0, 1, 2, 3]
    for i, block in enumerate(model):
        assert len(seen[i]) == len(list(block.parameters())), f"block {i} got gradients from elsewhere"
    for s in learner.synthesizers:  # synthesizer grads come from their own loss only, and stay off the blocks
        assert all(p.grad is not None for p in s.parameters())


def test_input_of_each_block_is_detached():
    config.seed_everything(3)
    model = models.fcn(3)
    learner = dni.DNI(model, 1e-3)
    x, y = batch()
    x.requires_grad_()
    learner.step(x, y)
    assert x.grad is None  # nothing flowed below the first block


def test_cdni_depends_on_the_label_and_dni_takes_none():
    torch.manual_seed(0)
    conditioned = GradientSynthesizer(16, 0, context_features=10)
    torch.nn.init.normal_(conditioned.net[-1].weight)
    h = torch.randn(4, 16)
    a = conditioned(h, F.one_hot(torch.tensor([0, 1, 2, 3]), 10).float())
    b = conditioned(h, F.one_hot(torch.tensor([4, 5, 6, 7]), 10).float())
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="conditioned"):
        conditioned(h)
    plain = GradientSynthesizer(16, 0)
    with pytest.raises(TypeError, match="not conditioned"):
        plain(h, F.one_hot(torch.tensor([0, 1, 2, 3]), 10).float())
    assert dni.DNI(models.fcn(3), 1e-3, conditioned=True).method == "cdni"
    assert dni.DNI(models.fcn(3), 1e-3).method == "dni"


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="hidden_layers"):
        GradientSynthesizer(16, 3)
    with pytest.raises(ValueError, match="shape"):
        GradientSynthesizer(16)(torch.randn(4, 8))
    with pytest.raises(ValueError, match="one synthesizer per hidden block"):
        dni.DNI(models.fcn(4), 1e-3, synthesizers=[GradientSynthesizer(256)])
    with pytest.raises(ValueError, match="scale"):
        dni.DNI(models.fcn(3), 1e-3, scale=0)


TINY = RunSize("test", iterations=60, lr=1e-3, batch_size=64, eval_every=20)


def train_dni(dataset, seed=0, **options):
    config.seed_everything(seed)
    learner = dni.DNI(models.fcn(3), TINY.lr, **options)
    return learner, training.train(learner, dataset, TINY, seed=seed, progress=False)


def test_dni_learns_and_measures_gradient_quality(mnist_small):
    learner, history = train_dni(mnist_small, conditioned=True)
    assert history.test_accuracy[-1] > 0.6
    for i in range(2):
        assert len(history.extra[f"cos_batch/{i}"]) == 3
        assert -1 <= history.extra[f"cos_example/{i}"][-1] <= 1
    assert history.extra["cos_batch/1"][-1] > 0.2  # the top synthesizer has learned something real
    assert len(learner.snapshots) == 3 and learner.snapshots[0][0][0].shape == (64, 256)


def test_measuring_does_not_change_learning(mnist_small):
    config.seed_everything(0)
    learner = dni.DNI(models.fcn(3), 1e-3)
    state = copy.deepcopy(learner.model.state_dict())
    learner.measure(mnist_small.x_train[:64], mnist_small.y_train[:64])
    after = learner.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_same_seed_gives_identical_dni_histories(mnist_small):
    _, a = train_dni(mnist_small, seed=4, conditioned=True)
    _, b = train_dni(mnist_small, seed=4, conditioned=True)
    assert a.train_loss == b.train_loss and a.extra == b.extra


def test_conv_synthesizer_starts_at_zero_with_the_right_shape_for_every_block():
    model = models.cnn(4, channels=8)
    learner = dni.DNI(model, 1e-3, hidden_layers=2, hidden=16, conditioned=True)
    x, y = batch(8)
    h = x
    for block, synthesizer in zip(list(model)[:-1], learner.synthesizers):
        h = block(h)
        prediction = synthesizer(h, F.one_hot(y, 10).float())
        assert prediction.shape == h.shape and torch.count_nonzero(prediction) == 0
    assert learner.synthesizers[0].net[0].in_channels == 8 + 10   # the label, broadcast as 10 extra planes


def test_conv_synthesizer_depends_on_the_label_and_checks_shapes():
    from helpers.synthesizers import ConvGradientSynthesizer
    torch.manual_seed(0)
    s = ConvGradientSynthesizer(4, hidden_layers=0, context_features=10)
    torch.nn.init.normal_(s.net[-1].weight)
    h = torch.randn(2, 4, 6, 6)
    a = s(h, F.one_hot(torch.tensor([0, 1]), 10).float())
    b = s(h, F.one_hot(torch.tensor([2, 3]), 10).float())
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="feature map"):
        s(torch.randn(2, 4), F.one_hot(torch.tensor([0, 1]), 10).float())
    with pytest.raises(TypeError, match="not conditioned"):
        ConvGradientSynthesizer(4)(h, F.one_hot(torch.tensor([0, 1]), 10).float())


def test_oracle_reproduces_a_backprop_step_for_a_conv_network():
    config.seed_everything(0)
    decoupled = models.cnn(3, channels=8)
    reference = copy.deepcopy(decoupled)
    x, y = batch(16)
    oracles = [Oracle(decoupled, i) for i in range(2)]
    dni.DNI(decoupled, 0.1, synthesizers=oracles, conditioned=True, optimizer=torch.optim.SGD).step(x, y)
    training.Backprop(reference, 0.1, optimizer=torch.optim.SGD).step(x, y)
    for a, b in zip(decoupled.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_cdni_trains_a_conv_network_step_by_step():
    config.seed_everything(0)
    learner = dni.DNI(models.cnn(3, channels=8), 1e-3, hidden_layers=0, conditioned=True)
    x, y = batch(32)
    losses = [learner.step(x, y)[0].item() for _ in range(30)]
    assert losses[-1] < losses[0]
    assert all(torch.count_nonzero(s.net[-1].weight) > 0 for s in learner.synthesizers)  # they learned
