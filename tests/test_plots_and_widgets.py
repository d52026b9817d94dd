import matplotlib.pyplot as plt
import pytest
import torch

from helpers import plots, widgets
from helpers.training import History


def fake_history(checkpoints=3, blocks=2):
    history = History("dni", blocks + 1, iteration=[10 * (k + 1) for k in range(checkpoints)],
                      test_accuracy=[0.5] * checkpoints)
    for b in range(blocks):
        history.extra[f"cos_batch/{b}"] = [0.1 * k + b for k in range(checkpoints)]
    return history


class FakeLearner:
    def __init__(self, checkpoints=3, blocks=2):
        g = torch.Generator().manual_seed(0)
        self.snapshots = [[(torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)) for _ in range(blocks)]
                          for _ in range(checkpoints)]


def test_learning_curves_have_one_line_per_run_and_labels():
    a, b = fake_history(), History("backprop", 3, iteration=[10, 20], test_accuracy=[0.6, 0.7])
    fig = plots.plot_learning_curves([a, b], size="smoke")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and "smoke" in ax.get_title() and ax.get_xlabel() == "iteration"
    assert ax.lines[1].get_color() == plots.METHOD_COLORS["backprop"]
    plt.close(fig)


def test_gradient_comparison_panels():
    learner, history = FakeLearner(), fake_history()
    synthetic, true = learner.snapshots[1][0]
    fig = plots.plot_gradient_comparison(synthetic, true, 0, 20, history=history, size="smoke")
    titles = [ax.get_title() for ax in fig.axes]
    assert "block 0, iteration 20" in titles[0] and titles[1] == "synthetic dL/dh" and titles[2] == "true dL/dh"
    assert "cos batch" in titles[3] and len(fig.axes[3].lines) == 2 + 2  # 2 blocks, the zero line, the marker
    expected = torch.nn.functional.cosine_similarity(synthetic.flatten(), true.flatten(), dim=0)
    assert f"{expected:.2f}" in titles[0]
    plt.close(fig)
    fig = plots.plot_gradient_comparison(synthetic, synthetic, 0, 20)
    assert "cosine 1.00" in fig.axes[0].get_title() and len(fig.axes) == 4  # 3 panels + colour bar
    plt.close(fig)


def test_gradient_quality_needs_measurements():
    with pytest.raises(ValueError, match="no 'cos_batch' measurements"):
        plots.plot_gradient_quality(History("backprop", 3))


def test_locking_figure():
    fig = plots.plot_locking(layers=4)
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "layer 4"
    plt.close(fig)


def test_explorer_controls_drive_the_plot():
    calls = []

    def record(synthetic, true, block, iteration, history=None, size=None):
        calls.append((synthetic, true, block, iteration))
        return plt.figure()
    learner, history = FakeLearner(), fake_history()
    explorer = widgets.GradientExplorer(learner, history, plot=record)
    assert calls[-1][2:] == (1, 30)  # starts on the top block, last checkpoint
    explorer.layer.value = 0
    assert calls[-1][2:] == (0, 30) and calls[-1][0] is learner.snapshots[2][0][0]
    explorer.checkpoint.value = 0
    assert calls[-1][2:] == (0, 10) and calls[-1][1] is learner.snapshots[0][0][1]
    assert explorer.caption.value == "iteration 10"
    assert len(calls) == 3


def test_explorer_with_the_real_plot_and_no_snapshots():
    explorer = widgets.GradientExplorer(FakeLearner(), fake_history())
    explorer.checkpoint.value = 1
    assert "iteration 20" in explorer.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="no snapshots"):
        widgets.GradientExplorer(type("L", (), {"snapshots": []})(), fake_history())


def test_channel_cosines_match_a_hand_computation_and_check_shapes():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(4, 3, 5, 5, generator=g)
    synthetic = true.clone()
    synthetic[:, 1] = -synthetic[:, 1]        # channel 1 points the wrong way
    synthetic[:, 2] = torch.randn(4, 5, 5, generator=g)
    cosines = plots.channel_cosines(synthetic, true)
    expected = torch.nn.functional.cosine_similarity(synthetic[:, 2].flatten(), true[:, 2].flatten(), dim=0)
    torch.testing.assert_close(cosines, torch.stack([torch.tensor(1.0), torch.tensor(-1.0), expected]))
    with pytest.raises(ValueError, match="N, C, H, W"):
        plots.channel_cosines(synthetic.flatten(1), true.flatten(1))


def test_conv_gradient_view_in_the_explorer():
    g = torch.Generator().manual_seed(0)
    learner = FakeLearner()
    learner.snapshots = [[(torch.randn(4, 6, 5, 5, generator=g), torch.randn(4, 6, 5, 5, generator=g))
                          for _ in range(2)] for _ in range(3)]
    explorer = widgets.GradientExplorer(learner, fake_history(), size="smoke", plot=plots.plot_conv_gradient_comparison)
    fig = explorer.figure
    assert len(fig.axes[0].patches) == 6                         # one bar per channel
    assert "block 1, iteration 30" in fig.axes[0].get_title() and "cos batch" in fig.axes[3].get_title()
    assert fig.axes[1].get_title().startswith("true dL/dh") and fig.axes[2].get_title().startswith("synthetic")
    explorer.checkpoint.value = 0
    assert "iteration 10" in explorer.figure.axes[0].get_title()


def recurrent_history(method, window, seed, solved, cos=None):
    history = History(method, 1, iteration=[1, 2, 3], train_loss=[8.0, 4.0, 1.0])
    history.meta.update(window=window, seed=seed, solved=solved, task="copy", test_bpc=2.0 + 0.01 * seed)
    history.extra["level"] = [1, 2, solved + 1]
    if cos is not None:
        history.extra["cos_future"] = cos
    return history


