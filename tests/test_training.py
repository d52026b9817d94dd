import json
import os

import pytest
import torch

from helpers import config, data, learners, models, results, training
from helpers.config import RunSize

TINY = RunSize("test", iterations=60, lr=1e-3, batch_size=64, eval_every=20)


def run(learner_class, dataset, size=TINY, layers=3, seed=0):
    config.seed_everything(seed)
    return training.train(learner_class(models.fcn(layers), size.lr), dataset, size, seed=seed, progress=False)


def test_backprop_loss_falls_and_history_is_complete(mnist_small):
    history = run(training.Backprop, mnist_small)
    assert history.iteration == [20, 40, 60]
    for name in ("train_loss", "train_accuracy", "test_accuracy", "seconds"):
        assert len(getattr(history, name)) == 3, name
    assert history.train_loss[-1] < 0.6 * history.train_loss[0]
    assert history.test_accuracy[-1] > 0.75  # chance is 0.1
    assert history.method == "backprop" and history.layers == 3


def test_nobackprop_trains_only_the_output_layer(mnist_small):
    config.seed_everything(0)
    model = models.fcn(3)
    before = [p.detach().clone() for p in model.parameters()]
    history = training.train(training.NoBackprop(model, 1e-3), mnist_small, TINY, progress=False)
    after = list(model.parameters())
    output_count = len(list(model[-1].parameters()))
    assert all(torch.equal(b, a) for b, a in zip(before[:-output_count], after[:-output_count]))
    assert not all(torch.equal(b, a) for b, a in zip(before[-output_count:], after[-output_count:]))
    assert history.test_accuracy[-1] > 0.3


def test_same_seed_gives_identical_histories_on_cpu(mnist_small):
    a, b = run(training.Backprop, mnist_small, seed=5), run(training.Backprop, mnist_small, seed=5)
    assert a.train_loss == b.train_loss and a.test_accuracy == b.test_accuracy
    c = run(training.Backprop, mnist_small, seed=6)
    assert c.train_loss != a.train_loss


class PoisonedBackprop(training.Backprop):
    """Backprop whose loss turns NaN at step 27, as a diverging run would."""

    def __init__(self, model, lr):
        super().__init__(model, lr)
        self.steps = 0

    def step(self, x, y):
        self.steps += 1
        loss, logits = super().step(x, y)
        return (loss * float("nan") if self.steps == 27 else loss), logits


def test_divergence_stops_with_the_step_number(mnist_small):
    with pytest.raises(training.DivergenceError, match="iteration 27") as error:
        run(PoisonedBackprop, mnist_small)
    assert error.value.iteration == 27
    assert error.value.history.iteration == [20]  # what came before is kept


def test_learning_rate_schedule_divides_by_ten_at_milestones():
    paper = config.run_size("paper")
    assert training.learning_rate(paper, 300_000) == pytest.approx(3e-5)
    assert training.learning_rate(paper, 300_001) == pytest.approx(3e-6)
    assert training.learning_rate(paper, 500_000) == pytest.approx(3e-7)


def test_schedule_reaches_the_optimizers(mnist_small):
    learner = training.Backprop(models.fcn(3), TINY.lr)
    training.train(learner, mnist_small, TINY, progress=False)
    assert learner.optimizers[0].param_groups[0]["lr"] == pytest.approx(TINY.lr / 100)


def test_results_round_trip(tmp_path, mnist_small):
    history = run(training.Backprop, mnist_small)
    runs = [results.run_record(history, lr=TINY.lr)]
    path = results.save_results("01_test", "quick", runs, seconds=1.5, device="cpu", directory=tmp_path)
    assert path == tmp_path / "01_test.json"
    loaded = results.load_results(path)
    assert loaded["notebook"] == "01_test" and loaded["size"] == "quick" and loaded["torch"] == torch.__version__
    assert loaded["runs"][0]["test_accuracy"] == history.final_test_accuracy
    assert loaded["runs"][0]["layers"] == 3 and loaded["runs"][0]["iterations"] == 60
    assert loaded["runs"][0]["history"]["train_loss"] == history.train_loss


def test_smoke_results_never_replace_real_ones(tmp_path):
    run_ = {"method": "backprop", "layers": 3, "iterations": 1, "test_accuracy": 0.5}
    assert results.save_results("nb", "smoke", [run_], 1, "cpu", directory=tmp_path) == tmp_path / "smoke" / "nb.json"
    results.save_results("nb", "quick", [run_], 1, "cpu", directory=tmp_path)
    results.save_results("nb", "paper", [run_], 1, "cpu", directory=tmp_path)
    assert results.load_results(tmp_path / "nb.json")["size"] == "paper"
    assert results.load_results(tmp_path / "nb.quick.json")["size"] == "quick"


