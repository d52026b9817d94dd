import sys
from pathlib import Path

import pytest

from helpers import results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import results_table  # noqa: E402


def test_table_puts_published_numbers_beside_ours(tmp_path):
    runs = [{"method": "cdni", "layers": 3, "iterations": 5000, "test_accuracy": 0.9795, "synthesizer_hidden_layers": 0},
            {"method": "dni", "layers": 6, "iterations": 5000, "test_accuracy": 0.91, "synthesizer_hidden_layers": 1}]
    results.save_results("03_cdni", "quick", runs, 12.0, "cpu", directory=tmp_path)
    results.save_results("03_cdni", "smoke", runs, 1.0, "cpu", directory=tmp_path)   # must not be read
    out = results_table.render(tmp_path).read_text()
    assert "| cdni | 3 | linear + label | 97.95% | 5,000 | 98.01% | S. Pitis" in out
    assert "| dni | 6 | 1 hidden x 1024 | 91.00% | 5,000 |  |  |" in out
    assert "Run size **quick**" in out and "smoke" not in out.split("## Where")[0]


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no results"):
        results_table.render(tmp_path)


def test_cnn_rows_name_their_data_and_never_compare_a_standin(tmp_path):
    runs = [{"method": "dni", "layers": 3, "iterations": 600, "test_accuracy": 0.6, "dataset": "cifar10",
             "channels": 128, "synthesizer_hidden_layers": 2, "synthesizer_filters": 128},
            {"method": "dni", "layers": 3, "iterations": 600, "test_accuracy": 0.9, "dataset": "cifar10-standin",
             "channels": 32, "synthesizer_hidden_layers": 2, "synthesizer_filters": 32},
            {"method": "backprop", "layers": 3, "iterations": 600, "test_accuracy": 0.98, "dataset": "mnist",
             "channels": 32}]
    results.save_results("07_cnn", "quick", runs, 5.0, "cpu", directory=tmp_path)
    out = results_table.render(tmp_path).read_text()
    assert "| dni | 3 | cifar10 | 2 hidden 5x5 convs x 128 | 60.00% | 600 | 64.83% | S. Pitis" in out
    assert "| dni | 3 | cifar10-standin (STAND-IN, not CIFAR-10) | 2 hidden 5x5 convs x 32 | 90.00% | 600 |  |  |" in out
    assert "| backprop | 3 | mnist |  | 98.00% | 600 |  |  |" in out     # the FCN's published 98.01% is not a CNN's


def test_recurrent_notebook_gets_its_own_table_with_every_seed(tmp_path):
    def run(method, window, seed, **extra):
        return {"method": method, "layers": 1, "iterations": 100, "test_accuracy": 0.5, "window": window, "seed": seed,
                **extra}
    runs = [run(m, w, seed, dataset="copy", solved=s + seed) for m, w, s in (("tbptt", 2, 0), ("dni", 2, 2),
                                                                            ("dni_aux", 2, 1), ("tbptt", 5, 3))
            for seed in (1, 0)]
    runs += [run("dni", 5, seed, dataset="pydoc_text", test_bpc=2.3841 + seed / 100) for seed in (0, 1)]
    runs += [run("dni", 2, 0, dataset="copy_fixed", length=2, cos_future=[0.5, 0.1, 0.3],
                 history={"train_loss": [8.0, 1.234]})]
    results.save_results("08_recurrent", "quick", runs, 5.0, "cpu", directory=tmp_path)
    out = results_table.render(tmp_path).read_text()
    assert "| 2 | 0 1 | 2 3 | 1 2 |" in out and "| 5 | 3 4 |  |  |" in out, "seeds in order, per method and window"
    assert "| dni | 5 | 2.384 2.394 | 2.389 |" in out
    assert "| dni | 2 | 2 | 1 | 1.23 | 0.20 |" in out, "the fixed-length run: final error, cosine over the second half"


def test_asynchronous_runs_are_listed_without_published_numbers(tmp_path):
    runs = [{"method": "cdni_p20", "layers": 3, "iterations": 3000, "test_accuracy": 0.9273, "p": 0.2},
            {"method": "pipeline_decoupled", "layers": 7, "iterations": 212, "test_accuracy": 0.8669, "stages": 2,
             "hidden": 1024, "samples_per_s": 2693.0}]
    results.save_results("09_asynchronous", "quick", runs, 5.0, "cpu", directory=tmp_path)
    out = results_table.render(tmp_path).read_text().split("## Where")[0]
    assert "| cdni_p20 | 3 | 92.73% | 3,000 | 0.2 |  |  |  |  |" in out
    assert "| pipeline_decoupled | 7 | 86.69% | 212 |  |  | 2 | 1024 | 2,693 |" in out and "S. Pitis" not in out


