import pytest
import torch

from helpers import config


def test_sizes_and_paper_schedule():
    paper = config.run_size("paper")
    assert (paper.iterations, paper.batch_size, paper.lr) == (500_000, 256, 3e-5)
    assert paper.milestones() == [300_000, 400_000]
    assert config.run_size("smoke").iterations < config.run_size("quick").iterations < paper.iterations


def test_fcn_depths_keep_both_ends_of_the_papers_range():
    assert config.fcn_depths("paper") == {"sweep": [3, 4, 5, 6], "unlock": [3, 4]}
    for name in ("smoke", "quick", "long"):       # long reads quick's table
        depths = config.fcn_depths(name)
        assert depths["sweep"][0] == 3 and depths["sweep"][-1] == 6 and depths["unlock"] == [3]


def test_size_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SG_SIZE", "paper")
    assert config.run_size().name == "paper"
    monkeypatch.delenv("SG_SIZE")
    assert config.run_size().name == config.DEFAULT_SIZE == "quick"


def test_unknown_size_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SG_SIZE", "huge")
    with pytest.raises(ValueError, match=r"Unknown run size 'huge'.*smoke, quick, long, paper"):
        config.run_size()


def test_setup_prints_size_and_seeds(capsys):
    size, dev = config.setup(seed=3, size="smoke")
    first = torch.rand(3)
    config.setup(seed=3, size="smoke")
    assert torch.equal(first, torch.rand(3))
    out = capsys.readouterr().out
    assert "smoke" in out and str(dev) in out and size.name == "smoke"


def test_device_override(monkeypatch):
    monkeypatch.setenv("SG_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
