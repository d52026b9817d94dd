"""Where readers run the series: worker processes that survive CUDA and exist on every OS, every psutil a
user may have, no device or thread count hard-coded in helpers/, `make lab` as root."""
import ast
import pathlib
import subprocess
import sys
import types

import pytest
import torch.multiprocessing as mp

import helpers
from helpers import pipeline, unlock

HELPERS = pathlib.Path(helpers.__file__).resolve().parent
ROOT = HELPERS.parent


def spy_on_start_methods(monkeypatch):
    asked = []
    real = mp.get_context

    def get_context(method=None):
        asked.append(method)
        return real(method)
    monkeypatch.setattr(mp, "get_context", get_context)
    return asked


def test_concurrent_units_start_with_spawn_never_fork(monkeypatch):
    """A process forked after CUDA has been used cannot use CUDA ("Cannot re-initialize CUDA in forked
    subprocess"); fork does not exist on Windows. The workers must be spawned."""
    asked = spy_on_start_methods(monkeypatch)
    from helpers import models
    units = unlock.make_units(models.fcn(3, hidden=8), 1e-3)
    with unlock.ConcurrentFullUnlock(units, timeout=60) as runner:
        assert all(p.is_alive() for p in runner.processes)
    assert asked == ["spawn"]


def test_the_pipeline_starts_its_stages_with_spawn(monkeypatch, mnist_small):
    asked = spy_on_start_methods(monkeypatch)
    config = pipeline.PipelineConfig(stages=2, mode="locked", hidden=16, batch_size=32, steps=3, timeout=30)
    reports = pipeline.launch(config, mnist_small)
    assert asked == ["spawn"] and reports[-1]["steps"] == 3


class OldProcess:
    """psutil < 6: `connections`, no `net_connections` (Colab ships 5.9.5)."""

    def connections(self, kind):
        return [types.SimpleNamespace(laddr=types.SimpleNamespace(ip="127.0.0.1"), status="LISTEN"),
                types.SimpleNamespace(laddr=types.SimpleNamespace(ip="10.0.0.1"), status="ESTABLISHED")]


@pytest.mark.parametrize("version", ["5.9.5", "7.0"])
def test_listening_addresses_work_with_old_and_new_psutil(monkeypatch, version):
    class NewProcess(OldProcess):
        def net_connections(self, kind):
            return self.connections(kind)
    fake = types.SimpleNamespace(Process=OldProcess if version < "6" else NewProcess, CONN_LISTEN="LISTEN",
                                 __version__=version)
    monkeypatch.setitem(sys.modules, "psutil", fake)
    assert pipeline.listening_addresses() == ["127.0.0.1"]


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)]


@pytest.mark.parametrize("path", sorted(HELPERS.glob("*.py")), ids=lambda p: p.name)
def test_no_helper_hard_codes_a_device_or_a_thread_count(path):
    """Tensors are made on their inputs' device (or the one config.device() chose); only worker processes
    set their own thread count (to one), never the process a notebook runs in."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in ("cuda", "cuda:0", "mps"):
            assert path.name in ("config.py", "timing.py", "gpu_check.py"), f"{path.name}:{node.lineno} names the device {node.value!r}"
        if isinstance(node, ast.Attribute) and node.attr == "cuda" and path.name not in ("config.py", "timing.py", "gpu_check.py", "training.py"):
            raise AssertionError(f"{path.name}:{node.lineno} reaches for torch.cuda directly")
    for node in calls(tree, "set_num_threads"):
        function = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                        and f.lineno <= node.lineno <= f.end_lineno)
        assert function.name in ("_worker", "_child", "full_unlock_times"), \
            f"{path.name}:{node.lineno}: set_num_threads outside a worker process ({function.name})"
    parameters = {id(arg) for node in calls(tree, "Parameter") for arg in node.args}   # moved with .to(device)
    for name in ("ones", "zeros", "eye", "empty", "rand", "randn", "full", "arange", "randint"):
        for node in calls(tree, name):
            if id(node) in parameters:
                continue
            if getattr(node.func, "value", None) is not None and getattr(node.func.value, "id", "") == "torch":
                keywords = {k.arg for k in node.keywords}
                allowed = path.name in ("tasks.py", "data.py", "pipeline.py", "timing.py", "gpu_check.py")
                assert "device" in keywords or "generator" in keywords or allowed, \
                    f"{path.name}:{node.lineno}: torch.{name}(...) without device="


def test_make_lab_allows_root_and_needs_no_display():
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    line = out.strip().splitlines()[-1]
    assert "jupyter lab" in line and "--no-browser" in line
    import os
    assert ("--allow-root" in line) == (os.geteuid() == 0)


def test_gpu_check_says_there_is_nothing_to_check_without_a_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make gpu-check runs the real checks")
    out = subprocess.run([sys.executable, "-m", "helpers.gpu_check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "nothing to check" in out.stdout


def test_gpu_check_runs_every_check_on_the_cpu():
    """The same checks, on the CPU: every line PASS (a check that breaks on a GPU must at least run)."""
    out = subprocess.run([sys.executable, "-m", "helpers.gpu_check", "--device", "cpu"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                          "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [l for l in out.stdout.splitlines() if l.startswith(("PASS", "FAIL"))]
    assert len(lines) >= 20 and all(l.startswith("PASS") for l in lines), out.stdout


def test_the_colab_constraints_differ_from_the_tested_pins_only_where_colab_does():
    """constraints-colab.txt must not drift from constraints.txt: the same packages, and other versions
    only for the packages whose Colab versions it tests."""
    def pins(name):
        return dict(line.split("==") for line in (ROOT / name).read_text().splitlines()
                    if line and not line.startswith("#"))
    ours, colab = pins("constraints.txt"), pins("constraints-colab.txt")
    assert ours.keys() == colab.keys()
    changed = {k for k in ours if ours[k] != colab[k]}
    assert changed == {"ipywidgets", "widgetsnbextension", "jupyterlab_widgets", "psutil", "numpy", "matplotlib",
                       "ipython", "ipykernel"}
    assert colab["ipywidgets"].startswith("7.") and colab["psutil"] < "6"


def test_units_that_have_trained_can_still_be_sent_to_worker_processes():
    """Spawned workers receive their unit by pickling; a unit keeps its last prediction (with its graph)
    between `run` and `learn`, which must not travel."""
    import torch
    from helpers import models
    units = unlock.make_units(models.fcn(3, hidden=8), 1e-3)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    unlock.step_units(units, x, y)
    with unlock.ConcurrentFullUnlock(units, timeout=60) as runner:
        runner.step(x, y)
