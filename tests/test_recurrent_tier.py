"""The long recurrent tier (scripts/recurrent.py, helpers.recurrent_tier, rnn.train_copy with a checkpoint), at the smoke
size: two workers claim each run once, a killed run resumes to the bit, a finished run is never trained again, the
report sets our seeds beside the paper's cells, and a missing results file names the command that makes it."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from helpers import config, recurrent_tier, results, rnn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import recurrent  # noqa: E402
from seeds import locked  # noqa: E402

CPU = torch.device("cpu")


class Killed(Exception):
    """Stands for the process being killed: nothing after it runs."""


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Results and checkpoints in a temporary folder, for this process and the ones it starts."""
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setenv("SG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def without_seconds(record):
    record = json.loads(json.dumps(record))
    record.pop("seconds")
    record["history"].pop("seconds")
    return record


def test_resumable_training_is_train_copy_to_the_bit(tmp_path, one_thread):
    """In pieces with a checkpoint after each, a run is the run `train_copy` trains in one go, to the bit; a
    checkpoint is resumed only by the run that wrote it."""
    options = dict(hidden=12, batch=4, log_every=4, seed=3, progress=False, device=CPU, measure=True, repeat=True)
    whole, expected = rnn.train_copy("dni_aux", 2, 40, **options)
    pieces, history = rnn.train_copy("dni_aux", 2, 40, checkpoint=tmp_path / "run.pt", checkpoint_every=8, **options)
    strip = [h.as_dict() | {"seconds": None} for h in (expected, history)]
    assert strip[0] == strip[1] and "cos_future" in history.extra and len(history.iteration) == 10
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), pieces.model.state_dict().values()))
    with pytest.raises(ValueError, match="another run"):
        rnn.train_copy("dni", 2, 40, checkpoint=tmp_path / "run.pt", checkpoint_every=8, **options)


def test_a_killed_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(folders, monkeypatch, one_thread):
    """Killed in the middle of a piece, a run of the script resumes from its last checkpoint (not from the start) and
    records what an uninterrupted run records, every number but the seconds equal."""
    run = ("repeat_copy", "dni_aux", 2, 1)
    real = rnn.WindowedTrainer.step
    calls, resuming = [], False

    def killed(self, *window):     # the process dies half-way through the third piece of 20 windows
        calls.append(1)
        if len(calls) == 50 and not resuming:
            raise Killed
        return real(self, *window)

    monkeypatch.setattr(rnn.WindowedTrainer, "step", killed)
    with pytest.raises(Killed):
        recurrent.train_one("smoke", run, CPU)
    assert recurrent.checkpoint_file("smoke", run).exists() and not recurrent.results_file("smoke").exists()
    calls.clear()
    resuming = True
    resumed = recurrent.train_one("smoke", run, CPU)
    assert len(calls) == 120 - 40, "resumed from the checkpoint after 40 of 120 windows, not from the start"
    assert not recurrent.checkpoint_file("smoke", run).exists(), "a finished run's checkpoint is removed"
    monkeypatch.setattr(results, "RESULTS_DIR", folders / "uninterrupted")
    monkeypatch.setenv("SG_CHECKPOINTS", str(folders / "uninterrupted"))
    uninterrupted = recurrent.train_one("smoke", run, CPU)
    assert without_seconds(resumed) == without_seconds(uninterrupted)
    assert resumed["history"]["extra"]["cos_future"] and len(resumed["history"]["extra"]["level"]) == 6


def test_a_second_claimer_gets_another_run_and_a_dead_workers_claim_is_dropped(folders):
    queue = recurrent.plan("smoke", tasks=["copy"], windows=[2], seeds=[0])
    other = os.getppid()                                     # a live process that is not this one
    assert recurrent.claim("smoke", queue) == queue[0]
    assert recurrent.claim("smoke", queue, pid=other) == queue[1], "a run claimed by a live worker is left to it"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims = recurrent.results_file("smoke").with_name(".recurrent_smoke.claims.json")
    record = json.loads(claims.read_text())
    record["|".join(map(str, queue[0]))] = dead.pid
    claims.write_text(json.dumps(record))
    assert recurrent.claim("smoke", queue, pid=other) == queue[0], "a dead worker's run is claimed again"
    assert recurrent.claim("smoke", queue) == queue[2]
    assert recurrent.claim("smoke", queue) is None


def test_a_claim_waits_for_the_lock(folders):
    """Reading the claims and writing one's own is one step under the file lock, so two workers cannot both
    read a run as free before either has written its claim."""
    queue = recurrent.plan("smoke", tasks=["copy"], windows=[2], seeds=[0])
    claimed = []
    with locked(recurrent.results_file("smoke")):            # another worker is claiming
        claimer = threading.Thread(target=lambda: claimed.append(recurrent.claim("smoke", queue)))
        claimer.start()
        claimer.join(timeout=1.0)
        assert claimer.is_alive() and not claimed, "the claim waited for the lock"
    claimer.join()
    assert claimed == [queue[0]]


