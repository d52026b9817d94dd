"""The reference tier (helpers/reference.py, scripts/seeds.py) and the side-by-side Table 1 (scripts/results_table.py):
verdicts only where seeds separate, the paper's cells, the DNI depth chosen on held-out data, the work queue."""
import json
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from helpers import config, data, models, reference, results  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import results_table  # noqa: E402
import seeds  # noqa: E402

LONG = json.loads(json.dumps(config.run_size("long").as_dict()))


def run(label, layers, seed, accuracy, method=None):
    history = {"iteration": [1000, 2000], "test_accuracy": [accuracy - 0.01, accuracy]}
    return {"method": method or label.split("_")[0], "layers": layers, "iterations": 25_000, "test_accuracy": accuracy,
            "label": label, "seed": seed, "schedule": LONG, "history": history}


def write(folder, stem, runs):
    results.write_json(folder / f"{stem}.json", {"notebook": stem, "size": "long", "runs": runs})


@pytest.fixture
def tier(tmp_path, monkeypatch):
    """A small committed tier: backprop and cDNI at 3 layers over 3 seeds, a finished DNI search at 3 layers."""
    runs = [run("backprop", 3, s, a) for s, a in enumerate([0.981, 0.982, 0.983])]
    runs += [run("cdni", 3, s, a) for s, a in enumerate([0.984, 0.985, 0.986])]
    runs += [run("dni_1x1024", 3, s, a, "dni") for s, a in enumerate([0.975, 0.980, 0.990])]
    write(tmp_path, "seeds_long", runs)
    write(tmp_path, "dni_search_long", [run("dni_linear", 3, 0, 0.95, "dni"), run("dni_1x1024", 3, 0, 0.97, "dni"),
                                        run("dni_paper", 3, 0, 0.97, "dni")])
    monkeypatch.setattr(reference, "COMMITTED", tmp_path)
    return tmp_path


def test_a_difference_is_called_only_where_every_seed_separates():
    assert reference.verdict([0.98, 0.99, 0.985], [0.97, 0.975, 0.979]) == "higher on every seed"
    assert reference.verdict([0.97, 0.975, 0.979], [0.98, 0.99, 0.985]) == "lower on every seed"
    assert reference.verdict([0.97, 0.99, 0.98], [0.975, 0.985, 0.98]) == "no clear difference"
    assert reference.verdict([0.99, 0.99], [0.9, 0.9, 0.9]).startswith("fewer than 3 seeds")


def test_our_cell_is_better_or_worse_than_the_papers_only_on_every_seed():
    assert reference.mark([0.99, 0.985, 0.982], 2.0) == "better"          # errors 1.0, 1.5, 1.8 < 2.0
    assert reference.mark([0.97, 0.975, 0.979], 2.0) == "worse"           # errors 3.0, 2.5, 2.1 > 2.0
    assert reference.mark([0.99, 0.97, 0.98], 2.0) == "within our spread"
    assert reference.paper_accuracy("cdni", 6) == pytest.approx(0.984)     # Table 1: 1.6% error
    assert reference.paper_accuracy("critic", 3) is None
    assert reference._method("dni_paper") == "dni", "the paper's DNI column is its 2x1024 synthesizer"
    assert reference._method("dni_linear") == "dni_linear", "a linear DNI has no cell of its own in Table 1"


def test_compare_reads_both_sizes_and_the_paper(tier, capsys):
    verdicts = reference.compare("cdni", "backprop", 3)
    assert verdicts["long"] == "higher on every seed"
    assert verdicts["quick"] == "no seeds at this size"                  # no seeds_quick.json in this tier
    out = capsys.readouterr().out
    assert "paper cdni 97.8% vs backprop 98.0%" in out
    assert "quick cdni vs backprop: no quick-size seeds at 3 layers" in out


def test_compare_says_when_only_one_side_has_seeds(tier, capsys):
    verdicts = reference.compare("cdni", "critic", 3)       # cDNI has long seeds in this tier, the critic none
    assert verdicts["long"] == "not in the reference tier yet"
    assert "critic not yet run" in capsys.readouterr().out


def test_the_dni_depth_is_chosen_on_validation_ties_going_to_the_smaller_synthesizer(tier):
    label, scores = reference.chosen_dni(3)
    assert label == "dni_1x1024" and scores["dni_paper"] == scores["dni_1x1024"]
    assert reference.chosen_dni(4) == (None, {})
    assert reference.dni_for_table(4)[0] == "dni_paper"


def test_table1_lays_our_seeds_beside_the_papers_cells(tier, monkeypatch):
    monkeypatch.setattr(reference, "COMMITTED", tier / "elsewhere")     # README's table reads the folder it is given
    out = results_table.table1(tier)
    row = next(line for line in out.splitlines() if line.startswith("| FCN | 3 |"))
    assert "| 2.0 | 1.80 (1.70-1.90), n=3: better |" in row                     # backprop: 1.9 / 1.8 / 1.7 % error
    assert "| 1.9 | 1.83 (1.00-2.50), n=3: within our spread |" in row          # DNI: the chosen 1x1024's seeds
    assert "| 2.2 | 1.50 (1.40-1.60), n=3: better |" in row                     # cDNI
    assert "| 9.3 | not yet run |" in row
    assert "DNI at 3 layers: dni_1x1024, chosen on validation" in out