def test_results_are_written_atomically(tmp_path, monkeypatch):
    good = {"method": "backprop", "layers": 3, "iterations": 1, "test_accuracy": 0.5}
    path = results.save_results("nb", "quick", [good], 1, "cpu", directory=tmp_path)
    original = path.read_text()

    def crash(obj, handle, **kwargs):
        handle.write('{"half": ')
        raise KeyboardInterrupt("crash while writing")
    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        results.save_results("nb", "quick", [good], 2, "cpu", directory=tmp_path)
    assert path.read_text() == original
    assert os.listdir(tmp_path) == ["nb.json"]  # no half-written temporary file left behind


@pytest.mark.parametrize("bad,match", [({"method": "DNI!", "layers": 3, "iterations": 1, "test_accuracy": 0.5}, "lowercase"),
                                       ({"method": "dni", "layers": 3, "iterations": 1, "test_accuracy": 97.7}, r"\[0, 1\]"),
                                       ({"method": "dni", "layers": 3}, "needs")])
def test_bad_run_records_are_refused(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        results.save_results("nb", "quick", [bad], 1, "cpu", directory=tmp_path)


def test_augmentation_sees_every_training_batch(mnist_small):
    seen = []

    def augment(x):
        seen.append(x.shape)
        return x.flip(3)
    config.seed_everything(0)
    training.train(training.Backprop(models.fcn(3), 1e-3), mnist_small, TINY, progress=False, augment=augment)
    assert seen == [(64, 1, 28, 28)] * TINY.iterations


def test_mixed_precision_changes_the_arithmetic_not_the_learning(mnist_small, monkeypatch):
    from helpers import dni
    monkeypatch.setattr(training, "amp_dtype", lambda device: torch.bfloat16)   # also on CPUs without fast bf16
    for make in (lambda m: training.Backprop(m, 1e-3), lambda m: dni.DNI(m, 1e-3, conditioned=True)):
        runs = []
        for amp in (False, True):
            config.seed_everything(0)
            runs.append(training.train(make(models.cnn(3, channels=4)), mnist_small, TINY, progress=False, amp=amp))
        full, mixed = runs
        assert mixed.train_loss != full.train_loss                       # bfloat16 was really used
        assert max(abs(a - b) for a, b in zip(mixed.train_loss, full.train_loss)) < 0.03
        assert mixed.train_loss[-1] < 0.9 * mixed.train_loss[0]


def test_a_run_stopped_midway_resumes_to_the_same_history(tmp_path, mnist_small, monkeypatch):
    """A disconnect (here an exception at iteration 25) loses nothing but the steps since the last
    checkpoint: run again, `train` resumes from it and ends with exactly the uninterrupted history."""
    size = RunSize("resume", iterations=40, lr=1e-3, batch_size=32, eval_every=10, checkpoint_every=20)

    def learner():
        config.seed_everything(0)
        return learners.make("stochastic_cdni", models.fcn(3, hidden=16), size.lr, p=0.5)
    whole = training.train(learner(), mnist_small, size, checkpoint=False, progress=False)
    interrupted = learner()
    real_step, calls = interrupted.step, []

    def step(x, y):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt("the runtime disconnected")
        return real_step(x, y)
    interrupted.step = step
    with pytest.raises(KeyboardInterrupt):
        training.train(interrupted, mnist_small, size, checkpoint=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    config.seed_everything(123)           # a new session: nothing of the old random state is left
    resumed_learner = learner()
    torch.manual_seed(7)
    resumed = training.train(resumed_learner, mnist_small, size, checkpoint=tmp_path, progress=False)
    for field in ("iteration", "train_loss", "train_accuracy", "test_accuracy", "extra"):
        assert getattr(resumed, field) == getattr(whole, field), field
    other = RunSize("resume", iterations=40, lr=2e-3, batch_size=32, eval_every=10, checkpoint_every=20)
    config.seed_everything(0)
    fresh = training.train(learners.make("stochastic_cdni", models.fcn(3, hidden=16), other.lr, p=0.5),
                           mnist_small, other, checkpoint=tmp_path, progress=False)
    assert fresh.train_loss != whole.train_loss, "another learning rate never resumes this run's checkpoint"


def test_checkpoints_only_at_evaluation_points():
    size = RunSize("bad", iterations=40, lr=1e-3, batch_size=32, eval_every=10, checkpoint_every=15)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        training.Checkpoints.for_run("/tmp/unused", learners.make("backprop", models.fcn(3, hidden=8), 1e-3), size, 0)


def test_amp_runs_at_the_dtype_the_device_supports(mnist_small):
    size = RunSize("amp", iterations=4, lr=1e-3, batch_size=32, eval_every=2)
    dtype = config.amp_dtype("cpu")
    assert dtype in (torch.bfloat16, torch.float32) and config.amp_reason("cpu").startswith(
        "bfloat16" if dtype == torch.bfloat16 else "float32")
    seen = []
    learner = learners.make("backprop", models.fcn(3, hidden=8), 1e-3)
    real = learner.model[0].forward
    learner.model[0].forward = lambda x: seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) or real(x)
    training.train(learner, mnist_small, size, amp=True, progress=False)
    assert seen[0] == (dtype if dtype != torch.float32 else None)


def test_a_finished_run_is_reused_not_trained_again_and_a_changed_one_is_not(tmp_path, mnist_small, monkeypatch):
    """reuse=True: the second identical run loads the first (same history, same weights, no step taken);
    another seed, another learning rate or other helpers code is another run."""
    monkeypatch.setenv("SG_RUNS", str(tmp_path))
    size = RunSize("reuse", iterations=30, lr=1e-3, batch_size=32, eval_every=10)

    def run(seed=0, lr=1e-3):
        config.seed_everything(seed)
        learner = learners.make("cdni", models.fcn(3, hidden=16), lr)
        return learner, training.train(learner, mnist_small, size, seed=seed, reuse=True, progress=False)
    first, history = run()
    steps = []
    monkeypatch.setattr(learners.METHODS["cdni"].build.func, "step",
                        lambda self, x, y: steps.append(1) or (_ for _ in ()).throw(AssertionError("trained")))
    again, reused = run()
    assert not steps and reused.test_accuracy == history.test_accuracy and reused.extra == history.extra
    assert all(torch.equal(a, b) for a, b in zip(first.model.parameters(), again.model.parameters()))
    assert len(again.snapshots) == len(first.snapshots), "the gradient explorer's snapshots come back too"
    monkeypatch.undo()
    monkeypatch.setenv("SG_RUNS", str(tmp_path))
    run(seed=1)
    run(lr=2e-3)
    assert len(list(tmp_path.glob("*.pt"))) == 3
    stored = {p.name for p in tmp_path.glob("*.pt")}
    config.seed_everything(0)
    fresh = learners.make("cdni", models.fcn(3, hidden=16), 1e-3)    # the key is taken before training
    assert training.Checkpoints.for_reuse(fresh, mnist_small, size, 0).path.name in stored
    monkeypatch.setattr(training, "code_version", lambda: "other helpers code")
    assert training.Checkpoints.for_reuse(fresh, mnist_small, size, 0).path.name not in stored


@pytest.mark.parametrize("method, options", [("backprop", {}), ("dni", {}), ("cdni", {"hidden_layers": 1, "hidden": 32}),
                                             ("critic", {}), ("full_unlock", {"input_hidden_layers": 1}),
                                             ("stochastic_cdni", {"p": 0.5}), ("dgl", {})])
def test_the_series_adam_gives_the_numbers_of_torchs_default_adam(mnist_small, method, options):
    """training.Adam (foreach) is a speed-up only: every learner ends with bit-identical parameters."""
    ends = []
    for optimizer in (training.Adam, torch.optim.Adam):
        config.seed_everything(0)
        learner = learners.make(method, models.fcn(3), 1e-3, optimizer=optimizer, **options)
        for index in range(20):
            rows = slice(32 * index, 32 * index + 32)
            learner.step(mnist_small.x_train[rows], mnist_small.y_train[rows])
        ends.append([p.detach().clone() for p in learners.parameters(learner)])
    assert len(ends[0]) == len(ends[1]) and all(torch.equal(a, b) for a, b in zip(*ends))
    assert training.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3).defaults["foreach"] is True


