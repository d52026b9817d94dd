"""Every method's numbers, recorded once and held: a refactor of helpers/ must change none of them.

`runs()` trains each method for a few dozen steps on a slice of MNIST (seed 0, CPU) and returns what
its history recorded plus a fingerprint of the final parameters. It trains in float64: in float32 two CPUs
with different vector units (AVX2 against AVX-512, say) sum in different orders, and 30 Adam steps grow
those last-digit differences to percent (cosines), more than any tolerance that still catches a bug; in
float64 they stay far below the tolerance. `tests/data/regression.json` holds the recorded values; this
test compares today's with them. The tolerance is far tighter than any change of algorithm: a factor of 2
anywhere, a missing detach or a wrong target moves these numbers by percent.

Except a constant factor on a gradient that reaches Adam: Adam divides it out (only its eps notices, ~1e-5
relative). So every method that hands a block (or a synthesizer, a head) a gradient of its own making is
recorded a second time under plain SGD (`SGD_RUNS`, entries `sgd_<name>`), whose step is proportional to
the gradient: a factor of 2 on any gradient a block receives moves those numbers by percent.

Record anew (only after a deliberate change of algorithm, and say so in the commit):
    SG_DEVICE=cpu python tests/test_regression.py --record
"""
import dataclasses
import json
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from helpers import config, data, learners, models, rnn, tasks, training  # noqa: E402

FIXTURE = pathlib.Path(__file__).resolve().parent / "data" / "regression.json"
SCHEDULE = config.RunSize("regression", iterations=30, lr=1e-3, batch_size=64, eval_every=10)
CNN_SCHEDULE = config.RunSize("regression", iterations=10, lr=1e-3, batch_size=32, eval_every=5)

# name: (registry method, model, options). Small widths keep the whole file to a few seconds.
FCN_RUNS = {
    "backprop": ("backprop", 3, {}),
    "nobackprop": ("nobackprop", 3, {}),
    "dni_linear": ("dni", 3, {}),
    "dni_mlp": ("dni", 3, {"hidden_layers": 1, "hidden": 32}),
    "dni_scale": ("dni", 4, {"scale": 0.5}),
    "cdni": ("cdni", 4, {}),
    "synthetic_loss": ("synthetic_loss", 3, {}),
    "critic": ("critic", 3, {}),
    "fa": ("fa", 3, {}),
    "dfa": ("dfa", 3, {}),
    "full_unlock": ("full_unlock", 4, {"input_hidden_layers": 1}),
    "stochastic_backprop": ("stochastic_backprop", 3, {"p": 0.5}),
    "stochastic_cdni": ("stochastic_cdni", 3, {"p": 0.5}),
    "multirate": ("multirate", 4, {"cut": 2, "every": 3}),
}
CNN_RUNS = {
    "cnn_backprop": ("backprop", {}),
    "cnn_dni": ("dni", {"hidden_layers": 1, "hidden": 4}),
    "cnn_cdni": ("cdni", {"hidden": 4}),
}
RNN_RUNS = ["tbptt", "dni", "dni_aux"]
# The same runs under plain SGD (no momentum), where a gradient's scale is the step's scale: name: (lr, options
# added to the Adam entry's). lr 0.1 moves every parameter well past the tolerance in 30 steps; the values-only
# synthetic loss diverges there (step 11) and takes 0.01. The full unlock's input synthesizers are 64 wide
# here: the arithmetic is the same, in a fifth of the time.
SGD = {"optimizer": torch.optim.SGD}
SGD_RUNS = {name: (0.1, {}) for name in ("backprop", "dni_linear", "dni_mlp", "dni_scale", "cdni", "critic", "fa",
                                         "dfa", "stochastic_backprop", "stochastic_cdni", "multirate", "dgl")}
SGD_RUNS.update({"synthetic_loss": (0.01, {}), "full_unlock": (0.1, {"input_hidden": 64})})
SGD_CNN_RUNS = ["cnn_dni", "cnn_cdni"]
SGD_RNN_RUNS = ["dni", "dni_aux"]
SGD_LR = 0.1
FCN_RUNS_SGD_ONLY = {"dgl": ("dgl", 3, {})}


def fingerprint_params(params):
    """Two numbers that move with any parameter: the sum and the sum of squares of every parameter."""
    params = [p.detach().double() for p in params]
    return [float(sum(p.sum() for p in params)), float(sum(p.pow(2).sum() for p in params))]


def fingerprint(learner):
    """The fingerprint of everything a learner (or windowed trainer) trains: model, synthesizers, heads."""
    return fingerprint_params(learners.parameters(learner))


