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