def test_the_solved_lengths_show_every_seed_and_the_median():
    runs = [recurrent_history(m, T, s, solved) for T in (2, 5) for m, base in (("tbptt", 0), ("dni", 2))
            for s, solved in enumerate([base, base + 1, base + 3])]
    fig = plots.plot_solved(runs, size="quick")
    ax = fig.axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert sum(len(line.get_ydata()) for line in dots) == len(runs), "one dot per seed"
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [1, 1, 3, 3], "each bar stands at its method's median over seeds"
    plt.close(fig)


def test_the_future_cosine_figure_draws_only_runs_with_a_synthesizer_on_the_right():
    runs = [recurrent_history("tbptt", 2, 0, 0), recurrent_history("dni", 2, 0, 1, cos=[0.1, 0.2, 0.3]),
            recurrent_history("dni", 2, 1, 1, cos=[0.0, 0.1, 0.2])]
    fig = plots.plot_future_cosine(runs, size="quick")
    left, right = fig.axes
    assert len(left.lines) == 3 and len([l for l in right.lines if len(l.get_xdata()) == 3]) == 2
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["DNI, T = 2"], "seeds share one legend entry"
    fig = plots.plot_text([dict_history for dict_history in runs], size="quick")
    assert "mean of 2" in fig.axes[0].get_legend().get_texts()[1].get_text()
    plt.close("all")


def test_the_locking_timeline_draws_all_of_dnis_work_and_its_earlier_updates():
    costs = plots.schematic_costs(3)
    backprop, dni = plots.locking_schedule(costs, "backprop"), plots.locking_schedule(costs, "dni")
    work = {m: sum(d for spans in s.values() for _, d, _ in spans) for m, s in (("backprop", backprop), ("dni", dni))}
    synthesizer_work = sum(c["synthesizer"] + c["synthesizer_training"] for c in costs)
    assert work["dni"] == work["backprop"] + synthesizer_work > work["backprop"], "DNI does more work, not less"
    for layer in (1, 2):
        kinds = [k for _, _, k in dni[layer]]
        assert kinds == ["forward", "synthesizer", "backward", "update", "synthesizer_training"], kinds
        update = {m: [s for s, _, k in spans[layer] if k == "update"][0] for m, spans in (("backprop", backprop), ("dni", dni))}
        assert update["dni"] < update["backprop"], "a lower layer updates earlier with a synthetic gradient"
    for layer in (1, 2):   # a synthesizer trains only once the layer above has sent its target down
        above_backward_end = [s + d for s, d, k in dni[layer + 1] if k == "backward"][0]
        assert [s for s, _, k in dni[layer] if k == "synthesizer_training"][0] >= above_backward_end
    fig = plots.plot_locking(costs=costs)
    assert "total work 8" in fig.axes[0].get_title() and "total work 12" in fig.axes[1].get_title()
    plt.close(fig)


def busy_at(events, t):
    return {(k, b) for k, kind, s, d, b in events if s <= t < s + d}


def test_the_pipelined_schedule_runs_blocks_on_different_batches_and_keeps_the_cost_model():
    costs = plots.schematic_costs(3)
    periods = plots.pipeline_periods(costs)
    assert periods == {"locked": 8.0, "decoupled": 5.0}
    for mode in ("locked", "decoupled"):
        events = plots.pipeline_schedule(costs, 8, mode)
        starts = sorted(s for k, kind, s, d, b in events if k == 2 and kind == "forward")
        assert starts[-1] - starts[-2] == periods[mode], (mode, starts)   # steady state: one batch per period
        times = sorted({s for _, _, s, _, _ in events})
        at_once = [busy_at(events, t) for t in times]
        if mode == "locked":
            assert all(len(b) <= 1 for b in at_once), "backprop: one block busy at a time"
        else:
            assert any(len({batch for _, batch in b}) >= 2 for b in at_once), "blocks on different batches at once"
            for k, kind, s, d, b in events:
                if kind == "synthesizer_training":
                    ready = [s2 + d2 for k2, kind2, s2, d2, b2 in events if (k2, kind2, b2) == (k + 1, "backward", b)][0]
                    assert s >= ready, "a synthesizer trains on a target that has arrived"
    fig = plots.plot_pipeline_schedule(costs, batches=4)
    assert "every 8 units" in fig.axes[0].get_title() and "every 5 units" in fig.axes[1].get_title()
    plt.close(fig)


def test_step_costs_figure_gives_each_methods_ratio():
    costs = {"backprop": [{"forward": 2, "backward": 2, "synthesizer": 0, "synthesizer_training": 0}],
             "dni": [{"forward": 2, "backward": 2, "synthesizer": 1, "synthesizer_training": 1}]}
    fig = plots.plot_step_costs(costs, measured={"backprop": 1.0, "dni": 3.0}, size="smoke")
    counted, measured = fig.axes
    assert [t.get_text().strip() for t in counted.texts] == ["1.00x", "1.50x"]
    assert [t.get_text().strip() for t in measured.texts] == ["1.00x", "3.00x"] and "smoke" in measured.get_title()
    plt.close(fig)


def test_the_explorer_names_what_the_learner_follows():
    explorer = widgets.GradientExplorer(FakeLearner(), fake_history(), label="DGL head")
    titles = [ax.get_title() for ax in explorer.figure.axes]
    assert titles[1] == "DGL head dL/dh" and not any("synthetic" in t for t in titles)
    assert explorer.figure.axes[0].get_ylabel() == "DGL head gradient component"
    conv = plots.plot_conv_gradient_comparison(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), 0, 1, label="DGL head")
    assert conv.axes[2].get_title().startswith("DGL head dL/dh") and "synthetic" not in conv.axes[0].get_ylabel()
    plt.close("all")
