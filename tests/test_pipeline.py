"""One process per stage: locked = backprop, decoupled learns, failures are reported, nothing is left behind."""
import multiprocessing
import time

import pytest
import torch

from helpers import data as datasets
from helpers import pipeline, training


def no_children_left():
    return not pipeline.leftover_processes()


@pytest.fixture(scope="module")
def small(mnist):
    return datasets.Dataset("mnist-small", mnist.x_train[:4096], mnist.y_train[:4096],
                            mnist.x_test[:1000], mnist.y_test[:1000])


def test_split_gives_each_stage_consecutive_blocks():
    assert pipeline.split(5, 2) == [[0, 1], [2, 3, 4]]
    assert pipeline.split(9, 4) == [[0, 1], [2, 3], [4, 5], [6, 7, 8]]


def test_locked_pipeline_equals_single_process_backprop(small):
    config = pipeline.PipelineConfig(stages=2, mode="locked", hidden=32, batch_size=64, steps=5, lr=1e-3, timeout=20)
    reports = pipeline.launch(config, small)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in the stages
    try:
        model = pipeline.build_model(config)
        learner = training.Backprop(model, config.lr)
        batches = datasets.random_batches(len(small.x_train), config.batch_size, "cpu",
                                          torch.Generator().manual_seed(config.seed))
        for _ in range(config.steps):
            index = next(batches)
            learner.step(small.x_train[index], small.y_train[index])
    finally:
        torch.set_num_threads(threads)
    piped = pipeline.assemble(config, reports)
    pairs = list(zip(model.state_dict().values(), piped.state_dict().values()))
    assert all(torch.allclose(a.float(), b.float(), atol=1e-6) for a, b in pairs)
    assert not torch.equal(model[0][1].weight, pipeline.build_model(config)[0][1].weight), "training moved them"
    assert no_children_left()


def test_decoupled_two_stages_learn_without_waiting(small):
    config = pipeline.PipelineConfig(stages=2, mode="decoupled", hidden=64, batch_size=64, steps=150, lr=1e-3,
                                     max_lag=3, timeout=20)
    reports = pipeline.launch(config, small)
    row = pipeline.summary(config, reports, small)
    assert row["test_accuracy"] > 0.5, row   # chance is 0.1
    assert 0 < row["staleness"] <= config.max_lag + 1, "targets arrive late, but never more than max_lag + 1"
    assert all(r["listening"] in ([], ["127.0.0.1"]) for r in reports), "gloo listens on the loopback only"
    assert no_children_left()


@pytest.mark.parametrize("fault", ["die", "stall"])
def test_a_dead_or_stalled_stage_is_reported_in_bounded_time(small, fault):
    config = pipeline.PipelineConfig(stages=2, mode="decoupled", hidden=32, batch_size=64, steps=50, timeout=2,
                                     fault=(1, 3, fault))
    start = time.monotonic()
    with pytest.raises(pipeline.PipelineError, match="stage"):
        pipeline.launch(config, small)
    assert time.monotonic() - start < 15
    assert no_children_left()


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        pipeline.PipelineConfig(mode="async")
    with pytest.raises(ValueError, match="stages"):
        pipeline.PipelineConfig(stages=1)
