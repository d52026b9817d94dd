"""Stochastic and multi-rate updates: p = 1 is the plain learner, p = 0 changes nothing, the gates count."""
import copy

import pytest
import torch

from helpers import update_rates, dni, models, training
from helpers.config import RunSize


def batches(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, 1, 28, 28, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def parameters(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def run(learner, data):
    for x, y in data:
        learner.step(x, y)
    return parameters(learner.model)


def test_p_one_is_plain_backprop():
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    plain = run(training.Backprop(copy.deepcopy(model), 1e-3), batches())
    stochastic = run(update_rates.StochasticBackprop(copy.deepcopy(model), 1e-3, p=1.0), batches())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, stochastic))


@pytest.mark.parametrize("conditioned", [False, True])
def test_p_one_is_plain_dni(conditioned):
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    plain = dni.DNI(copy.deepcopy(model), 1e-3, conditioned=conditioned)
    stochastic = update_rates.StochasticDNI(copy.deepcopy(model), 1e-3, p=1.0, conditioned=conditioned)
    assert same(run(plain, batches()), run(stochastic, batches()))
    assert same(parameters(plain.synthesizers[0]), parameters(stochastic.synthesizers[0]))


def test_p_zero_changes_no_weight():
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    before = parameters(model)
    learner = update_rates.StochasticDNI(model, 1e-2, p=0.0, conditioned=True)
    run(learner, batches())
    assert same(before, parameters(model))
    assert all(torch.count_nonzero(p) == 0 for p in learner.synthesizers[0].net[-1].parameters())


def test_each_block_updates_about_p_of_the_steps_and_skipped_blocks_stay_put():
    torch.manual_seed(0)
    learner = update_rates.StochasticBackprop(models.fcn(3, hidden=16), 1e-2, p=0.3, seed=1)
    data = batches(1, size=16)
    for _ in range(400):
        before = [parameters(block) for block in learner.model]
        learner.step(*data[0])
        opened = [gate.open for gate in learner.gates]
        moved = [not same(b, parameters(block)) for b, block in zip(before, learner.model)]
        assert moved == opened, "a block moves exactly when its coin says so"
    fractions = [u / 400 for u in learner.update_fraction()]
    assert all(0.23 < f < 0.37 for f in fractions), fractions


def test_multirate_updates_the_lower_network_every_k_steps():
    torch.manual_seed(0)
    model = models.fcn(4, hidden=32)
    learner = update_rates.MultiRate(model, 1e-3, cut=2, every=3)
    lower = [model[0], model[1]]
    history = []
    for x, y in batches(6):
        before = parameters(torch.nn.ModuleList(lower))
        learner.step(x, y)
        history.append(not same(before, parameters(torch.nn.ModuleList(lower))))
    assert history == [False, False, True, False, False, True]
    assert learner.block_optimizers[0].updates == 2


def test_multirate_with_k_one_is_dni_cut_in_two():
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    reference = copy.deepcopy(model)
    plain = dni.DNI(torch.nn.Sequential(reference[0], torch.nn.Sequential(reference[1], reference[2])), 1e-3,
                    conditioned=True)
    multi = update_rates.MultiRate(model, 1e-3, cut=1, every=1)
    assert same(run(plain, batches()), run(multi, batches()))


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="probability"):
        update_rates.StochasticBackprop(models.fcn(3, hidden=8), 1e-3, p=1.5)
    with pytest.raises(ValueError, match="cut"):
        update_rates.MultiRate(models.fcn(3, hidden=8), 1e-3, cut=3)


def test_stochastic_cdni_learns(mnist_small):
    torch.manual_seed(0)
    learner = update_rates.StochasticDNI(models.fcn(3, hidden=64), 1e-3, p=0.5, conditioned=True)
    size = RunSize("test", iterations=150, lr=1e-3, batch_size=64, eval_every=150)
    history = training.train(learner, mnist_small, size, progress=False)
    assert history.final_test_accuracy > 0.6