def test_one_optimizer_for_every_module_is_the_update_of_one_per_module(mnist_small):
    """DNI and DGL step every block and synthesizer (or head) through one Adam: the same numbers as one Adam
    per module, the way update_rates' gated learners still build them."""
    from helpers import dgl, dni

    class SeparateDNI(dni.DNI):
        separate_optimizers = True

    class SeparateDGL(dgl.DGL):
        def __init__(self, model, lr):
            super().__init__(model, lr)
            blocks = list(model)
            self.optimizers = [training.Adam(list(b.parameters()) + list(h.parameters()), lr=lr)
                               for b, h in zip(blocks[:-1], self.heads)] + [training.Adam(blocks[-1].parameters(), lr=lr)]

    for joint, separate in ((lambda m: dni.DNI(m, 1e-3, conditioned=True), lambda m: SeparateDNI(m, 1e-3, conditioned=True)),
                            (lambda m: dni.DNI(m, 1e-3, synthesizer_lr=3e-3), lambda m: SeparateDNI(m, 1e-3, synthesizer_lr=3e-3)),
                            (lambda m: dgl.DGL(m, 1e-3), lambda m: SeparateDGL(m, 1e-3))):
        ends = []
        for build in (joint, separate):
            config.seed_everything(0)
            learner = build(models.fcn(4))
            for index in range(15):
                rows = slice(32 * index, 32 * index + 32)
                learner.step(mnist_small.x_train[rows], mnist_small.y_train[rows])
            ends.append([p.detach().clone() for p in learners.parameters(learner)])
        assert len(ends[0]) == len(ends[1])
        assert all(torch.equal(a, b) for a, b in zip(*ends))
    assert len(dni.DNI(models.fcn(4), 1e-3).optimizers) == 1


