"""The one probe: what each hidden block receives, against the true gradient, on a copy of the networks.

Every learner that can compare its signal with backprop's (DNI and cDNI, notebooks 02-03; the synthetic
loss and the critic, 04; FA and DFA, 05; the full unlock, 06; the stochastic variants, 09) measures the
same three numbers per hidden block i, from the same per-example true gradient:

- `cos_batch/i`: cosine of the whole batch x units signal with the true one (one vector each);
- `cos_example/i`: the mean over examples of each example's cosine;
- `rel_error/i`: |received - true| / |true|.

Per example means batch size x dL/dh for the batch-mean loss, the scale every synthesizer predicts in
(see helpers/synthesizers.py). The networks are deep-copied and run in training mode (BatchNorm uses batch
statistics, as during a training step), so measuring never touches the real parameters, gradients or
BatchNorm running statistics, and never changes what a run learns.

The gradient cosine does not rank methods by accuracy (03: linear DNI at 0.09 beats the floor by far; 05: FA
and DFA beat cDNI in cosine and lose in accuracy), so two more things live here:

- baselines a low cosine can be read against: `batch_mean_baseline` (a constant predictor: every example gets
  the batch-mean gradient) and `shuffled_baseline` (the right gradients handed to the wrong examples);
- `update_alignment`: per hidden block, the cosine (`upd_cos/i`) and norm ratio (`upd_ratio/i`) between the
  parameter update the learner applies and the one backprop would apply from the same parameters and the same
  optimizer state (and `upd_step_cos/i`, the same with the shared momentum set aside). `training.train(...,
  probe_update=True)` records it, with the baselines, at every evaluation
  (`update_metrics`). Notebooks 03, 04 and 05 (any learner whose model is a list of blocks; not the recurrent
  trainer of 08).
"""
import copy

import torch
import torch.nn.functional as F


def hidden_outputs(model, x):
    """(every hidden block's output, the logits) of a model of blocks, keeping the graph."""
    hs, h = [], x
    for block in list(model)[:-1]:
        h = block(h)
        hs.append(h)
    return hs, model[-1](h)


def true_gradients(model, x, y):
    """Per-example true gradients at every hidden block's output (batch size x dL/dh), on a copy."""
    model = copy.deepcopy(model)
    hs, logits = hidden_outputs(model, x)
    return [g.detach() * x.shape[0] for g in torch.autograd.grad(F.cross_entropy(logits, y), hs)]


def synthetic_and_true_gradients(model, synthesizers, x, y, context=None):
    """Per hidden block: what its synthesizer M_i(h_i[, context]) predicts and the true gradient, both per
    example, on copies of the model and the synthesizers (their BatchNorm statistics stay untouched)."""
    model, synthesizers = copy.deepcopy(model), copy.deepcopy(synthesizers)
    hs, logits = hidden_outputs(model, x)
    true = torch.autograd.grad(F.cross_entropy(logits, y), hs)
    with torch.no_grad():
        synthetic = [s(h.detach(), context) for s, h in zip(synthesizers, hs)]
    return synthetic, [g.detach() * x.shape[0] for g in true]


def gradient_metrics(received, true):
    """`cos_batch/i`, `cos_example/i` and `rel_error/i` for each hidden block i (see the module's doc)."""
    metrics = {}
    for i, (g_hat, g) in enumerate(zip(received, true)):
        metrics[f"cos_batch/{i}"] = F.cosine_similarity(g_hat.flatten(), g.flatten(), dim=0).item()
        metrics[f"cos_example/{i}"] = F.cosine_similarity(g_hat.flatten(1), g.flatten(1), dim=1).mean().item()
        metrics[f"rel_error/{i}"] = ((g_hat - g).norm() / g.norm().clamp_min(1e-12)).item()
    return metrics


# Baselines for the gradient cosine. Two random directions in thousands of dimensions have a cosine near 0, but
# a predictor that knows nothing about an example already does better than that, so "low but above zero" needs
# a baseline a reader can trust: what a constant predictor gets, and what the right gradients get when they are
# handed to the wrong examples. Notebooks 03-05 print them beside each method's cosine.

def batch_mean_baseline(true):
    """`gradient_metrics` of a predictor that hands every example the batch mean of the true per-example
    gradients: the best any constant synthesizer can do on this batch. `true`: one (N, ...) tensor per block.

    Below a BatchNorm layer (every hidden block of the FCN but the top one) the batch mean of the true gradient
    is zero, because BatchNorm in training mode removes anything constant across the batch from its input; so
    there a constant predictor scores 0, and only at the top block does it score above 0."""
    return gradient_metrics([g.mean(0, keepdim=True).expand_as(g) for g in true], true)


def shuffled_baseline(true, generator=None):
    """`gradient_metrics` of a predictor with the right set of per-example gradients given to the wrong
    examples (a random derangement drawn from `generator`: no example keeps its own), i.e. one that knows
    what gradients look like but not which example gets which."""
    order = torch.randperm(true[0].shape[0], generator=generator)
    wrong = torch.empty_like(order)
    wrong[order] = order.roll(1)                  # example order[k] receives order[k - 1]'s gradient
    return gradient_metrics([g[wrong.to(g.device)] for g in true], true)


# Alignment where learning happens. The gradient cosine compares what a block *receives*; what changes the block
# is the update its optimizer applies, which under Adam also depends on the optimizer's state (momentum and the
# per-weight scale). `update_alignment` takes one step of the learner and one backprop step from the same
# parameters and the same optimizer state, on copies, and compares the two updates per hidden block.

