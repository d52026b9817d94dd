"""The alignment experiment (scripts/alignment.py, helpers.alignment): it records both alignments per run,
resumes run by run, and ranks methods the way Spearman's correlation does."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import alignment

ROOT = Path(__file__).resolve().parent.parent


def test_rank_correlation_uses_ranks_and_shares_ties():
    assert alignment.ranks([0.3, 0.1, 0.3, 0.9]) == [2.5, 1.0, 2.5, 4.0]
    assert alignment.spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)     # monotone, not linear
    assert alignment.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert alignment.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_late_averages_the_last_quarter():
    assert alignment.late([0, 0, 0, 0, 0, 0, 1, 1]) == 1.0
    assert alignment.late([5.0]) == 5.0


def test_a_missing_experiment_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(alignment, "COMMITTED", tmp_path)
    with pytest.raises(FileNotFoundError, match="make alignment"):
        alignment.runs("quick")


def test_the_script_records_both_alignments_and_resumes(tmp_path):
    env = {**os.environ, "SG_RESULTS": str(tmp_path), "SG_SIZE": "smoke", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "alignment.py"), "--labels", "backprop", "cdni", "--seeds", "0"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((tmp_path / "smoke" / "alignment_smoke.json").read_text())
    found = {r["label"]: r for r in record["runs"]}
    assert sorted(found) == ["backprop", "cdni"]
    backprop = [v for k, values in found["backprop"]["history"]["extra"].items() if k.startswith("upd_cos/")
                for v in values]
    assert backprop and all(v == pytest.approx(1.0, abs=1e-6) for v in backprop)
    cdni = alignment.measures(found["cdni"])
    assert 0 < cdni["gradient cosine"] < 1 and 0 < cdni["update cosine"] < 1
    assert alignment.measures(found["backprop"])["gradient cosine"] == 1.0
    again = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0 and "seed 0:" not in again.stdout          # nothing trained twice
    assert json.loads((tmp_path / "smoke" / "alignment_smoke.json").read_text()) == record


def test_the_committed_experiment_is_drawn_one_dot_per_run():
    fig = alignment.plot("quick")
    for ax in fig.axes:
        assert sum(len(c.get_offsets()) for c in ax.collections) == 3 * len(alignment.LABELS)
        assert ax.get_yscale() == "log"
    found = alignment.summary("quick")
    assert set(found) == set(alignment.MEASURES) and all(-1 <= v <= 1 for v in found.values())
