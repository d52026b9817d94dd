"""Hand-computed targets and injected gradients, in float64 on tiny networks.

Every quantity below is computed here from scratch (on copies taken before the step) and compared with
what the code did, tightly enough that a factor of 2 anywhere fails: the full unlock's synthetic-gradient
and synthetic-input targets, the decoupled pipeline stage's messages and targets (one process, a fake
transport), multi-rate gradient accumulation, and DNI's `scale`.
"""
import copy
import functools
import types

import pytest
import torch
import torch.nn.functional as F

from helpers import update_rates, config, dni, models, pipeline, unlock

close = functools.partial(torch.testing.assert_close, rtol=1e-9, atol=1e-12)
IN, HIDDEN, N = 5, 6, 8   # input features, hidden width, batch size


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def batch(n=N, features=IN, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, features, generator=g), torch.randint(0, 10, (n,), generator=g)


def onehot(y):
    return F.one_hot(y, 10).to(torch.get_default_dtype())


def nonzero(*synthesizers):
    """Synthesizers start at zero; give their last layer weights so that every quantity is non-trivial."""
    for s in synthesizers:
        if s is not None:
            torch.nn.init.normal_(s.net[-1].weight, std=0.5)


def grads(module):
    return [p.grad for p in module.parameters()]


def regression_gradient(synthesizer, inputs, target):
    """d/dθ of F.mse_loss(synthesizer(*inputs), target): what training on `target` leaves in .grad."""
    return torch.autograd.grad(F.mse_loss(synthesizer(*inputs), target), list(synthesizer.parameters()))


# 1. The full unlock ------------------------------------------------------------------------------------

def unlock_step():
    """One `step_units` on fcn(4) (three hidden blocks), and by hand from copies taken before it: each
    unit's block output h, its block's parameter gradient and the per-example gradient at its input."""
    config.seed_everything(0)
    units = unlock.make_units(models.fcn(4, hidden=HIDDEN, in_features=IN), 0.1, optimizer=torch.optim.SGD)
    for u in units:
        nonzero(u.input_synthesizer, u.gradient_synthesizer)
    before = copy.deepcopy(units)
    x, y = batch()
    unlock.step_units(units, x, y)
    hand = []
    for u in before:
        h_in = (x if u.input_synthesizer is None else u.input_synthesizer(x)).detach().requires_grad_()
        h = u.block(h_in)
        if u.gradient_synthesizer is None:
            objective = F.cross_entropy(h, y)
        else:
            objective = (h * u.gradient_synthesizer(h.detach(), onehot(y)).detach()).sum() / N
        *block_grads, input_grad = torch.autograd.grad(objective, [*u.block.parameters(), h_in])
        hand.append(types.SimpleNamespace(h=h.detach(), block_grads=block_grads, input_grad=input_grad))
    return units, before, hand, x, y


def test_unlock_block_is_trained_with_its_prediction_over_the_batch():
    """Each hidden block's parameter gradient is d/dθ sum(h * M(h, y)) / batch (the synthesizer predicts
    per-example gradients); the output layer's is the true loss's. A missing / batch multiplies it by N."""
    units, _, hand, _, _ = unlock_step()
    for i, (u, ref) in enumerate(zip(units, hand)):
        for got, expected in zip(grads(u.block), ref.block_grads):
            close(got, expected, msg=f"block {i}")


def test_unlock_gradient_synthesizer_regresses_onto_the_input_gradient_of_the_block_above():
    """M_i's target is batch x dL/d(input of unit i+1): bootstrapped from unit i+1's own synthesizer, or
    the true loss for the top hidden block. Checked through M_i's parameter gradient after `learn`."""
    units, before, hand, _, y = unlock_step()
    for i in range(len(units) - 1):
        target = hand[i + 1].input_grad * N
        assert target.abs().max() > 1e-3
        expected = regression_gradient(before[i].gradient_synthesizer, (hand[i].h, onehot(y)), target)
        for got, e in zip(grads(units[i].gradient_synthesizer), expected):
            close(got, e, msg=f"gradient synthesizer {i}")


def test_unlock_input_synthesizer_regresses_onto_the_output_of_the_block_below():
    """I_i's target is the output unit i-1 computed in the same step (from its own synthetic input)."""
    units, before, hand, x, _ = unlock_step()
    for i in range(1, len(units)):
        assert hand[i - 1].h.abs().max() > 1e-3
        expected = regression_gradient(before[i].input_synthesizer, (x,), hand[i - 1].h)
        for got, e in zip(grads(units[i].input_synthesizer), expected):
            close(got, e, msg=f"input synthesizer {i}")