def summary(history, learner):
    return {"train_loss": history.train_loss, "train_accuracy": history.train_accuracy,
            "test_accuracy": history.test_accuracy, "extra": history.extra, "parameters": fingerprint(learner)}


def runs():
    """Every recorded run, in float64 (see the module docstring); the default dtype is restored after."""
    with float64():
        return _runs()


class float64:
    """Within: float64 by default and `threads` threads; both restored after."""

    def __init__(self, threads=1):
        self.threads = threads

    def __enter__(self):
        self.saved = torch.get_default_dtype(), torch.get_num_threads()
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.saved[0])
        torch.set_num_threads(self.saved[1])


def small_mnist():
    """2,000 training and 500 test images of MNIST in the default dtype."""
    mnist = data.load_mnist("cpu")
    dtype = torch.get_default_dtype()
    return data.Dataset("mnist-small", mnist.x_train[:2000].to(dtype), mnist.y_train[:2000],
                        mnist.x_test[:500].to(dtype), mnist.y_test[:500])


def fcn_run(name, small, lr=SCHEDULE.lr, **more):
    """One FCN entry: seed 0, the recorded schedule at learning rate `lr`; `more` goes to the learner."""
    method, layers, options = {**FCN_RUNS, **FCN_RUNS_SGD_ONLY}[name]
    config.seed_everything(0)
    learner = learners.make(method, models.fcn(layers, hidden=32), lr, **options, **more)
    history = training.train(learner, small, dataclasses.replace(SCHEDULE, lr=lr), progress=False)
    return summary(history, learner)


def cnn_run(name, small, lr=CNN_SCHEDULE.lr, **more):
    method, options = CNN_RUNS[name]
    config.seed_everything(0)
    learner = learners.make(method, models.cnn(3, channels=4), lr, **options, **more)
    history = training.train(learner, small, dataclasses.replace(CNN_SCHEDULE, lr=lr), progress=False)
    return summary(history, learner)


def rnn_run(method, **more):
    trainer, history = rnn.train_copy(method, window=3, steps=40, hidden=8, batch=4, log_every=10, progress=False,
                                      **more)
    return {"error": history.train_loss, "level": history.extra["level"], "parameters": fingerprint(trainer)}


def _runs():
    small = small_mnist()
    out = {name: fcn_run(name, small) for name in FCN_RUNS}
    out.update({name: cnn_run(name, small) for name in CNN_RUNS})
    out.update({f"copy_{method}": rnn_run(method) for method in RNN_RUNS})
    train_text, test_text, alphabet = tasks.load_text(max_chars=20_000)
    codes = tasks.encode(train_text, alphabet), tasks.encode(test_text, alphabet)
    trainer, history = rnn.train_text("dni", 4, 30, *codes, len(alphabet), hidden=8, batch=4, log_every=10,
                                      progress=False)
    out["text_dni"] = {"train_bpc": history.train_loss, "test_bpc": history.meta["test_bpc"],
                       "parameters": fingerprint(trainer)}
    out.update({f"sgd_{name}": fcn_run(name, small, lr, **options, **SGD) for name, (lr, options) in SGD_RUNS.items()})
    out.update({f"sgd_{name}": cnn_run(name, small, SGD_LR, **SGD) for name in SGD_CNN_RUNS})
    out.update({f"sgd_copy_{method}": rnn_run(method, lr=SGD_LR, **SGD) for method in SGD_RNN_RUNS})
    return out


def compare(expected, actual, where=""):
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            compare(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), f"{where}: {len(actual)} values, expected {len(expected)}"
        for k, (e, a) in enumerate(zip(expected, actual)):
            compare(e, a, f"{where}[{k}]")
    else:
        assert a_close(expected, actual), f"{where}: {actual!r} != recorded {expected!r}"


def a_close(expected, actual, rtol=2e-5, atol=1e-6):
    return abs(expected - actual) <= atol + rtol * abs(expected)


@pytest.mark.skipif(not FIXTURE.exists(), reason="no recorded regression values")
def test_every_method_gives_the_recorded_numbers():
    compare(json.loads(FIXTURE.read_text()), json.loads(json.dumps(runs())))


def test_the_comparison_catches_a_small_change():
    recorded = {"a": [1.0, 2.0]}
    compare(recorded, {"a": [1.0, 2.0 * (1 + 1e-6)]})
    with pytest.raises(AssertionError):
        compare(recorded, {"a": [1.0, 2.0 * (1 + 1e-3)]})


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python tests/test_regression.py --record   (overwrites tests/data/regression.json)")
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(runs(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