def test_a_finished_run_is_not_trained_again(folders, monkeypatch, one_thread):
    queue = recurrent.plan("smoke", tasks=["copy"], methods=["tbptt"], windows=[3], seeds=[2])
    recurrent.worker("smoke", 0, queue)
    before = recurrent.results_file("smoke").read_text()
    recurrent.results_file("smoke").with_name(".recurrent_smoke.claims.json").unlink()    # a later session: no claims
    assert recurrent.claim("smoke", queue) is None
    monkeypatch.setattr(rnn, "train_copy", lambda *a, **k: pytest.fail("a finished run was trained again"))
    recurrent.worker("smoke", 1, queue)
    assert recurrent.results_file("smoke").read_text() == before


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """`scripts/recurrent.py` with two worker processes on copy at T = 2, every method, seeds 0 and 1 (6 runs)."""
    folder = tmp_path_factory.mktemp("two_workers")
    env = {**os.environ, "SG_RESULTS": str(folder / "results"), "SG_CHECKPOINTS": str(folder / "checkpoints"),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "recurrent.py"), "--size", "smoke", "--tasks", "copy",
               "--windows", "2", "--seeds", "0", "1"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(command + ["--workers", "1"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((folder / "results" / "smoke" / "recurrent_smoke.json").read_text())
    return first.stdout, again.stdout, record, folder / "results"


def test_two_worker_processes_claim_each_run_once(two_workers):
    first, again, record, _ = two_workers
    trained = [line.split("training ")[1] for line in first.splitlines() if " training " in line]
    expected = ["|".join(map(str, run)) for run in recurrent.plan("smoke", tasks=["copy"], windows=[2], seeds=[0, 1])]
    assert sorted(trained) == sorted(expected), "every run trained exactly once"
    assert sorted("|".join(map(str, (r["dataset"], r["method"], r["window"], r["seed"]))) for r in record["runs"]) \
        == sorted(expected)
    assert " training " not in again, "nothing trained twice"
    run = record["runs"][0]
    assert run["threads"] == 1 and run["cpu"] and run["seconds"] > 0 and len(run["history"]["extra"]["level"]) == 6


def test_the_report_prints_the_papers_cells_beside_our_seeds(two_workers):
    first, _, record, _ = two_workers
    solved = {(r["method"], r["seed"]): r["solved"] for r in record["runs"]}
    row = next(line for line in first.splitlines() if line.startswith("  2  "))      # copy, T = 2
    cells = row[5:].split()
    ours = [f"{solved[m, 0]} {solved[m, 1]} . | {recurrent_tier.PAPER['copy'][m][2]}"      # seed 2: not trained
            for m in rnn.METHODS]
    assert " ".join(cells[:15]) == " ".join(ours), row
    assert "| 7 " in row and "| 16 " in row and row.endswith("| 2.3x"), "the paper's tBPTT 7 and DNI 16 at T = 2"
    assert "arXiv v1" in first and "6 of 42 runs of the plan finished" in first


def test_our_ratio_waits_for_every_seed_of_both_methods():
    def run(method, seed, solved):
        return {"dataset": "copy", "method": method, "window": 2, "seed": seed, "solved": solved}
    found = [run("tbptt", s, 1) for s in (0, 1, 2)] + [run("dni", s, 2) for s in (0, 1)]
    row = next(line for line in recurrent_tier.table(found, "copy").splitlines() if line.startswith("  2  "))
    assert row.endswith("  - | 2.3x"), f"two DNI seeds of three: no ratio of ours yet: {row}"
    row = next(line for line in recurrent_tier.table(found + [run("dni", 2, 3)], "copy").splitlines()
               if line.startswith("  2  "))
    assert row.endswith("  2.0x | 2.3x"), row


def test_a_missing_results_file_names_the_command_that_makes_it(folders, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"make recurrent SG_SIZE=long"):
        recurrent_tier.runs("long", folders)
    monkeypatch.setattr(sys, "argv", ["recurrent.py", "--size", "smoke", "--report"])
    with pytest.raises(SystemExit, match=r"recurrent_smoke.json is missing: `make recurrent SG_SIZE=smoke` makes it"):
        recurrent.main()


def test_notebook_08_reads_the_runs_and_draws_the_level_per_window(two_workers):
    *_, folder = two_workers
    found = recurrent_tier.runs("smoke", folder)
    assert len(found) == 6 and {len(h.extra["level"]) for h in recurrent_tier.histories(found, "copy")} == {6}
    fig = recurrent_tier.plot_levels(found, "copy", "smoke")
    assert [ax.get_title() for ax in fig.axes] == ["T = 2\npaper: truncated BPTT 7, DNI 16, DNI + Aux 16"]
    assert len(fig.axes[0].lines) == 6 + 1 and "smoke" in fig._suptitle.get_text(), "six runs and the N >= T line"
    with pytest.raises(ValueError, match="no repeat_copy runs"):
        recurrent_tier.plot_levels(found, "repeat_copy", "smoke")


def test_tied_runs_of_different_methods_are_drawn_apart():
    """Copy at T = 4 solves N = 2 on every run of every method: no method's lines may hide another's."""
    runs = [{"method": m, "seed": s, "window": 4, "dataset": "copy"} for m in rnn.METHODS for s in (0, 1, 2)]
    _, _, [(_, _, drawn)] = recurrent_tier._panels(runs, "copy runs")
    offsets = [offset for _, offset, _ in drawn]
    assert len(set(offsets)) == len(runs), "every (method, seed) at its own height"
    assert max(abs(o) for o in offsets) < 0.25, "still closer to its own level than to the next"


def test_the_cosine_is_averaged_per_level_trained_and_skips_points_with_nothing_measured():
    nan = float("nan")
    run = {"history": {"extra": {"level": [1, 1, 2, 2, 2, 3], "cos_future": [0.2, 0.4, nan, 0.1, -0.1, 0.05]}}}
    by_level = recurrent_tier.cosine_by_level(run)
    assert list(by_level) == [1, 2, 3]
    assert by_level[1] == pytest.approx(0.3) and by_level[2] == pytest.approx(0.0) and by_level[3] == 0.05
    assert recurrent_tier.cosine_by_level({"history": {"extra": {"level": [1, 2]}}}) == {}, "truncated BPTT: none"
    assert recurrent_tier.cosine_by_level({"history": {"extra": {"valid_bpc": [2.0]}}}) == {}, "the character model: none"


def test_the_error_at_a_level_keeps_only_the_log_points_that_trained_it_and_draws_one_line_per_run():
    def run(method, seed, levels, losses):
        return {"dataset": "repeat_copy", "window": 3, "method": method, "seed": seed,
                "history": {"iteration": [10, 20, 30, 40], "train_loss": losses, "extra": {"level": levels}}}
    found = [run("tbptt", 0, [1, 2, 2, 2], [5.0, 4.0, 4.1, 4.2]), run("dni", 0, [1, 2, 2, 3], [5.0, 3.0, 2.0, 1.0]),
             run("dni", 1, [1, 1, 1, 1], [6.0, 5.0, 4.0, 3.0])]
    assert recurrent_tier.error_at_level(found[1], 2) == ([60, 90], [3.0, 2.0]), "characters = iterations x T"
    assert recurrent_tier.error_at_level(found[2], 2) == ([], [])
    fig = recurrent_tier.plot_error_at_level(found, "repeat_copy", 3, 2, "smoke")
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) > 1 or line.get_label().startswith("threshold")]
    assert [list(line.get_ydata()) for line in lines[:2]] == [[4.0, 4.1, 4.2], [3.0, 2.0]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == \
        ["truncated BPTT", "DNI", f"threshold to move on ({recurrent_tier.THRESHOLD})"]
    late = [found[0], run("dni", 0, [1, 1, 1, 1], [6.0, 5.0, 4.0, 3.0]), run("dni", 1, [1, 2, 2, 3], [5.0, 3.0, 2.0, 1.0])]
    fig = recurrent_tier.plot_error_at_level(late, "repeat_copy", 3, 2, "smoke")
    assert "DNI" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()], "named though its seed 0 never got there"
    with pytest.raises(ValueError, match="trained N = 5"):
        recurrent_tier.plot_error_at_level(found, "repeat_copy", 3, 5)


