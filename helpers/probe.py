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
