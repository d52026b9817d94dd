"""FA and DFA as fixed synthetic gradients, and the representation measures (CKA, linear probes)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import analysis, config, feedback, models, training
from helpers.config import RunSize


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_feedback_linear_sends_the_error_through_b_and_learns_as_usual():
    torch.manual_seed(0)
    x, W, b, B = torch.randn(5, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True), \
        torch.randn(3, requires_grad=True), torch.randn(3, 4)
    grad = torch.randn(5, 3)
    out = feedback.FeedbackLinear.apply(x, W, b, B)
    torch.testing.assert_close(out, F.linear(x, W, b))
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad @ B)
    torch.testing.assert_close(W.grad, grad.t() @ x.detach())
    torch.testing.assert_close(b.grad, grad.sum(0))


def test_fa_with_the_true_weights_as_feedback_is_backprop():
    config.seed_everything(0)
    model = models.fcn(4)
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    learner = feedback.FA(model, 0.1, optimizer=torch.optim.SGD)
    learner.feedback = [m.weight.detach().clone() for m in learner.linears]   # B = W: no approximation left
    x, y = batch()
    learner.step(x, y)
    training.Backprop(reference, 0.1, optimizer=torch.optim.SGD).step(x, y)
    for p, q, p0 in zip(model.parameters(), reference.parameters(), initial.parameters()):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_fa_with_random_feedback_differs_from_backprop_below_the_top():
    config.seed_everything(0)
    model = models.fcn(3)
    reference = copy.deepcopy(model)
    feedback.FA(model, 0.1, optimizer=torch.optim.SGD).step(*batch())
    training.Backprop(reference, 0.1, optimizer=torch.optim.SGD).step(*batch())
    torch.testing.assert_close(model[-1].state_dict(), reference[-1].state_dict())   # the output layer: true gradient
    assert not torch.allclose(model[0][1].weight, reference[0][1].weight)


def test_dfa_block_receives_the_output_error_through_its_fixed_matrix():
    config.seed_everything(1)
    model = models.fcn(4)
    before = copy.deepcopy(model)
    learner = feedback.DFA(model, 0.1, optimizer=torch.optim.SGD)
    x, y = batch()
    h = x
    hs = []
    for block in list(before)[:-1]:
        h = block(h.detach())
        hs.append(h)
    error = F.softmax(before[-1](h), 1).detach() - F.one_hot(y, 10).float()
    expected = [torch.autograd.grad(hs[i], list(before[i].parameters()), grad_outputs=error @ B / len(x))
                for i, B in enumerate(learner.feedback)]
    learner.step(x, y)
    for i in range(3):
        for p, p0, g in zip(model[i].parameters(), before[i].parameters(), expected[i]):
            torch.testing.assert_close(p0 - p, 0.1 * g, atol=1e-6, rtol=1e-4, msg=f"block {i}")


TINY = RunSize("test", iterations=60, lr=1e-3, batch_size=64, eval_every=20)


@pytest.mark.parametrize("learner_class", [feedback.FA, feedback.DFA])
def test_fa_and_dfa_learn_and_measure_alignment(learner_class, mnist_small):
    config.seed_everything(0)
    learner = learner_class(models.fcn(3), TINY.lr)
    history = training.train(learner, mnist_small, TINY, seed=0, progress=False)
    assert history.method == learner_class.method and history.test_accuracy[-1] > 0.6
    for i in range(2):
        assert len(history.extra[f"cos_batch/{i}"]) == 3
        assert -1 <= history.extra[f"cos_batch/{i}"][-1] <= 1


def test_linear_cka_is_one_for_the_same_representation_up_to_rotation_and_scale():
    torch.manual_seed(0)
    a = torch.randn(500, 20)
    rotation, _ = torch.linalg.qr(torch.randn(20, 20))
    assert analysis.linear_cka(a, a) == pytest.approx(1.0)
    assert analysis.linear_cka(a, 3.0 * a @ rotation) == pytest.approx(1.0)
    assert analysis.linear_cka(a, torch.randn(500, 20)) < 0.1
    with pytest.raises(ValueError, match="same examples"):
        analysis.linear_cka(a, a[:10])


def test_linear_probe_reads_a_linearly_coded_label_and_not_noise():
    torch.manual_seed(0)
    labels = torch.randint(0, 10, (1000,))
    coded = F.one_hot(labels, 10).float() @ torch.randn(10, 30) + 0.1 * torch.randn(1000, 30)
    assert analysis.linear_probe_accuracy(coded[:800], labels[:800], coded[800:], labels[800:]) > 0.95
    noise = torch.randn(1000, 30)
    assert analysis.linear_probe_accuracy(noise[:800], labels[:800], noise[800:], labels[800:]) < 0.25