def test_a_resumed_run_draws_the_random_numbers_the_uninterrupted_one_draws(tmp_path, mnist_small, monkeypatch):
    """Resume restores the global random states, not only the learner's: augmentation draws from torch's
    global state (and the gates from their own generators), so a resumed run that did not restore it sees
    other crops and flips. Checked both ways: restored, the histories agree; not restored, they differ (so
    this run really depends on the random state)."""
    size = RunSize("resume", iterations=30, lr=1e-3, batch_size=32, eval_every=10, checkpoint_every=10)

    def learner():
        config.seed_everything(0)
        return learners.make("stochastic_cdni", models.fcn(3, hidden=16), size.lr, p=0.5)

    def interrupted_then_resumed(folder):
        stopped, calls = learner(), []
        real_step = stopped.step

        def step(x, y):
            calls.append(1)
            if len(calls) == 15:
                raise KeyboardInterrupt("the runtime disconnected")
            return real_step(x, y)
        stopped.step = step
        with pytest.raises(KeyboardInterrupt):
            training.train(stopped, mnist_small, size, checkpoint=folder, progress=False, augment=data.random_crop_flip)
        config.seed_everything(123)       # a new session: nothing of the old random state is left
        return training.train(learner(), mnist_small, size, checkpoint=folder, progress=False,
                              augment=data.random_crop_flip)
    whole = training.train(learner(), mnist_small, size, checkpoint=False, progress=False, augment=data.random_crop_flip)
    resumed = interrupted_then_resumed(tmp_path / "restored")
    for field in ("iteration", "train_loss", "train_accuracy", "test_accuracy", "extra"):
        assert getattr(resumed, field) == getattr(whole, field), field
    monkeypatch.setattr(training, "_set_random_states", lambda states: None)
    forgetful = interrupted_then_resumed(tmp_path / "not_restored")
    assert forgetful.train_loss[:1] == whole.train_loss[:1] and forgetful.train_loss[1:] != whole.train_loss[1:]


def test_the_train_loss_averages_the_steps_since_the_last_evaluation(mnist_small):
    """25 iterations, an evaluation every 10: the points are 10, 20 and 25, and the last one averages
    iterations 21-25 only (not the whole buffer, whose slots 6-10 still hold iterations 16-20)."""
    size = RunSize("window", iterations=25, lr=1e-3, batch_size=32, eval_every=10)
    config.seed_everything(0)
    learner = learners.make("backprop", models.fcn(3, hidden=16), size.lr)
    real_step, losses, right = learner.step, [], []

    def step(x, y):
        loss, logits = real_step(x, y)
        losses.append(loss.item())
        right.append((logits.argmax(1) == y).float().mean().item())
        return loss, logits
    learner.step = step
    history = training.train(learner, mnist_small, size, progress=False)
    assert history.iteration == [10, 20, 25]
    for points, steps in ((history.train_loss, losses), (history.train_accuracy, right)):
        windows = [steps[0:10], steps[10:20], steps[20:25]]
        assert points == pytest.approx([sum(w) / len(w) for w in windows], rel=1e-6)


def test_test_accuracy_is_measured_on_the_whole_test_set(mnist_small):
    """600 test images (two batches of 256 and a partial one), the second half relabelled so that it scores
    differently from the first: what `train` records and what `evaluate` returns is the whole set's accuracy,
    computed here directly."""
    half = 300
    x, y = mnist_small.x_test[:2 * half], mnist_small.y_test[:2 * half].clone()
    y[half:] = (y[half:] + 1) % 10
    dataset = data.Dataset("relabelled", mnist_small.x_train, mnist_small.y_train, x, y)
    size = RunSize("whole", iterations=20, lr=1e-3, batch_size=64, eval_every=20)
    config.seed_everything(0)
    learner = learners.make("backprop", models.fcn(3, hidden=16), size.lr)
    history = training.train(learner, dataset, size, progress=False)
    learner.model.eval()
    with torch.no_grad():
        right = (learner.model(x).argmax(1) == y)
    learner.model.train()
    assert right[:half].sum() != right[half:].sum(), "the halves must score differently for this to mean anything"
    assert history.test_accuracy[-1] == right.sum().item() / len(y)
    assert training.evaluate(learner.model, x, y) == right.sum().item() / len(y)
