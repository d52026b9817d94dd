"""The windowed trainer: with an oracle for the future gradient it is full BPTT; without, it is not."""
import pytest
import torch
import torch.nn.functional as F

from helpers import rnn, tasks
from helpers.training import DivergenceError, History

BATCH, HIDDEN, BITS, STEPS = 4, 6, 3, 12


def problem(seed=0):
    """A float64 LSTM and a 12-step stretch of the copy stream (episodes of length 2 and 3)."""
    torch.manual_seed(seed)
    model = rnn.RecurrentModel(BITS + 2, BITS, HIDDEN).double()
    stream = tasks.CopyStream(BATCH, BITS, level=2, seed=seed)
    x1, y1, m1, _ = stream.next_window(5)
    stream.level = 3
    x2, y2, m2, _ = stream.next_window(STEPS - 5)
    return model, torch.cat([x1, x2], 1).double(), torch.cat([y1, y2], 1).double(), torch.cat([m1, m2]).double()


def full_bptt(model, x, y, mask, window):
    """Gradients of the whole stretch's loss, and the per-example gradient at every window boundary."""
    model.zero_grad()
    state, total, boundaries = model.initial_state(BATCH), 0.0, []
    for k in range(0, STEPS, window):
        logits, state, _ = model(x[:, k:k + window], state)
        state.retain_grad()
        boundaries.append(state)
        total = total + rnn.bits_loss(logits, y[:, k:k + window], mask[k:k + window])[0]
    total.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    last = torch.zeros_like(boundaries[-1])                     # nothing comes after the last boundary
    return grads, [(s.detach(), last if s.grad is None else s.grad * BATCH) for s in boundaries]


class Oracle:
    """Returns the exact per-example gradient of all later loss at each boundary, in order."""

    def __init__(self, boundaries):
        self.boundaries = list(boundaries)

    def __call__(self, state):
        expected, grad = self.boundaries.pop(0)
        assert torch.allclose(state, expected), "the windowed forward pass reproduces the full one"
        return grad


def windowed(trainer, x, y, mask):
    """Every window's backward without an update, so the parameter gradients accumulate."""
    trainer.reset(BATCH)
    targets = [trainer.backward(x[:, k:k + trainer.window], y[:, k:k + trainer.window],
                                mask[k:k + trainer.window])[2] for k in range(0, STEPS, trainer.window)]
    return [p.grad.clone() for p in trainer.model.parameters()], targets


@pytest.mark.parametrize("window", [2, 3, 5])
def test_oracle_synthetic_gradient_gives_full_bptt(window):
    model, x, y, mask = problem()
    expected, boundaries = full_bptt(model, x, y, mask, window)
    trainer = rnn.WindowedTrainer(model, window, "dni", synthesizer=Oracle(boundaries), scale=1.0)
    grads, targets = windowed(trainer, x, y, mask)
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(grads, expected))
    # the synthesizer's bootstrapped target at each boundary is then the exact future gradient there
    assert all(torch.allclose(t, grad, atol=1e-10) for t, (_, grad) in zip(targets[1:], boundaries))


def test_truncated_bptt_is_full_bptt_when_the_window_covers_the_sequence():
    model, x, y, mask = problem()
    expected, _ = full_bptt(model, x, y, mask, STEPS)
    grads, _ = windowed(rnn.WindowedTrainer(model, STEPS, "tbptt"), x, y, mask)
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(grads, expected))


def test_short_truncation_misses_gradient_and_a_scaled_oracle_does_too():
    model, x, y, mask = problem()
    expected, boundaries = full_bptt(model, x, y, mask, 3)
    grads, _ = windowed(rnn.WindowedTrainer(model, 3, "tbptt"), x, y, mask)
    assert not all(torch.allclose(g, e, atol=1e-6) for g, e in zip(grads, expected))
    model.zero_grad()
    grads, _ = windowed(rnn.WindowedTrainer(model, 3, "dni", synthesizer=Oracle(boundaries), scale=0.1), x, y, mask)
    assert not all(torch.allclose(g, e, atol=1e-6) for g, e in zip(grads, expected))


def test_a_fresh_synthesizer_and_aux_head_change_nothing_at_first():
    """Zero-initialised synthesizer and aux head: the first DNI (+aux) window is a truncated-BPTT window."""
    model, x, y, mask = problem()
    reference, _ = windowed(rnn.WindowedTrainer(model, 3, "tbptt"), x, y, mask)
    for method in ("dni", "dni_aux"):
        model.zero_grad()
        trainer = rnn.WindowedTrainer(model, 3, method)
        grads, _ = windowed(trainer, x, y, mask)
        assert all(torch.equal(g, r) for g, r in zip(grads, reference))


