"""Decoupled greedy learning: every block learns from its own head only; one block is backprop; the buffered
variant with a buffer of one is the synchronous one."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import config, dgl, learners, models, training


def batches(n=3, size=32, seed=0, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, *shape, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def grads(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


@pytest.mark.parametrize("make", [lambda: models.fcn(4, hidden=16), lambda: models.cnn(3, channels=4)])
def test_each_block_receives_only_its_own_heads_gradient(make):
    """Block i's gradient is d CE(head_i(block_i(input)), y) / d theta_i alone: the losses of the blocks
    above (and the output layer's) add nothing."""
    config.seed_everything(0)
    learner = learners.make("dgl", make(), 1e-3)
    x, y = batches(1, shape=(1, 28, 28))[0]
    blocks = list(learner.model)
    copies = copy.deepcopy((blocks, learner.heads))
    learner.step(x, y)
    # the step has updated the parameters, so compare the gradients it left with a hand computation on copies
    h = x
    for i, (block, head) in enumerate(zip(*copies)):
        if i == len(blocks) - 1:
            break
        out = block(h.detach())
        expected = torch.autograd.grad(F.cross_entropy(head(out), y), list(block.parameters()))
        for got, e in zip(grads(blocks[i]), expected):
            torch.testing.assert_close(got, e, rtol=1e-5, atol=1e-7)
        h = out
    top = copies[0][-1]
    expected = torch.autograd.grad(F.cross_entropy(top(h.detach()), y), list(top.parameters()))
    for got, e in zip(grads(blocks[-1]), expected):
        torch.testing.assert_close(got, e, rtol=1e-5, atol=1e-7)


def test_the_head_loss_is_the_cross_entropy_of_the_blocks_output():
    config.seed_everything(0)
    learner = learners.make("dgl", models.fcn(3, hidden=16), 1e-3)
    x, y = batches(1)[0]
    before = copy.deepcopy((learner.model, learner.heads))
    learner.step(x, y)
    h0 = before[0][0](x)
    expected = [F.cross_entropy(before[1][0](h0), y), F.cross_entropy(before[1][1](before[0][1](h0)), y)]
    torch.testing.assert_close(torch.stack(learner.head_losses), torch.stack(expected).detach())


def test_one_block_dgl_is_backprop():
    """With the whole network as one block there is no boundary to cut: DGL is backprop, step for step."""
    config.seed_everything(0)
    whole = nn.Sequential(models.fcn(3, hidden=16))        # one block: the network, ending in the output layer
    reference = copy.deepcopy(whole)
    greedy, plain = learners.make("dgl", whole, 1e-3), training.Backprop(reference, 1e-3)
    for x, y in batches(4):
        loss_a, _ = greedy.step(x, y)
        loss_b, _ = plain.step(x, y)
        assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), reference.parameters()))


def test_a_buffer_of_one_is_the_synchronous_version():
    def make(method, **options):
        config.seed_everything(0)                      # the heads are drawn from the global generator
        return learners.make(method, models.fcn(4, hidden=16), 1e-3, **options)
    sync, buffered = make("dgl"), make("dgl_buffer", buffer_size=1)
    for x, y in batches(5):
        a, b = sync.step(x, y), buffered.step(x, y)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for p, q in zip(sync.model.parameters(), buffered.model.parameters()):
        assert torch.equal(p, q)
    assert set(buffered.ages) == {0}


def test_a_larger_buffer_trains_on_stale_inputs_and_still_reports_the_current_batch():
    def make(method, **options):
        config.seed_everything(0)
        return learners.make(method, models.fcn(3, hidden=16), 1e-3, **options)
    sync, buffered = make("dgl"), make("dgl_buffer", buffer_size=4)
    for x, y in batches(8):
        sync.step(x, y)
        loss, logits = buffered.step(x, y)
        assert logits.shape == (32, 10)
    assert max(buffered.ages) > 0, "some inputs were stale"
    assert not all(torch.equal(p, q) for p, q in zip(sync.model[1].parameters(), buffered.model[1].parameters()))
    with pytest.raises(ValueError, match="buffer_size"):
        dgl.BufferedDGL(models.fcn(3), 1e-3, buffer_size=0)


def test_dgl_measures_its_heads_gradient_against_the_true_one(mnist_small):
    config.seed_everything(0)
    learner = learners.make("dgl", models.fcn(3, hidden=32), 1e-3)
    size = config.RunSize("t", iterations=60, lr=1e-3, batch_size=64, eval_every=30)
    history = training.train(learner, mnist_small, size, progress=False)
    assert {"cos_batch/0", "cos_batch/1", "rel_error/1", "head_loss/0"} <= set(history.extra)
    assert len(learner.snapshots) == 2 and learner.snapshots[0][1][0].shape == (64, 32)
    assert history.test_accuracy[-1] > 0.3


def test_inputs_are_at_most_buffer_size_minus_one_steps_old_and_half_that_on_average():
    """Notebook 10's staleness axis: once the buffer is full, an input drawn uniformly from B entries is 0 to
    B - 1 steps old, (B - 1) / 2 on average."""
    config.seed_everything(0)
    learner = learners.make("dgl_buffer", models.fcn(3, hidden=16), 1e-3, buffer_size=4, seed=1)
    for x, y in batches(200, size=8):
        learner.step(x, y)
    assert set(learner.ages) == {0, 1, 2, 3} and sum(learner.ages.values()) == 200 * 2   # two boundaries per step
    assert abs(learner.mean_age() - 1.5) < 0.15, learner.mean_age()


def test_a_buffered_run_is_stored_under_its_buffer_size_and_seed(tmp_path, mnist_small, monkeypatch):
    """train(reuse=True) loads a buffered run back with its counts, and never mistakes one buffer size or
    buffer seed for another (notebook 10 reuses runs)."""
    monkeypatch.setenv("SG_RUNS", str(tmp_path))
    size = config.RunSize("t", iterations=20, lr=1e-3, batch_size=32, eval_every=10)

    def run(**options):
        config.seed_everything(0)
        learner = learners.make("dgl_buffer", models.fcn(3, hidden=16), 1e-3, **options)
        return learner, training.train(learner, mnist_small, size, progress=False, reuse=True)
    first, history = run(buffer_size=4, seed=0)
    again, reused = run(buffer_size=4, seed=0)
    assert reused.test_accuracy == history.test_accuracy and again.ages == first.ages
    run(buffer_size=4, seed=1)
    run(buffer_size=2, seed=0)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_the_output_layer_trains_on_the_top_hidden_blocks_output_like_its_head():
    """In the FCN the top hidden block's head and the output layer are two linear classifiers of the same
    input (notebook 10 explains why the top block's head gradient is close to the true one)."""
    learner = learners.make("dgl", models.fcn(3, hidden=16), 1e-3)
    head, (output,) = learner.heads[-1], list(learner.model[-1])
    assert isinstance(head, nn.Linear) and isinstance(output, nn.Linear)
    assert (head.in_features, head.out_features) == (output.in_features, output.out_features)
