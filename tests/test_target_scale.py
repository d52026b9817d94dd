"""The target-scale comparison of notebook 02: `PlaygroundDNI`'s `per_example` switch on the MNIST FCN.

- With per_example=True, PlaygroundDNI is the series' DNI learner (`learners.make("dni")`) number for number,
  synthesizer with a hidden layer included (one Adam for everything there, one per module here: Adam is per
  parameter), so notebook 02's comparison changes the scale of the synthesizer's regression target and nothing else.
- With per_example=False under Adam the runs part: the switch does something.
- Under plain SGD with a linear synthesizer the two target scales give the same blocks to the last bit (notebook
  02's exercise 2): the batch-mean synthesizer follows the per-example one's path divided by the batch size, here
  a power of two, so the division is exact; with a hidden layer in the synthesizer that no longer holds exactly.
"""
import copy

import torch

from helpers import learners, models
from helpers.playground import PlaygroundDNI

BATCH = 64   # a power of two, as notebook 02's 256


def batches(steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield torch.rand(BATCH, 1, 28, 28, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))


def synthesizer_tensors(learner):
    return [t for s in learner.synthesizers for t in list(s.parameters()) + list(s.buffers())]


def pair(per_example, hidden_layers, lr=1e-3, **options):
    """Two learners from the same initial network and synthesizers: `learners.make("dni")` and PlaygroundDNI."""
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    reference = learners.make("dni", copy.deepcopy(model), lr, hidden_layers=hidden_layers, hidden=16, **options)
    switch = PlaygroundDNI(copy.deepcopy(model), lr, per_example=per_example, hidden_layers=hidden_layers, hidden=16,
                           **options)
    for mine, theirs in zip(switch.synthesizers, reference.synthesizers):
        mine.load_state_dict(theirs.state_dict())
    return reference, switch


def train(*learners_, steps=6):
    for x, y in batches(steps):
        for learner in learners_:
            learner.step(x, y)


def test_per_example_playground_is_the_dni_learner_number_for_number():
    reference, switch = pair(per_example=True, hidden_layers=1)
    train(reference, switch)
    assert any(s.net[-1].weight.abs().sum() > 0 for s in switch.synthesizers), "the synthesizers have learned"
    assert equal(reference.model.parameters(), switch.model.parameters())
    assert equal(synthesizer_tensors(reference), synthesizer_tensors(switch))


def test_batch_mean_targets_under_adam_give_another_run():
    reference, switch = pair(per_example=False, hidden_layers=1)
    train(reference, switch)
    assert not equal(reference.model.parameters(), switch.model.parameters())


def sgd_twins(hidden_layers):
    """PlaygroundDNI with per-example and with batch-mean targets, same network and synthesizers, plain SGD."""
    torch.manual_seed(0)
    model = models.fcn(3, hidden=32)
    twins = []
    for per_example in (True, False):
        torch.manual_seed(1)   # the same synthesizers for both
        twins.append(PlaygroundDNI(copy.deepcopy(model), 0.1, per_example=per_example, hidden_layers=hidden_layers,
                                   hidden=16, optimizer=torch.optim.SGD))
    train(*twins, steps=20)
    return twins


def test_under_sgd_a_linear_synthesizer_does_not_care_about_the_target_scale():
    per_example, batch_mean = sgd_twins(hidden_layers=0)
    assert equal(per_example.model.parameters(), batch_mean.model.parameters())
    for s, t in zip(per_example.synthesizers, batch_mean.synthesizers):
        assert s.net[-1].weight.abs().sum() > 0
        assert equal(s.parameters(), [p * BATCH for p in t.parameters()])


def test_under_sgd_a_hidden_layer_in_the_synthesizer_breaks_the_equivalence():
    per_example, batch_mean = sgd_twins(hidden_layers=1)
    assert not equal(per_example.model.parameters(), batch_mean.model.parameters())
