"""Every method's numbers, recorded once and held: a refactor of helpers/ must change none of them.

`runs()` trains each method for a few dozen steps on a slice of MNIST (seed 0, CPU) and returns what
its history recorded plus a fingerprint of the final parameters. It trains in float64: in float32 two CPUs
with different vector units (AVX2 against AVX-512, say) sum in different orders, and 30 Adam steps grow
those last-digit differences to percent (cosines), more than any tolerance that still catches a bug; in
float64 they stay far below the tolerance. `tests/data/regression.json` holds the recorded values; this
test compares today's with them. The tolerance is far tighter than any change of algorithm: a factor of 2
anywhere, a missing detach or a wrong target moves these numbers by percent.

Record anew (only after a deliberate change of algorithm, and say so in the commit):
    SG_DEVICE=cpu python tests/test_regression.py --record
"""
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
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        return _runs()
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def _runs():
    mnist = data.load_mnist("cpu")
    dtype = torch.get_default_dtype()
    small = data.Dataset("mnist-small", mnist.x_train[:2000].to(dtype), mnist.y_train[:2000],
                         mnist.x_test[:500].to(dtype), mnist.y_test[:500])
    out = {}
    for name, (method, layers, options) in FCN_RUNS.items():
        config.seed_everything(0)
        learner = learners.make(method, models.fcn(layers, hidden=32), SCHEDULE.lr, **options)
        history = training.train(learner, small, SCHEDULE, progress=False)
        out[name] = summary(history, learner)
    for name, (method, options) in CNN_RUNS.items():
        config.seed_everything(0)
        learner = learners.make(method, models.cnn(3, channels=4), SCHEDULE.lr, **options)
        history = training.train(learner, small, CNN_SCHEDULE, progress=False)
        out[name] = summary(history, learner)
    for method in RNN_RUNS:
        trainer, history = rnn.train_copy(method, window=3, steps=40, hidden=8, batch=4, log_every=10,
                                          progress=False)
        out[f"copy_{method}"] = {"error": history.train_loss, "level": history.extra["level"],
                                 "parameters": fingerprint(trainer)}
    train_text, test_text, alphabet = tasks.load_text(max_chars=20_000)
    codes = tasks.encode(train_text, alphabet), tasks.encode(test_text, alphabet)
    trainer, history = rnn.train_text("dni", 4, 30, *codes, len(alphabet), hidden=8, batch=4, log_every=10,
                                      progress=False)
    out["text_dni"] = {"train_bpc": history.train_loss, "test_bpc": history.meta["test_bpc"],
                       "parameters": fingerprint(trainer)}
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