def test_seeds_rows_show_the_spread_and_call_a_difference_only_where_seeds_separate(tmp_path):
    schedule = {"name": "long", "iterations": 25000, "lr": 1e-4, "batch_size": 256, "eval_every": 1000,
                "decay_at": [0.6, 0.8], "checkpoint_every": 0}

    def run(label, method, seed, accuracy):
        return {"method": method, "layers": 3, "iterations": 25000, "test_accuracy": accuracy, "label": label,
                "seed": seed, "schedule": schedule, "synthesizer": ""}
    runs = [run("backprop", "backprop", s, a) for s, a in enumerate((0.980, 0.982, 0.981))]
    runs += [run("cdni", "cdni", s, a) for s, a in enumerate((0.9815, 0.979, 0.983))]          # overlaps
    runs += [run("nobackprop", "nobackprop", s, a) for s, a in enumerate((0.88, 0.89, 0.885))]  # separated
    results.save_results("01_backprop_baselines", "quick", runs[:1], 1.0, "cpu", directory=tmp_path)
    results.save_results("seeds_long", "long", runs, 1.0, "cpu", directory=tmp_path)
    out = results_table.render(tmp_path).read_text()
    assert "## Over seeds: long size" in out
    row = next(line for line in out.splitlines() if line.startswith("| cdni |"))
    assert "| 3 | 98.12% | 0.20 | 97.90% - 98.30% |" in row and "no clear difference" in row and "98.01%" in row
    assert "lower (seeds separate)" in next(line for line in out.splitlines() if line.startswith("| nobackprop |"))


