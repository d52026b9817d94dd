"""Comparing what networks learned, layer by layer: linear CKA and linear probes.

Czarnecki et al. 2017 ("Understanding Synthetic Gradients and DNIs", arXiv 1703.00522) found that
networks trained with synthetic gradients reach similar accuracy to backprop through quite different
layer-wise representations. Two simple ways to see that:

- linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited"): a
  similarity in [0, 1] between two sets of activations of the same examples, invariant to rotations and
  isotropic scaling; 1 means the same representation up to those.
- a linear probe: how well a least-squares linear classifier on a layer's activations predicts the label.

Used by notebook 05.
"""
import torch
import torch.nn.functional as F


def linear_cka(a, b):
    """Linear CKA between activations a (N, p) and b (N, q) of the same N examples."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must hold the same examples; got {a.shape[0]} and {b.shape[0]} rows.")
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    cross = (b.t() @ a).pow(2).sum()
    return (cross / ((a.t() @ a).norm() * (b.t() @ b).norm()).clamp_min(1e-30)).item()


@torch.no_grad()
def hidden_representations(model, x, batch_size=2_000):
    """Every hidden block's output for inputs x, in eval mode (BatchNorm running statistics), on the CPU."""
    was_training = model.training
    model.eval()
    outputs = None
    for start in range(0, len(x), batch_size):
        h, hs = x[start:start + batch_size], []
        for block in list(model)[:-1]:
            h = block(h)
            hs.append(h.flatten(1).cpu())
        outputs = hs if outputs is None else [torch.cat([o, n]) for o, n in zip(outputs, hs)]
    model.train(was_training)
    return outputs


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, num_classes=10, ridge=1e-3):
    """Test accuracy of a ridge-regression classifier (onto one-hot labels) fitted on the train features."""
    def design(features):
        ones = torch.ones(len(features), 1, dtype=torch.float64, device=features.device)
        return torch.cat([features.double(), ones], dim=1)
    X = design(train_features)
    targets = F.one_hot(train_labels.to(X.device), num_classes).double()
    eye = torch.eye(X.shape[1], dtype=torch.float64, device=X.device)
    weights = torch.linalg.solve(X.t() @ X + ridge * len(X) * eye, X.t() @ targets)
    return (design(test_features.to(X.device)) @ weights).argmax(1).eq(test_labels.to(X.device)).double().mean().item()