def test_plot_converged_draws_every_seed_the_quick_run_and_the_papers_marker(tier):
    class Quick:
        iteration, test_accuracy = [100, 200], [0.9, 0.95]
    fig = reference.plot_converged(["backprop", "cdni"], 3, quick={"cdni": Quick()})
    lines = fig.axes[0].get_lines()
    assert sum(len(line.get_xdata()) == 2 and line.get_linestyle() == "-" for line in lines) == 6   # 3 seeds x 2
    assert any(line.get_linestyle() == "--" for line in lines), "the quick run is drawn dashed"
    assert sum(line.get_marker() == "<" for line in lines) == 2, "one Table 1 marker per method"
    low = reference.plot_converged(["backprop"], 3, quick={"backprop": Quick(), "cdni": Quick()})
    assert low.axes[0].get_ylim()[0] <= 0.95, "a quick run far below the long ones stays in view"


def test_plot_table1_draws_our_seeds_as_errors_beside_the_papers_cells_by_depth(tier):
    fig = reference.plot_table1()
    ax = fig.axes[0]
    paper = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines() if "the paper" in line.get_label()}
    assert paper["DNI, the paper (500k, one run)"] == [1.9, 2.2, 3.4, 4.3], "the paper's errors at 3-6 layers"
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(round(y, 2) for line in dots for y in line.get_ydata()) == sorted(
        [1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 2.5, 2.0, 1.0]), "every seed of ours, as test error in percent"
    ours = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines() if "ours" in line.get_label()}
    assert [round(y, 2) for y in ours["DNI, ours (long, dots: seeds)"]] == [1.83], "a depth without runs is left out"
    assert [t.get_text() for t in ax.texts] == ["1x1024"], "DNI's mean is named by the synthesizer it used"


def test_plot_converged_draws_the_cnn_rows_on_their_own_schedule_beside_the_papers_cnn_cells(tier):
    cnn = [dict(run(f"cnn_{m}", 3, s, a), history={"iteration": [2500, 5000], "test_accuracy": [a - 0.01, a]})
           for m, a in (("backprop", 0.99), ("dni", 0.97)) for s in range(3)]
    write(tier, "cnn_long", cnn)
    fig = reference.plot_converged(["cnn_backprop", "cnn_dni"], 3, split="cnn")
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == pytest.approx(5_200), "the axis ends with the CNN schedule, not at 25,000"
    markers = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "<")
    assert markers == pytest.approx([0.991, 0.992]), "the paper's CNN cells (DNI 0.9%, backprop 0.8% error)"
    assert "MNIST CNN" in ax.get_title()
    assert "dotted" not in ax.get_xlabel() and "quick" not in ax.get_title(), "no quick run, so no key for one"
    assert "triangles" in ax.get_xlabel()
    quick = reference.plot_converged(["backprop"], 3, quick={"backprop": type("Q", (), {"iteration": [1], "test_accuracy": [0.9]})})
    assert "dotted" in quick.axes[0].get_xlabel() and "long + quick" in quick.axes[0].get_title()


def test_the_validation_split_never_touches_the_test_set():
    x = torch.arange(20.0).view(20, 1, 1, 1)
    y = torch.arange(20)
    d = data.Dataset("toy", x, y, x[:3] + 100, y[:3])
    split = seeds.validation_split(d, n=5)
    assert split.x_train.shape[0] == 15 and torch.equal(split.y_test, torch.arange(15, 20))
    assert not (split.x_test >= 100).any(), "validation images come from the training set"