def update_alignment(learner, x, y):
    """Per hidden block i: `upd_cos/i`, the cosine between the parameter update the learner applies at (x, y)
    and the one backprop would apply from the same parameters with the same optimizer state, and `upd_ratio/i`,
    the norm of the learner's update over backprop's; `upd_step_cos/i`, the same cosine with every optimizer's
    momentum (Adam's first moment, SGD's momentum buffer) set aside in both copies: this step's own signal, as
    the optimizer scales it, without the history both updates share.

    Both steps run on deep copies of the whole learner (model, synthesizers, optimizers with their state:
    copying the learner as one object keeps every optimizer pointing at its own copied parameters), with the
    torch random state restored after each, so the real learner, its optimizers, its BatchNorm statistics
    and the random stream are untouched. Backprop's step uses the learner's own optimizers (their state and
    learning rates) on a full backward pass through the model; parameters no optimizer holds (the hidden
    blocks of `nobackprop`) get a fresh optimizer of the same kind. A block the learner does not move gets
    cosine 0 and ratio 0 (ratio NaN where backprop would not move it). Backprop itself gives exactly (1, 1).

    Under Adam both applied updates share the state's first moment (0.9 of the new one), so every method
    scores high on `upd_cos` (0.8-0.9 on the MNIST FCN, even the synthetic loss, whose signal is noise): it
    says how far this step turns the update away from backprop's, not whether the signal points the right
    way. `upd_step_cos` removes that shared history. Notebooks 03, 04 and 05 read both beside `cos_batch/i`
    (helpers.alignment, `make alignment`).
    """
    metrics = {}
    for key, momentum in (("upd", True), ("upd_step", False)):
        method, backprop = _updates(learner, x, y, momentum)
        for i, (m, b) in enumerate(zip(method, backprop)):
            metrics[f"{key}_cos/{i}"] = flat_cosine(m, b)
            if momentum:
                mm, bb = m.double().dot(m.double()), b.double().dot(b.double())
                metrics[f"upd_ratio/{i}"] = (mm / bb).sqrt().item() if bb > 0 else float("nan")
    return metrics


def flat_cosine(a, b):
    """Cosine between two flat update vectors, in float64; 0 where either did not move (nothing to compare).
    Shared by `update_alignment` and the recurrent one (helpers.rnn.update_alignment)."""
    a, b = a.double(), b.double()
    aa, bb = a.dot(a), b.dot(b)
    return (a.dot(b) / (aa * bb).sqrt()).item() if aa > 0 and bb > 0 else 0.0


def _updates(learner, x, y, momentum=True):
    """The hidden blocks' parameter changes of one step of the learner and of one backprop step, each on its own
    copy from the same state and random stream; without `momentum`, both copies' momenta are zeroed first."""
    devices = sorted({p.device.index for p in learner.model.parameters() if p.is_cuda})
    found = []
    for step in (lambda copy: copy.step(x, y), lambda copy: _backprop_step(copy, x, y)):
        with torch.random.fork_rng(devices=devices):
            mine = _copy(learner)
            if not momentum:
                _forget_momentum(mine)
            before = _hidden_parameters(mine.model)
            step(mine)
            found.append([a - b for a, b in zip(_hidden_parameters(mine.model), before)])
    return found


def _forget_momentum(learner):
    """Zero every optimizer's first moment in a copied learner (a `Gate` is stepped through to its optimizer)."""
    for optimizer in learner.optimizers:
        forget_momentum(getattr(optimizer, "optimizer", optimizer))


def forget_momentum(optimizer):
    """Zero an optimizer's first moment (Adam's `exp_avg`, SGD's `momentum_buffer`), in place: for a copy, so that
    its next step shows that step's own signal. Also used by helpers.rnn.update_alignment."""
    for state in optimizer.state.values():
        for name in ("exp_avg", "momentum_buffer"):
            if torch.is_tensor(state.get(name)):
                state[name].zero_()


def update_metrics(learner, x, y, seed=0):
    """What `training.train(..., probe_update=True)` records at each evaluation: `update_alignment` and the
    two baselines' `cos_batch/i` and `cos_example/i` (keys `mean_cos_batch/i`, `shuffled_cos_batch/i`, ...),
    on the learner's `probe` batch if it has one, else on (x, y). The shuffle has its own generator (`seed`)."""
    if getattr(learner, "probe", None) is not None:
        x, y = learner.probe
    metrics = update_alignment(learner, x, y)
    true = true_gradients(learner.model, x, y)
    for name, baseline in (("mean", batch_mean_baseline(true)),
                           ("shuffled", shuffled_baseline(true, torch.Generator().manual_seed(seed)))):
        metrics.update({f"{name}_{k}": v for k, v in baseline.items() if not k.startswith("rel_error")})
    return metrics


def _copy(learner):
    """A deep copy of the learner; what it only reads or records (its probe batch, gradient snapshots) is shared."""
    shared = [getattr(learner, name, None) for name in ("probe", "snapshots")]
    return copy.deepcopy(learner, {id(v): v for v in shared if v is not None})


def _hidden_parameters(model):
    """Each hidden block's parameters as one flat (copied) vector."""
    device = next(model.parameters()).device
    return [torch.cat([p.detach().flatten() for p in block.parameters()] or [torch.zeros(0, device=device)])
            for block in list(model)[:-1]]


def _backprop_step(learner, x, y):
    """One backprop step of `learner.model` with the learner's own optimizers (a `Gate` is stepped through to
    its optimizer): gradients reach the model only, and an optimizer skips parameters without one."""
    optimizers = [getattr(o, "optimizer", o) for o in learner.optimizers]
    held = {id(p) for o in optimizers for group in o.param_groups for p in group["params"]}
    loose = [p for p in learner.model.parameters() if id(p) not in held]
    if loose:
        optimizers.append(type(optimizers[0])(loose, lr=optimizers[0].param_groups[0]["lr"]))
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(learner.model(x), y).backward()
    for optimizer in optimizers:
        optimizer.step()