def test_notebook_08_draws_the_cosine_per_level_for_the_runs_with_a_synthesizer(two_workers):
    *_, folder = two_workers
    found = recurrent_tier.runs("smoke", folder)
    fig = recurrent_tier.plot_cosine_by_level(found, "copy", "smoke")
    lines = [line for line in fig.axes[0].lines if line.get_marker() == "o"]
    assert len(lines) == 4, "DNI and DNI + Aux, seeds 0 and 1; truncated BPTT has no synthesizer"
    assert "smoke" in fig._suptitle.get_text() and fig.axes[0].get_title() == "T = 2"


def test_runs_with_other_settings_are_kept_but_not_counted(folders):
    today = recurrent_tier.settings("smoke", "copy")
    record = {"dataset": "copy", "method": "dni", "window": 2, "seed": 0, "solved": 1, "settings": today, "layers": 1,
              "iterations": 10, "test_accuracy": 0.5}
    older = dict(record, solved=3, settings=dict(today, lr=today["lr"] * 10))
    results.save_results("recurrent_smoke", "smoke", [older, record], 1.0, "cpu")
    assert [r["solved"] for r in recurrent_tier.runs("smoke", results.RESULTS_DIR)] == [1]
    assert [r["solved"] for r in recurrent_tier.superseded("smoke", results.RESULTS_DIR)] == [3]
    assert recurrent.finished("smoke") == {("copy", "dni", 2, 0)}