def test_the_seeds_experiment_records_every_seed_and_resumes(tmp_path):
    import json
    import os
    import subprocess
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SG_RESULTS": str(tmp_path), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "SG_DEVICE": "cpu"}
    command = [sys.executable, str(root / "scripts" / "seeds.py"), "--size", "smoke", "--methods", "backprop",
               "cdni", "--seeds", "0", "1"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    record = json.loads((tmp_path / "smoke" / "seeds_smoke.json").read_text())
    assert sorted((r["label"], r["seed"]) for r in record["runs"]) == [("backprop", 0), ("backprop", 1), ("cdni", 0), ("cdni", 1)]
    assert len({r["test_accuracy"] for r in record["runs"] if r["label"] == "backprop"}) == 2, "seeds differ"
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert "seed 0:" in first and "seed 0:" not in again, "a finished run is not trained again"


def test_notebook_10_rows_are_per_method_over_seeds_and_call_a_difference_only_where_seeds_separate(tmp_path):
    def run(method, layers, seed, accuracy, **extra):
        return {"method": method, "layers": layers, "iterations": 600, "test_accuracy": accuracy, "seed": seed,
                "experiment": "fcn", **extra}
    runs = [run("backprop", 3, s, a) for s, a in enumerate((0.980, 0.981, 0.982))]
    runs += [run("dgl", 3, s, a) for s, a in enumerate((0.979, 0.9815, 0.983))]                    # overlaps
    runs += [run("dni", 3, s, a, synthesizer_hidden_layers=0) for s, a in enumerate((0.93, 0.94, 0.935))]
    runs += [run("dgl_buffer", 3, s, a, experiment="staleness", buffer_size=16) for s, a in enumerate((0.97, 0.972, 0.971))]
    runs += [run("dgl", 3, 0, 0.95, experiment="cnn", dataset="mnist", channels=16)]
    runs += [run(m, 3, s, a, experiment="cnn", dataset="cifar10-standin", channels=16)
             for m, accs in (("backprop", (0.60, 0.61, 0.62)), ("dgl", (0.50, 0.51, 0.52))) for s, a in enumerate(accs)]
    results.save_results("10_after_dni", "quick", runs, 5.0, "cpu", directory=tmp_path, seeds=[0, 1, 2])
    out = results_table.render(tmp_path).read_text().split("## Where")[0]
    assert "| fcn | mnist | dgl | 3 |  | 600 | 3 | 97.90% 98.15% 98.30% | 98.12% | no clear difference |" in out
    assert "| fcn | mnist | dni | 3 |  | 600 | 3 | 93.00% 94.00% 93.50% | 93.50% | lower (seeds separate) |" in out
    assert "| staleness | mnist | dgl_buffer | 3 | 16 | 600 | 3 |" in out
    assert "| cnn | mnist | dgl | 3 |  | 600 | 1 | 95.00% | 95.00% |  |" in out, "MNIST's CNN is not compared with the stand-in's"
    assert "| cnn | CIFAR-10 STAND-IN (not CIFAR-10) | dgl | 3 |  | 600 | 3 | 50.00% 51.00% 52.00% | 51.00% | lower (seeds separate) |" in out
    assert "CIFAR-10): backprop 84.47%, dni 64.74%, cdni 80.86%, dgl 85.05%." in out


def test_notebooks_read_the_committed_seeds_wherever_results_are_written(monkeypatch, tmp_path):
    """results.seeds reads results/seeds_quick.json that ships with the series, not $SG_RESULTS (where a run writes);
    a difference is called only where the seeds of two methods do not overlap."""
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    accuracies, synthesizers, iterations = results.seeds("quick")
    assert len(accuracies["backprop"]) == 3 and iterations == 5000 and synthesizers["cdni"]
    fake = {"a": [0.90, 0.91, 0.92], "b": [0.80, 0.81, 0.95], "c": [0.5, 0.6, 0.7]}
    assert results.seeds_verdict(fake, "a", "c") == "a higher than c on every seed"
    assert results.seeds_verdict(fake, "c", "a") == "c lower than a on every seed"
    assert "no clear difference" in results.seeds_verdict(fake, "a", "b")
    with pytest.raises(FileNotFoundError, match="make seeds"):
        results.seeds("nosuchsize")


def test_the_recurrent_tier_is_laid_out_beside_the_papers_table_with_every_seed(tmp_path):
    from helpers import recurrent_tier
    assert results_table.recurrent_tier_section(tmp_path) == "", "nothing until the tier has a file"
    today = recurrent_tier.settings("long", "copy")
    runs = [{"method": m, "layers": 1, "iterations": 10, "test_accuracy": 0.5, "dataset": "copy", "window": 2,
             "seed": seed, "solved": solved, "seconds": 1800.0, "settings": today}
            for m, seed, solved in (("tbptt", 0, 0), ("dni", 0, 3), ("dni", 1, 4))]
    runs.append(dict(runs[1], solved=9, settings=dict(today, lr=1.0)))          # other settings: never shown
    results.save_results("recurrent_long", "long", runs, 1.0, "cpu", directory=tmp_path)
    out = results_table.recurrent_tier_section(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("  2  ") and "| 16 " in line)
    assert row.split()[:10] == ["2", "0", ".", ".", "|", "7", "3", "4", ".", "|"], row
    assert "3 runs finished (1.5 core-hours" in out and "arXiv 1608.05343 v1" in out
    text = {"method": "dni", "layers": 1, "iterations": 10, "test_accuracy": 0.5, "dataset": "text", "window": 5,
            "seed": 1, "solved": None, "test_bpc": 1.7345, "seconds": 600.0, "settings": recurrent_tier.settings("long", "text")}
    results.save_results("recurrent_long", "long", runs + [text], 1.0, "cpu", directory=tmp_path)
    out = results_table.recurrent_tier_section(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("  5  ") and "| 1.35 " in line)
    assert row.split()[:10] == ["5", ".", ".", ".", "|", "1.37", ".", "1.734", ".", "|"], row


def test_the_cost_of_the_long_tiers_is_given_per_configuration_and_depth(tmp_path):
    from helpers import recurrent_tier
    assert results_table.cost_section(tmp_path) == "", "nothing until a long tier has a file"
    fcn = [{"label": "cdni", "method": "cdni", "layers": layers, "iterations": 10, "seed": seed, "test_accuracy": 0.98,
            "seconds": seconds} for layers, seed, seconds in ((3, 0, 1200.0), (3, 1, 2400.0), (5, 0, 600.0))]
    results.save_results("seeds_long", "long", fcn, 1.0, "cpu", directory=tmp_path)
    out = results_table.cost_section(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("| MNIST FCN, test seeds | cdni |"))
    assert row.split(" | ")[2:] == ["30 (20-40) min, n=2", "10 min, n=1", "1.17 |"], row
    assert "In all 1.2 core-hours" in out and "recurrent" not in out
    copy = recurrent_tier.settings("long", "copy")
    recurrent = [{"method": "dni", "layers": 1, "iterations": 10, "test_accuracy": 0.5, "dataset": "copy", "window": window,
                  "seed": 0, "solved": 2, "seconds": seconds,
                  "settings": copy} for window, seconds in ((2, 360.0), (4, 1800.0))]
    recurrent.append(dict(recurrent[0], settings=dict(copy, lr=1.0), seconds=99999.0))     # superseded: not counted
    results.save_results("recurrent_long", "long", recurrent, 1.0, "cpu", directory=tmp_path)
    out = results_table.cost_section(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("| copy | dni |"))
    assert row.split(" | ")[2:] == ["6 min, n=1", "30 min, n=1", "0.60 |"], row