# 2. The decoupled pipeline stage, in one process ------------------------------------------------------

class Work:
    """A fake torch.distributed request: done unless told otherwise."""

    def __init__(self, ready=True):
        self.ready = ready

    def is_completed(self):
        return self.ready

    def wait(self, timeout=None):
        assert self.ready, "the stage waited for a message the test has not delivered"
        return True


class Transport:
    """In-memory isend / irecv: records what is sent; a receive gets the next tensor of `incoming`."""

    def __init__(self, monkeypatch, ready=True):
        self.sent, self.incoming, self.receives, self.ready = [], [], [], ready
        monkeypatch.setattr(pipeline.dist, "isend", self.isend)
        monkeypatch.setattr(pipeline.dist, "irecv", self.irecv)

    def isend(self, tensor, dst, tag):
        self.sent.append((tensor.clone(), dst, tag))
        return Work()

    def irecv(self, buffer, src, tag):
        buffer.copy_(self.incoming.pop(0))
        self.receives.append(Work(self.ready))
        return self.receives[-1]

    def messages(self, tag):
        return [(tensor, dst) for tensor, dst, t in self.sent if t == tag]


def make_stage(rank):
    """Stage `rank` of a 3-stage decoupled pipeline over fcn(4): blocks [0], [1], [2, output]."""
    cfg = pipeline.PipelineConfig(stages=3, layers=4, hidden=HIDDEN, batch_size=N, mode="decoupled",
                                  conditioned=True, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    data = types.SimpleNamespace(x_train=torch.rand(2 * N, 1, 28, 28, generator=g),
                                 y_train=torch.randint(0, 10, (2 * N,), generator=g), num_classes=10)
    stage = pipeline.make_stage(rank, cfg, data)
    if stage.synthesizer is not None:
        torch.manual_seed(rank)
        nonzero(stage.synthesizer)
    return stage, data


def stage_input(stage, data, seed=0):
    if stage.first:
        return data.x_train[:N], data.y_train[:N]
    x, y = batch(features=HIDDEN, seed=seed)
    return x.requires_grad_(), y   # as `Stage.run` receives it


@pytest.mark.parametrize("rank", [1, 2])
def test_pipeline_stage_sends_down_the_per_example_input_gradient(monkeypatch, rank):
    """A non-first stage sends batch x dL/dx down: from the true loss at the last stage, from
    sum(h * M(h, y)) / batch (its synthetic gradient) at a middle one."""
    transport = Transport(monkeypatch)
    stage, data = make_stage(rank)
    block, synthesizer = copy.deepcopy(stage.block), copy.deepcopy(stage.synthesizer)
    x, y = stage_input(stage, data)
    transport.incoming = [torch.randn(N, HIDDEN)]   # the gradient from above, for a middle stage
    stage.step(x, y, 0)
    x_in = x.detach().clone().requires_grad_()
    h = block(x_in)
    objective = F.cross_entropy(h, y) if stage.last else (h * synthesizer(h.detach(), onehot(y))).sum() / N
    expected = torch.autograd.grad(objective, x_in)[0] * N
    [(down, dst)] = transport.messages(pipeline.BACKWARD)
    assert dst == rank - 1 and expected.abs().max() > 1e-3
    close(down, expected)


@pytest.mark.parametrize("rank", [0, 1])
def test_pipeline_stage_block_is_trained_with_its_prediction_over_the_batch(monkeypatch, rank):
    """A stage with a synthesizer trains its blocks on d/dθ sum(h * M(h, y)) / batch."""
    transport = Transport(monkeypatch)
    stage, data = make_stage(rank)
    block, synthesizer = copy.deepcopy(stage.block), copy.deepcopy(stage.synthesizer)
    x, y = stage_input(stage, data)
    transport.incoming = [torch.randn(N, HIDDEN)]
    stage.step(x, y, 0)
    assert len(transport.messages(pipeline.BACKWARD)) == (0 if stage.first else 1)
    h = block(x.detach())
    objective = (h * synthesizer(h.detach(), onehot(y))).sum() / N
    for got, expected in zip(grads(stage.block), torch.autograd.grad(objective, list(block.parameters()))):
        close(got, expected)


@pytest.mark.parametrize("rank", [0, 1])
def test_pipeline_synthesizer_regresses_onto_the_received_gradient_with_current_weights(monkeypatch, rank):
    """The synthesizer's target is exactly the gradient tensor received from above, fitted on that step's
    kept (h, y) with the synthesizer's weights when the target arrives (here: after training on the
    previous target), not on the prediction it made back then."""
    transport = Transport(monkeypatch, ready=False)   # both targets arrive late
    stage, data = make_stage(rank)
    targets = [torch.randn(N, HIDDEN, generator=torch.Generator().manual_seed(s)) for s in (10, 11)]
    transport.incoming = list(targets)
    inputs = [stage_input(stage, data, seed=s) for s in (0, 1)]
    initial = copy.deepcopy(stage.synthesizer)
    for step, (x, y) in enumerate(inputs):
        stage.step(x, y, step)
    assert all(p.grad is None for p in stage.synthesizer.parameters()), "nothing has arrived yet"
    kept = [h for h, dst in transport.messages(pipeline.FORWARD)]   # what it sent up = what it kept
    for step in (0, 1):
        current = copy.deepcopy(stage.synthesizer)
        if step == 1:
            assert not all(torch.equal(a, b) for a, b in zip(current.parameters(), initial.parameters()))
        transport.receives[step].ready = True
        stage.learn(2)
        expected = regression_gradient(current, (kept[step], onehot(inputs[step][1])), targets[step])
        for got, e in zip(grads(stage.synthesizer), expected):
            close(got, e, msg=f"target of step {step}")
    assert stage.staleness == [2, 1]


# 3. Multi-rate: the lower network sums its synthetic gradients ----------------------------------------

def test_multirate_lower_update_is_the_sum_of_the_k_synthetic_gradients():
    """With every=k and SGD, the lower network moves once, after k steps, by -lr x the SUM over the k
    batches of d/dθ sum(h_t * M_t(h_t, y_t)) / batch, each with the synthesizer as it was at step t."""
    config.seed_everything(0)
    k, lr = 3, 0.1
    model = models.fcn(3, hidden=HIDDEN, in_features=IN)
    learner = update_rates.MultiRate(model, lr, cut=1, every=k, optimizer=torch.optim.SGD)
    nonzero(*learner.synthesizers)
    lower = learner.model[0]
    start = copy.deepcopy(lower)
    total = [torch.zeros_like(p) for p in lower.parameters()]
    for t in range(k):
        x, y = batch(seed=t)
        block, synthesizer = copy.deepcopy(start), copy.deepcopy(learner.synthesizers[0])
        h = block(x)
        objective = (h * synthesizer(h.detach(), onehot(y))).sum() / N
        total = [a + g for a, g in zip(total, torch.autograd.grad(objective, list(block.parameters())))]
        learner.step(x, y)
    assert learner.block_optimizers[0].updates == 1
    for p, p0, g in zip(lower.parameters(), start.parameters(), total):
        close(p.detach(), p0.detach() - lr * g)


# 4. DNI with scale != 1 --------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_dni_scale_multiplies_the_injected_gradient_and_divides_the_bootstrap(scale):
    """Block i gets scale x M_i(h_i) / batch. The target of a lower synthesizer is block i+1's input
    gradient x batch / scale (so the scale cancels: it is what M_{i+1} itself predicts, backpropagated
    through block i+1); the top synthesizer's target is the true gradient x batch, with no scale."""
    config.seed_everything(0)
    model = models.fcn(4, hidden=HIDDEN, in_features=IN)
    learner = dni.DNI(model, 0.1, conditioned=True, scale=scale, optimizer=torch.optim.SGD)
    nonzero(*learner.synthesizers)
    blocks, synthesizers = copy.deepcopy(model), copy.deepcopy(learner.synthesizers)
    x, y = batch()
    learner.step(x, y)
    hs, input_grads, h = [], [], x
    for i in range(3):
        h_in = h.detach().requires_grad_()
        h = blocks[i](h_in)
        objective = (h * synthesizers[i](h.detach(), onehot(y))).sum() * scale / N
        *block_grads, input_grad = torch.autograd.grad(objective, [*blocks[i].parameters(), h_in])
        for got, expected in zip(grads(model[i]), block_grads):
            close(got, expected, msg=f"block {i}")
        hs.append(h.detach())
        input_grads.append(input_grad)
    top = hs[-1].requires_grad_()
    true_top = torch.autograd.grad(F.cross_entropy(blocks[-1](top), y), top)[0]
    targets = [input_grads[i + 1] * N / scale for i in range(2)] + [true_top * N]
    for i, target in enumerate(targets):
        expected = regression_gradient(synthesizers[i], (hs[i].detach(), onehot(y)), target)
        for got, e in zip(grads(learner.synthesizers[i]), expected):
            close(got, e, msg=f"synthesizer {i}")
