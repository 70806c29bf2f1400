import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import data, models, plots, train  # noqa: E402
from course_lib.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one CPU thread is faster than two fighting over a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _history(step_losses, steps_per_epoch=10, val_losses=None, lr=0.1):
    """A synthetic History with the same record layout as course_lib.train.fit's."""
    h = History()
    for i, loss in enumerate(step_losses, start=1):
        h.steps.append({"step": i, "epoch": (i - 1) // steps_per_epoch + 1, "train_loss": float(loss),
                        "train_acc": 0.5, "lr": lr})
    frame = pd.DataFrame(h.steps)
    for epoch, group in frame.groupby("epoch"):
        val = None if val_losses is None else float(val_losses[epoch - 1])
        h.epochs.append({"epoch": int(epoch), "step": int(group["step"].max()),
                         "train_loss": float(group["train_loss"].mean()), "train_acc": 0.5,
                         "val_loss": val, "val_acc": None if val is None else 0.5, "lr": lr, "seconds": 0.0})
    return h


# ------------------------------------------------------------------------------------------- smooth

def test_smooth_matches_the_ema_recursion_with_bias_correction():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, generator=g, dtype=torch.float64).numpy()
    beta, m, expected = 0.8, 0.0, []
    for t, v in enumerate(x, 1):
        m = beta * m + (1 - beta) * v
        expected.append(m / (1 - beta ** t))
    np.testing.assert_allclose(plots.smooth(x, beta), expected, rtol=1e-12)
    np.testing.assert_allclose(plots.smooth(x, 0.0), x)
    assert plots.smooth([5.0, 5.0, 5.0], 0.99).tolist() == pytest.approx([5.0] * 3), "a constant stays constant"
    # matches pandas' ewm(adjust=True), which is the bias-corrected average
    np.testing.assert_allclose(plots.smooth(x, 0.9), pd.Series(x).ewm(alpha=0.1, adjust=True).mean(), rtol=1e-10)
    with pytest.raises(ValueError):
        plots.smooth(x, 1.0)


def test_loss_band_grows_with_noise():
    g = np.random.default_rng(0)
    base = np.linspace(1.0, 0.5, 2000)
    narrow = plots.loss_band(base + 0.01 * g.standard_normal(2000))
    wide = plots.loss_band(base + 0.1 * g.standard_normal(2000))
    assert 5 < wide / narrow < 15


def test_trend_is_smooth_without_calling_it():
    """plot_history and loss_band draw the trend with pandas (curves._trend), which the student release keeps:
    equal to smooth, NaN and infinities included, for any beta."""
    from course_lib import curves
    g = np.random.default_rng(0)
    for _ in range(200):
        x = g.normal(size=int(g.integers(1, 40)))
        for _ in range(int(g.integers(0, 4))):
            x[g.integers(0, len(x))] = g.choice([np.nan, np.inf, -np.inf])
        for beta in [0.0, 0.5, 0.9, 0.99]:
            with np.errstate(invalid="ignore"):
                expected = plots.smooth(x, beta)
            np.testing.assert_allclose(curves._trend(x, beta), expected, rtol=1e-10, atol=1e-12, equal_nan=True)
    with pytest.raises(ValueError):
        curves._trend([1.0], 1.0)


def test_drawing_works_without_the_left_out_answers():
    """The student release strips chapter 07's answers (smooth, the four rules, diagnose): drawing must not need them."""
    from course_lib import curves, grading
    answers = [curves.smooth, curves.divergence_step, curves.linearity, curves.plateau_start,
               curves.overfitting_epoch, curves.diagnose]
    h = _history(np.linspace(2, 1, 40) + 0.05 * np.sin(np.arange(40)), 10, val_losses=[1.9, 1.6, 1.4, 1.3])
    expected_trend = plots.smooth(h.to_frame("step")["train_loss"], 0.9)
    expected_band = plots.loss_band(np.linspace(1, 0.5, 200) + 0.1 * np.cos(np.arange(200)))
    with grading._disabled(answers):
        fig = plots.plot_history(h)
        band = plots.loss_band(np.linspace(1, 0.5, 200) + 0.1 * np.cos(np.arange(200)))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["train loss (EMA 0.9)"].get_ydata(), expected_trend, rtol=1e-10)
    assert band == pytest.approx(expected_band, rel=1e-9)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- diagnose

def test_divergence_by_three_times_rule_and_nan():
    assert plots.divergence_step([2.3, 2.0, 4.0, 7.0, 3.0]) == 4
    assert plots.divergence_step([2.3, 2.0, float("nan")]) == 3
    assert plots.divergence_step([2.3, 2.0, 1.0]) is None
    found = plots.diagnose(_history([2.3, 2.2, 2.5, 9.0] + [float("nan")] * 6))
    assert [f.kind for f in found] == ["divergence"] and found[0].at == 4 and found[0].level == "step"


def test_too_low_learning_rate_is_a_straight_line():
    g = np.random.default_rng(1)
    t = np.arange(400)
    linear = 2.3 - 0.002 * t + 0.02 * g.standard_normal(400)
    kinds = [f.kind for f in plots.diagnose(_history(linear))]
    assert kinds == ["lr_too_low"]
    good = 0.3 + 2.0 * np.exp(-t / 60) + 0.02 * g.standard_normal(400)
    assert [f.kind for f in plots.diagnose(_history(good))] != ["lr_too_low"]