def test_the_character_model_stops_early_on_validation_and_resumes_to_the_bit(tmp_path, one_thread):
    """The tier's character model: held-out bits on validation and test at every log, the reported test bits taken
    where validation is lowest (early stopping; never where the test bits are lowest), and in pieces with a
    checkpoint the run `train_text` trains in one go, to the bit."""
    text = "".join(chr(97 + (i * i + i // 7) % 26) for i in range(12_000))
    codes = {name: torch.tensor([ord(c) - 97 for c in part]) for name, part in
             (("train", text[:8_000]), ("valid", text[8_000:10_000]), ("test", text[10_000:]))}
    options = dict(hidden=12, batch=4, lr=1e-2, log_every=5, seed=1, progress=False, device=CPU, valid_codes=codes["valid"])
    whole, expected = rnn.train_text("dni", 3, 40, codes["train"], codes["test"], 26, **options)
    pieces, history = rnn.train_text("dni", 3, 40, codes["train"], codes["test"], 26, checkpoint=tmp_path / "text.pt",
                                     checkpoint_every=10, **options)
    strip = [h.as_dict() | {"seconds": None} for h in (expected, history)]
    assert strip[0] == strip[1] and len(history.extra["valid_bpc"]) == len(history.extra["test_bpc"]) == 8
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), pieces.model.state_dict().values()))
    valid, test = history.extra["valid_bpc"], history.extra["test_bpc"]
    best = valid.index(min(valid))
    assert history.meta["stopped_at"] == history.iteration[best] and history.meta["test_bpc_stopped"] == test[best]
    assert history.meta["test_bpc"] == pytest.approx(test[-1]), "the bits at the end are the last log's"
    made_up = rnn.History("dni", 1)
    made_up.iteration, made_up.extra = [5, 10, 15], {"valid_bpc": [2.0, 1.8, 1.9], "test_bpc": [1.7, 1.9, 1.6]}
    assert rnn.early_stopped(made_up) == (10, 1.9), "stopped where validation is lowest, not where the test is"


def test_the_plan_trains_the_character_model_first_with_truncated_bptt_and_dni():
    queue = recurrent.plan("long")
    windows = config.RECURRENT_TIER["long"]["text_windows"]
    text = [run for run in queue if run[0] == "text"]
    assert queue[:len(text)] == text and len(text) == len(windows) * 3 * 2
    assert {(m, w) for _, m, w, _ in text} == {(m, w) for m in ("tbptt", "dni") for w in windows}
    assert [run for run in queue if run[0] != "text"] == recurrent.plan("long", tasks=recurrent_tier.TASKS)
    assert recurrent_tier.settings("long", "text") != recurrent_tier.settings("long", "copy")


def test_a_character_model_run_records_its_early_stopped_bits_and_the_report_shows_them(folders, one_thread, capsys):
    run = ("text", "dni", recurrent_tier.windows("smoke", "text")[0], 0)
    record = recurrent.train_one("smoke", run, CPU)
    valid, test = record["history"]["extra"]["valid_bpc"], record["history"]["extra"]["test_bpc"]
    assert record["test_bpc"] == test[valid.index(min(valid))] and record["solved"] is None
    assert record["settings"] == json.loads(json.dumps(recurrent_tier.settings("smoke", "text")))
    assert recurrent.finished("smoke") == {run} and not recurrent.checkpoint_file("smoke", run).exists()
    recurrent.report("smoke")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"  {run[2]}  ") and "|" in line and "." in line
               and f"{record['test_bpc']:.3f}" in line)
    paper = recurrent_tier.PAPER_TEXT
    assert f". . . | {paper['tbptt'][run[2]]}" in row, "truncated BPTT not trained yet; the paper's cell beside it"
    assert f"{record['test_bpc']:.3f} . . | {paper['dni'][run[2]]}" in row and row.endswith("- | -0.02"), row
    assert "character model: held-out bits per character" in out
    early = dict(record, stopped_at=record["history"]["iteration"][1] * run[2], test_bpc=test[1])   # stopped mid-run
    fig = recurrent_tier.plot_text([early], "smoke")
    test_line, valid_line, dot = fig.axes[0].lines
    assert list(test_line.get_ydata()) == test and list(valid_line.get_ydata()) == valid
    assert list(dot.get_xdata()) == [early["stopped_at"]] and list(dot.get_ydata()) == [test[1]], "the dot: where it stopped"
    assert "paper (Penn Treebank): truncated BPTT 1.37, DNI 1.35" in fig.axes[0].get_title() and "smoke" in fig._suptitle.get_text()