def test_synthesizer_learns_the_target_and_the_model_trains():
    torch.manual_seed(0)
    stream = tasks.CopyStream(16, BITS, level=1, seed=0)
    trainer = rnn.WindowedTrainer(rnn.RecurrentModel(BITS + 2, BITS, 16), 3, "dni", lr=3e-3)
    first = None
    for _ in range(150):
        x, y, mask, _ = stream.next_window(3)
        loss, _ = trainer.step(x, y, mask)
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
    assert trainer.synthesizer[-1].weight.abs().sum() > 0, "the synthesizer moved off zero"


def test_curriculum_moves_up_only_below_the_threshold():
    curriculum = rnn.Curriculum(threshold=0.15, episodes=2)
    errors, mask, levels = torch.full((4,), 0.5), torch.ones(4), torch.ones(4, dtype=torch.long)
    assert not curriculum.update(errors, mask, levels) and curriculum.level == 1
    assert curriculum.update(torch.full((4,), 0.1), mask, levels) and curriculum.level == 2
    assert curriculum.solved == 1
    assert not curriculum.update(torch.zeros(4), mask, levels), "errors from the old level do not count"


def test_divergence_is_reported():
    trainer = rnn.WindowedTrainer(rnn.RecurrentModel(BITS + 2, BITS, 8), 2, "dni")
    x = torch.full((2, 2, BITS + 2), float("nan"))
    with pytest.raises(DivergenceError, match="diverged"):
        trainer.step(x, torch.zeros(2, 2, BITS), torch.ones(2))
    with pytest.raises(ValueError, match="method"):
        rnn.WindowedTrainer(rnn.RecurrentModel(5, 3, 4), 2, "bptt")


def test_the_windowed_loop_records_a_history_and_names_the_diverging_window(monkeypatch):
    """Copy and text share one loop: it returns a `History` (levels in extra, the window and the longest
    length solved in meta) and a NaN window raises DivergenceError with the window step and the history."""
    trainer, history = rnn.train_copy("dni", 3, 12, hidden=8, batch=4, log_every=4, progress=False)
    assert isinstance(history, History) and history.iteration == [4, 8, 12]
    assert len(history.train_loss) == len(history.extra["level"]) == 3
    assert history.meta["window"] == 3 and history.meta["solved"] == history.extra["level"][-1] - 1
    real_step = rnn.WindowedTrainer.step
    calls = []

    def poisoned(self, x, y, mask):
        calls.append(1)
        return real_step(self, x * float("nan") if len(calls) == 6 else x, y, mask)
    monkeypatch.setattr(rnn.WindowedTrainer, "step", poisoned)
    with pytest.raises(DivergenceError, match="window step 6") as caught:
        rnn.train_copy("tbptt", 3, 12, hidden=8, batch=4, log_every=4, progress=False)
    assert caught.value.iteration == 6 and caught.value.history.iteration == [4]


def test_dni_aux_target_is_the_window_gradient_plus_the_discounted_future_without_the_aux_loss():
    """DNI + Aux: the synthesizer regresses onto d(window loss)/ds_start + J^T (scale x M(s_end) / B), times
    B, exactly as plain DNI does; the aux loss trains the LSTM and its head but adds nothing to the target."""
    model, x, y, mask = problem()
    torch.manual_seed(1)
    trainer = rnn.WindowedTrainer(model, 3, "dni_aux", scale=0.1)
    for module in (trainer.synthesizer[-1], trainer.aux):
        torch.nn.init.normal_(module.weight, std=0.3)
    trainer.reset(BATCH)
    trainer.backward(x[:, :3], y[:, :3], mask[:3])   # a first window, so that the start state is not zero
    start_state = trainer.state.clone()
    _, _, target, _ = trainer.backward(x[:, 3:6], y[:, 3:6], mask[3:6])
    start = start_state.clone().requires_grad_()
    logits, end, outputs = model(x[:, 3:6], start)
    predicted = trainer.synthesizer(end.detach()).detach()
    window = rnn.bits_loss(logits, y[:, 3:6], mask[3:6])[0] + (end * (0.1 * predicted / BATCH)).sum()
    expected = torch.autograd.grad(window, start, retain_graph=True)[0] * BATCH
    assert torch.allclose(target, expected, atol=1e-10)
    aux = torch.autograd.grad(F.mse_loss(trainer.aux(outputs[:, 0]), predicted), start)[0] * BATCH
    assert aux.abs().max() > 1e-4 and not torch.allclose(target, expected + aux, atol=1e-8), "the aux term is not zero"


