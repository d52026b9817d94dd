"""The probe's three numbers, each pinned by a case where the wrong one gives another value.

The recorded regression numbers also cover them, but re-recording would bake a mistake in; these cases
follow from the definitions alone (helpers/probe.py).
"""
import torch

from helpers import probe


def test_the_whole_batch_cosine_is_one_vector_not_a_mean_over_examples():
    """Every example's signal points exactly along its true gradient, at a different length per example: the
    per-example cosines are all 1, the whole-batch cosine (the batch x units signal as one vector) is not."""
    g = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lengths = torch.arange(1.0, 9.0, dtype=torch.float64)[:, None]          # 1, 2, ..., 8
    received = g * lengths
    metrics = probe.gradient_metrics([received], [g])
    whole = float((received * g).sum() / (received.norm() * g.norm()))
    assert abs(whole - 1) > 0.05, "the case must separate the two cosines"
    assert abs(metrics["cos_batch/0"] - whole) < 1e-12
    assert abs(metrics["cos_example/0"] - 1) < 1e-12
    assert abs(metrics["rel_error/0"] - float((received - g).norm() / g.norm())) < 1e-12


def test_the_per_example_cosine_is_a_mean_over_examples_not_one_vector():
    """Half the examples point along the truth, half against it, the second half longer: the mean per-example
    cosine is 0, the whole-batch cosine is negative."""
    g = torch.randn(8, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    received = torch.cat([g[:4], -3 * g[4:]])
    metrics = probe.gradient_metrics([received], [g])
    assert abs(metrics["cos_example/0"]) < 1e-12
    assert metrics["cos_batch/0"] < -0.1


def test_forget_momentum_zeroes_the_first_moment_only():
    """The update alignment's 'step' cosines (probe and recurrent) rest on this: Adam's exp_avg and SGD's momentum
    buffer go to zero, Adam's second moment stays (it is the optimizer's scale, not its history of directions)."""
    import torch
    from helpers import probe
    weight = torch.nn.Parameter(torch.ones(3))
    for optimizer, kept in ((torch.optim.Adam([weight], lr=0.1), "exp_avg_sq"),
                            (torch.optim.SGD([weight], lr=0.1, momentum=0.9), None)):
        (weight ** 2).sum().backward()
        optimizer.step()
        state = optimizer.state[weight]
        probe.forget_momentum(optimizer)
        first = state.get("exp_avg", state.get("momentum_buffer"))
        assert torch.count_nonzero(first) == 0
        if kept:
            assert torch.count_nonzero(state[kept]) == 3
        weight.grad = None
