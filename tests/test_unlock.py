"""The complete unlock: input synthesizers learn, each block's update is its own, concurrent = sequential."""
import copy
import time

import pytest
import torch
import torch.nn.functional as F

from helpers import config, models, training, unlock
from helpers.config import RunSize


def batches(n=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, 1, 28, 28, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def test_input_synthesizer_starts_random_per_example_and_learns():
    """An input synthesizer starts as a random function of x (a zero start gives every example the same
    input, which a BatchNorm block cannot normalise: helpers/synthesizers.py), then fits its target."""
    torch.manual_seed(0)
    target = torch.nn.Linear(784, 32)
    synthesizer = unlock.InputSynthesizer(784, 32)
    x = torch.rand(256, 1, 28, 28)
    first = synthesizer(x).detach()
    assert (first.std(0) > 0.1 * first.abs().mean()).all(), "every unit differs from example to example"
    optimizer = torch.optim.Adam(synthesizer.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        loss = F.mse_loss(synthesizer(x), target(x.flatten(1)).detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 50


def test_units_cut_the_network_as_described():
    units = unlock.make_units(models.fcn(4), 1e-3)
    assert [u.input_synthesizer is None for u in units] == [True, False, False, False]
    assert [u.gradient_synthesizer is None for u in units] == [False, False, False, True]
    assert all(u.gradient_synthesizer.conditioned for u in units[:-1])
    x, h, labels = torch.rand(16, 1, 28, 28), torch.rand(16, 256), F.one_hot(torch.arange(16) % 10, 10).float()
    assert all(torch.count_nonzero(u.gradient_synthesizer(h, labels)) == 0 for u in units[:-1]), \
        "gradient synthesizers start at zero (the paper's choice: an untrained DNI is no backprop)"
    assert all(u.input_synthesizer(x).std(0).min() > 0 for u in units[1:]), "input synthesizers start random"


def test_input_synthesizer_width_is_the_learners_choice():
    """Notebook 06 gives each input synthesizer one hidden layer as wide as the network (256, not the
    default 1024): the learner must pass that width through to every input synthesizer."""
    from helpers import learners
    learner = learners.make("full_unlock", models.fcn(4, hidden=32), 1e-3, input_hidden_layers=1, input_hidden=48)
    widths = [[m.out_features for m in u.input_synthesizer.modules() if isinstance(m, torch.nn.Linear)]
              for u in learner.units[1:]]
    assert widths == [[48, 32]] * 3
    default = unlock.make_units(models.fcn(3, hidden=32), 1e-3, input_hidden_layers=1)
    assert [m.out_features for m in default[1].input_synthesizer.modules() if isinstance(m, torch.nn.Linear)] == [1024, 32]


@pytest.mark.parametrize("block", [0, 2, 3])
def test_a_blocks_update_reads_only_x_y_and_its_own_synthesizers(block):
    config.seed_everything(0)
    units = unlock.make_units(models.fcn(4), 1e-2)
    for u in units:   # non-zero synthesizers, so that there is something to depend on
        for s in (u.input_synthesizer, u.gradient_synthesizer):
            if s is not None:
                torch.nn.init.normal_(s.net[-1].weight, std=0.05)
    x, y = batches(1)[0]
    others_garbled = copy.deepcopy(units)
    for i, u in enumerate(others_garbled):
        if i != block:
            for p in (p for module in u.modules for p in module.parameters()):
                p.data.normal_(0, 10)
    own_garbled = copy.deepcopy(units)
    for module in own_garbled[block].modules[1:]:
        for p in module.parameters():
            p.data.normal_(0, 10)
    for copy_ in (units, others_garbled, own_garbled):
        unlock.step_units(copy_, x, y)
    same = [torch.equal(a, b) for a, b in zip(units[block].block.parameters(), others_garbled[block].block.parameters())]
    assert all(same), "garbage in every other block and synthesizer leaves this block's update unchanged"
    changed = [torch.equal(a, b) for a, b in zip(units[block].block.parameters(), own_garbled[block].block.parameters())]
    assert not all(changed), "its own synthesizers do matter"


def test_concurrent_equals_sequential():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the worker processes use one thread each; so does the reference here
    try:
        check_concurrent_equals_sequential()
    finally:
        torch.set_num_threads(threads)


def check_concurrent_equals_sequential():
    config.seed_everything(1)
    sequential = unlock.make_units(models.fcn(4, hidden=64), 1e-3)
    concurrent = copy.deepcopy(sequential)     # the same start, synthesizers included (input ones are random)
    data = batches(3)
    for x, y in data:
        unlock.step_units(sequential, x, y)
    with unlock.ConcurrentFullUnlock(concurrent) as runner:
        for x, y in data:
            runner.step(x, y)
        states = runner.state()
        processes = list(runner.processes)
    for unit, state in zip(sequential, states):
        for module, remote in zip(unit.modules, state):
            for name, value in module.state_dict().items():
                torch.testing.assert_close(value, remote[name], rtol=0, atol=1e-6, msg=name)
    assert all(not p.is_alive() for p in processes), "no worker outlives the run"


def test_a_dead_worker_is_reported_and_cleaned_up():
    units = unlock.make_units(models.fcn(3, hidden=32), 1e-3)
    with pytest.raises(RuntimeError, match="unit 1 stopped answering: its process died"):
        with unlock.ConcurrentFullUnlock(units, timeout=5) as runner:
            runner.processes[1].kill()
            runner.processes[1].join()
            x, y = batches(1)[0]
            runner.step(x, y)
    assert all(not p.is_alive() for p in runner.processes)


def test_the_dead_worker_is_named_while_waiting_for_another():
    """A step waits for unit 0 first; if unit 1 has died meanwhile (unit 0 still starting up, say), the error
    must name unit 1 at once, not time out on unit 0 as if it were the problem."""
    units = unlock.make_units(models.fcn(3, hidden=32), 1e-3)
    with unlock.ConcurrentFullUnlock(units, timeout=20) as runner:
        runner.processes[1].kill()
        runner.processes[1].join()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="unit 1 stopped answering"):
            runner.receive(0)                        # unit 0 is alive but has been sent nothing
        assert time.monotonic() - started < 10, "reported without waiting out the timeout"


def test_full_unlock_learns_and_measures(mnist_small):
    config.seed_everything(0)
    learner = unlock.FullUnlock(models.fcn(3), 1e-3)
    history = training.train(learner, mnist_small, RunSize("t", iterations=60, lr=1e-3, batch_size=64, eval_every=20),
                             progress=False)
    assert history.method == "full_unlock" and history.test_accuracy[-1] > 0.4
    assert history.extra["input_error/1"][-1] < 1.0 and history.extra["input_error/2"][-1] < 1.0
    assert "cos_batch/1" in history.extra