def test_the_loop_can_record_the_future_gradient_cosine_over_training():
    """With a probe stretch, a DNI run records at every log how well M predicts the gradient from beyond the
    window; measuring changes nothing the run learns."""
    probe = tasks.CopyStream(8, 8, level=2, seed=7).next_window(3 * 8)[:3]
    runs = []
    for with_probe in (False, True):
        torch.manual_seed(0)
        stream = tasks.CopyStream(4, 8, level=2, seed=0)
        trainer = rnn.WindowedTrainer(rnn.RecurrentModel(10, 8, 8), 3, "dni")
        runs.append(rnn.train_windows(trainer, stream, 12, log_every=4, progress=False,
                                      probe=probe if with_probe else None))
    assert runs[0].train_loss == runs[1].train_loss and "cos_future" not in runs[0].extra
    assert len(runs[1].extra["cos_future"]) == 3 and all(-1 <= c <= 1 for c in runs[1].extra["cos_future"])


def test_a_fixed_length_run_has_no_curriculum_and_measures_the_cosine_at_that_length():
    """train_copy(length=N): every episode has length N, nothing moves up, and measure=True records the
    cosine on a stretch at that length (a DNI run only)."""
    _, history = rnn.train_copy("dni", 2, 24, hidden=8, batch=4, log_every=8, progress=False, length=2, measure=True)
    assert "level" not in history.extra and "solved" not in history.meta and history.meta["length"] == 2
    assert len(history.extra["cos_future"]) == 3
    _, truncated = rnn.train_copy("tbptt", 2, 24, hidden=8, batch=4, log_every=8, progress=False, length=2, measure=True)
    assert "cos_future" not in truncated.extra


def test_the_curriculum_probe_follows_the_length_being_trained(monkeypatch):
    """With a curriculum, the cosine is measured at the length the run is training at that moment."""
    levels = []
    real = rnn.probe_stretch
    monkeypatch.setattr(rnn, "probe_stretch", lambda level, *a, **k: levels.append(level) or real(level, *a, **k))
    monkeypatch.setattr(rnn.Curriculum, "update", lambda self, *a: (setattr(self, "level", self.level + 1), True)[1])
    rnn.train_copy("dni", 2, 6, hidden=8, batch=4, log_every=3, progress=False, measure=True)
    assert levels == [4, 7]


def test_run_many_gives_the_same_runs_in_worker_processes_as_here():
    """A grid of runs in spawned worker processes (one thread each) returns what the same runs give one after
    the other in this process, in the order of the jobs, with the trained weights."""
    jobs = [("copy", dict(method=m, window=2, steps=16, hidden=8, batch=4, log_every=8, seed=s))
            for m in ("tbptt", "dni") for s in (0, 1)]
    threads = torch.get_num_threads()
    try:
        here = rnn.run_many(jobs, workers=1)
    finally:
        torch.set_num_threads(threads)
    there = rnn.run_many(jobs, workers=2)
    for (a, wa), (b, wb), (_, options) in zip(here, there, jobs):
        assert a.method == b.method == options["method"] and a.meta["seed"] == options["seed"]
        assert a.train_loss == b.train_loss and a.meta == b.meta
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert here[0][0].train_loss != here[1][0].train_loss, "another seed is another run"
    with pytest.raises(ValueError, match="copy"):
        rnn.run_many([("sound", {})], workers=1)


class LookupOracle:
    """The exact per-example gradient of all later loss for any boundary state it was told about; zero for
    any other state (so that a trainer can take ordinary steps first)."""

    def __init__(self, scale):
        self.scale, self.known = scale, []

    def __call__(self, state):
        for expected, grad in self.known:
            if expected.shape == state.shape and torch.allclose(state, expected):
                return grad / self.scale
        return torch.zeros_like(state)


def test_update_alignment_is_one_for_an_exact_synthetic_gradient_and_leaves_the_trainer_untouched():
    model, x, y, mask = problem()
    oracle = LookupOracle(scale=0.1)
    trainer = rnn.WindowedTrainer(model, 3, "dni", synthesizer=oracle, scale=0.1)
    trainer.reset(BATCH)
    for k in (0, 3):                                  # a few ordinary steps, so that Adam has a state to share
        trainer.step(x[:, k:k + 3], y[:, k:k + 3], mask[k:k + 3])
    _, boundaries = full_bptt(model, x, y, mask, 3)
    oracle.known = boundaries
    before = [p.detach().clone() for p in model.parameters()]
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    found = rnn.update_alignment(trainer, x, y, mask)
    assert found["upd_cos"] == pytest.approx(1.0, abs=1e-9)
    assert found["upd_step_cos"] == pytest.approx(1.0, abs=1e-9)
    assert found["upd_step_cos_cut"] < 0.999           # without the future's gradient the update is another one
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(torch.equal(s["exp_avg"], m) for s, m in zip(trainer.optimizer.state.values(), moments))


def test_update_alignment_of_truncated_bptt_misses_the_future():
    model, x, y, mask = problem()
    found = rnn.update_alignment(rnn.WindowedTrainer(model, 3, "tbptt"), x, y, mask)
    assert set(found) == {"upd_cos", "upd_step_cos"}
    assert -1.0 <= found["upd_step_cos"] < 0.999