def test_the_queue_skips_finished_and_claimed_runs_and_waits_for_the_search(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    size = config.run_size("long")
    monkeypatch.setitem(seeds.PLAN, "long", [("backprop", 3, "test", 0), ("cdni", 3, "test", 0),
                                             ("dni_chosen", 3, "test", 0), ("dni_linear", 3, "validation", 0)])
    write(tmp_path, "seeds_long", [run("backprop", 3, 0, 0.98)])
    assert seeds._claim(size) == ("cdni", 3, "test", 0)        # backprop is finished
    assert seeds._claim(size) == ("dni_linear", 3, "validation", 0), "cdni is claimed by this live process"
    assert seeds._claim(size) is None, "DNI waits for a complete search"
    write(tmp_path, "dni_search_long", [run("dni_linear", 3, 0, 0.95, "dni"), run("dni_1x1024", 3, 0, 0.96, "dni"),
                                        run("dni_paper", 3, 0, 0.97, "dni")])
    assert seeds._claim(size) == ("dni_paper", 3, "test", 0)


def test_the_cnn_rows_come_before_the_costly_search_on_their_own_schedule():
    plan = seeds.PLAN["long"]
    cnn = [item for item in plan if item[2] == "cnn" and item[0] in seeds.CNN_LABELS]
    first = plan.index(cnn[0])
    assert plan[first:first + len(cnn)] == cnn and len(cnn) == 24, "together: 4 methods x 2 depths x 3 seeds"
    chosen = [("dni_chosen", n, "test", s) for n in (3, 4, 5, 6) for s in (0, 1, 2)]
    after = [(label, 3, "cnn", s) for label in ("cnn_dgl", "cnn_dni_linear") for s in (0, 1, 2)]   # notebook 10's
    assert plan[first + len(cnn):] == chosen + after + [("dni_paper", n, "validation", 0) for n in (4, 5, 6)], \
        "then DNI's seeds at each depth whose search is complete, notebook 10's CNN runs, the 2x1024 search at 4-6 layers"
    assert len(plan) == len(set(plan)) == 144, "every run once"
    assert {(label, layers) for label, layers, _, _ in cnn} == {(f"cnn_{m}", n) for m in
                                                              ("backprop", "nobackprop", "dni", "cdni") for n in (3, 4)}
    size = config.run_size("long")
    assert seeds._schedule(size, "cnn")["name"] == "long-cnn" and seeds._schedule(size, "test") == LONG


def test_a_cnn_row_is_trained_into_its_own_file_and_leaves_the_fcn_runs_alone(tmp_path, monkeypatch, mnist_small):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    size = config.run_size("smoke")
    smoke = json.loads(json.dumps(size.as_dict()))
    fcn = dict(run("backprop", 3, 0, 0.9), schedule=smoke)
    paths = seeds._paths(size)
    results.write_json(paths["test"], {"notebook": "seeds_smoke", "size": "smoke", "runs": [fcn]})
    built, cnn = [], models.cnn
    monkeypatch.setattr(seeds.models, "cnn", lambda *a, **k: built.append(k["channels"]) or cnn(*a, **k))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = seeds.train_one("cnn_cdni", 3, "cnn", 0, size, torch.device("cpu"), mnist_small)
    finally:
        torch.set_num_threads(threads)
    assert built == [config.CNN_TIER["smoke"]["channels"]], "notebook 07's CNN, at the tier's filters"
    assert record["net"] == "cnn" and record["channels"] == config.CNN_TIER["smoke"]["channels"]
    assert record["schedule"]["name"] == "smoke-cnn" and record["history"]["iteration"][-1] == 20
    saved = results.load_results(paths["cnn"])["runs"]
    assert [(r["label"], r["layers"], r["seed"]) for r in saved] == [("cnn_cdni", 3, 0)]
    assert results.load_results(paths["test"])["runs"] == [fcn], "the FCN file is untouched"
    assert seeds._finished(paths["cnn"], seeds._schedule(size, "cnn")).keys() == {("cnn_cdni", 3, 0)}
    assert seeds._finished(paths["cnn"], smoke) == {}, "a CNN run never counts on the FCN schedule"


def test_the_cnn_rows_of_table1_read_their_own_file_once_it_exists(tier, capsys):
    out = results_table.table1(tier)
    assert "| CNN | 3 | 0.9 | not yet (below) |" in out and "queued in the reference tier" in out
    assert all(not ours for _, ours, _ in reference.table1("cnn").values()), "nothing before the file exists"
    write(tier, "cnn_long", [run("cnn_backprop", 3, s, a, "backprop") for s, a in enumerate([0.990, 0.991, 0.993])])
    row = next(line for line in results_table.table1(tier).splitlines() if line.startswith("| CNN | 3 |"))
    assert "| 0.8 | 0.87 (0.70-1.00), n=3: within our spread |" in row and "| 0.9 | not yet (below) |" in row
    cells = reference.table1("cnn")
    assert set(cells) == {(n, m) for n in (3, 4) for m in ("nobackprop", "backprop", "dni", "cdni")}
    assert cells[3, "backprop"][0] == 0.8 and [round(e, 2) for e in cells[3, "backprop"][1]] == [1.0, 0.9, 0.7]
    assert cells[4, "backprop"][1] == [] and "not yet in the reference tier" in capsys.readouterr().out
    assert "3 of 24 runs finished" in results_table.table1(tier)
    write(tier, "cnn_long", [run("cnn_backprop", 3, s, a, "backprop") for s, a in enumerate([0.990, 0.991, 0.993])]
          + [run("cnn_dgl", 3, 0, 0.98, "dgl")])
    out = results_table.table1(tier)
    assert "3 of 24 runs finished" in out and "1 of notebook 10's 6 CNN runs" in out, "notebook 10's runs counted apart"
    assert "| 0.8 | 0.87 (0.70-1.00), n=3: within our spread |" in out
    (tier / "seeds_long.json").unlink()
    with pytest.raises(FileNotFoundError, match="make seeds SG_SIZE=long"):
        reference.table1_cells("fcn")                     # the FCN runs are committed: missing is an error, not "not yet"