def test_plateau_found_where_the_curve_stops_improving():
    t = np.arange(600)
    curve = np.where(t < 200, 2.3 - 1.5 * t / 200, 0.8)          # falls, then flat from step 201
    found = plots.diagnose(_history(curve), patience=100)
    assert [f.kind for f in found] == ["plateau"]
    assert 190 <= found[0].at <= 230, found[0]
    still_falling = 0.3 + 2.0 * np.exp(-t / 200)
    assert plots.plateau_start(still_falling, patience=100) is None


def test_overfitting_epoch_and_gap():
    train_l = np.linspace(2.0, 0.1, 20)
    val = np.concatenate([np.linspace(2.1, 0.6, 8), np.linspace(0.65, 1.2, 12)])
    steps = np.repeat(train_l, 10)
    found = plots.diagnose(_history(steps, 10, val))
    over = [f for f in found if f.kind == "overfitting"]
    assert len(over) == 1 and over[0].level == "epoch" and over[0].at == 9
    assert over[0].details["gap"] == pytest.approx(1.2 - 0.1, abs=1e-6)
    assert plots.overfitting_epoch(train_l, np.linspace(2.1, 0.5, 20)) is None, "val still falling: no finding"


def _real_run(lr, epochs=3):
    """3 epochs (141 steps) of an MLP on scikit-learn's digits."""
    ds = data.load_dataset("digits", device="cpu", verbose=False)
    torch.manual_seed(0)
    net = models.MLP(64, 10, depth=2, width=64)
    loader = data.DeviceLoader(ds.x_train, ds.y_train, 32, generator=torch.Generator().manual_seed(0))
    return train.fit(net, loader, epochs=epochs, lr=lr, val_data=(ds.x_test, ds.y_test), progress=False)


def test_diagnose_real_short_runs():
    assert [f.kind for f in plots.diagnose(_real_run(20.0))] == ["divergence"]
    assert [f.kind for f in plots.diagnose(_real_run(0.03))] == ["lr_too_low"]
    assert not [f for f in plots.diagnose(_real_run(0.3)) if f.kind in ("divergence", "lr_too_low")]


# ------------------------------------------------------------------------------------------ drawing

def test_plot_history_picks_columns_by_name_and_skips():
    h = _history(np.linspace(2, 1, 40), 10, val_losses=[1.9, 1.6, 1.4, 1.3])
    # reorder the columns: a plot that picked columns by position would now draw the wrong ones
    h.steps = [dict(reversed(list(r.items()))) for r in h.steps]
    fig = plots.plot_history(h, skip_first=5, skip_last=3)
    ax_loss = fig.axes[0]
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    raw = lines["train loss (step)"]
    assert len(raw.get_ydata()) == 32
    np.testing.assert_allclose(raw.get_ydata(), np.linspace(2, 1, 40)[5:37])
    np.testing.assert_allclose(raw.get_xdata()[:2], [0.6, 0.7])              # step 6 of 10 in epoch 1
    val = lines["validation loss"]
    np.testing.assert_allclose(val.get_xdata(), [1, 2, 3])                   # epoch 4 ends at a skipped step
    np.testing.assert_allclose(val.get_ydata(), [1.9, 1.6, 1.4])
    assert any(ax.get_ylabel() == "learning rate" for ax in fig.axes), "the lr has its own axis"
    plt.close(fig)


def test_a_constant_learning_rate_gets_one_tick_at_its_value():
    fig = plots.plot_history(_history(np.linspace(2, 1, 40), 10, lr=0.1))
    ax_lr = next(ax for ax in fig.axes if ax.get_ylabel() == "learning rate")
    assert [t.get_text() for t in ax_lr.get_yticklabels()] == ["0.1"] and ax_lr.get_ylim() == (0, 0.2)
    plt.close(fig)


def test_liveplot_draws_once_without_display_and_throttles_when_live():
    ds = data.load_dataset("digits", device="cpu", verbose=False)
    loader = data.DeviceLoader(ds.x_train, ds.y_train, 100, generator=torch.Generator().manual_seed(0))
    net = models.MLP(64, 10, depth=1, width=16)
    quiet = plots.LivePlot(every=5)
    assert not quiet.live
    train.fit(net, loader, epochs=2, lr=0.1, callbacks=[quiet], progress=False)
    assert quiet.draws == 0, "no display: nothing is drawn while training"
    with quiet:
        pass
    assert quiet.draws == 1 and quiet.figure.axes
    quiet.finish()
    assert quiet.draws == 1, "finish draws once"

    class Counting(plots.LivePlot):
        shown = 0

        def _show(self):  # no Jupyter display in a test: count instead
            self.shown += 1

    live = Counting(every=30, epochs=6, live=True)                           # 15 steps per epoch
    train.fit(net, loader, epochs=6, lr=0.1, callbacks=[live], progress=False)
    assert live.draws == 3, "after epochs 2 and 4 (30 steps apart), then once at the end"
    assert live.finished and live.shown == 3
    plt.close("all")


def test_liveplot_draws_once_under_autograder(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not plots.LivePlot().live
