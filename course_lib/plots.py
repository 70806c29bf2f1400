"""Drawing training plots: a :class:`~course_lib.train.History`, a confusion matrix, and live plots.

- :func:`plot_history` draws train/validation loss aligned by epoch, accuracy, and the learning rate on
  a second axis. Columns are always chosen by name (fastai's ``plot_loss``, without its positional
  columns).
- :class:`LivePlot` is a ``course_lib.train.fit`` callback that redraws the figure in place in
  JupyterLab at most every ``every`` steps; under nbgrader or without a display it draws once, at the end.

The numbers behind the plots (smoothing, the loss band, the automatic diagnosis) are in
:mod:`course_lib.curves`; their names are also importable from here, as chapter 07 first used them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .curves import (Finding, _as_array, _frames, _has, _trend, diagnose, divergence_step,  # noqa: F401
                     linearity, loss_band, overfitting_epoch, plateau_start, smooth)
from .runtime import under_autograder

# ------------------------------------------------------------------------------------------- plotting


def _epoch_position(steps: pd.DataFrame) -> pd.Series:
    """Each step's position in epochs: a step k of n in epoch e sits at ``e - 1 + k / n``."""
    rank = steps.groupby("epoch").cumcount() + 1
    count = steps.groupby("epoch")["step"].transform("size")
    return steps["epoch"] - 1 + rank / count


def plot_history(history, *, skip_first: int = 0, skip_last: int = 0, beta: float | None = 0.9,
                 show_lr: bool = True, title: str | None = None, figure=None):
    """Draw a training history; returns the matplotlib figure.

    Left panel: the per-step training loss (faint) and its :func:`smooth`-ed curve (``beta``; ``None``
    for no smoothing), the per-epoch train and validation losses at the end of each epoch, all on one
    x axis in epochs; the learning rate on a second y axis (``show_lr``). Right panel: accuracies.
    ``skip_first`` / ``skip_last`` drop that many steps (and the epochs they end) from the plot.
    Columns are looked up by name (``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``, ``lr``).
    ``figure`` draws into an existing figure (it is cleared), as :class:`LivePlot` does.
    """
    if skip_first < 0 or skip_last < 0:
        raise ValueError(f"skip_first and skip_last must be >= 0, got {skip_first}, {skip_last}")
    steps, epochs = _frames(history)
    if figure is None:
        import matplotlib.pyplot as plt
        figure = plt.figure(figsize=(10, 3.6))
    figure.clear()
    ax_loss, ax_acc = figure.subplots(1, 2)
    if len(steps):
        steps = steps.assign(x=_epoch_position(steps))
        steps = steps.iloc[skip_first:len(steps) - skip_last]
    if len(epochs) and len(steps):
        epochs = epochs[(epochs["step"] > steps["step"].min()) & (epochs["step"] <= steps["step"].max())]
    _draw_losses(ax_loss, steps, epochs, beta)
    _draw_accuracies(ax_acc, steps, epochs, beta)
    if show_lr and _has(steps, "lr"):
        _draw_lr(ax_loss, steps)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _draw_lr(ax_loss, steps: pd.DataFrame) -> None:
    """The learning rate on a second y axis of ``ax_loss``.

    A constant rate gets one tick, at its value, on an axis from 0: matplotlib's autoscale would otherwise
    spread ticks such as 0.096 ... 0.104 around a rate of 0.1 that never changed.
    """
    lr = steps["lr"].astype(float)
    ax_lr = ax_loss.twinx()
    ax_lr.plot(steps["x"], lr, color="tab:green", lw=1, ls="--", label="learning rate")
    ax_lr.set_ylabel("learning rate", color="tab:green")
    ax_lr.tick_params(axis="y", colors="tab:green")
    if len(lr) and lr.max() == lr.min() and lr.max() > 0:
        ax_lr.set_ylim(0, 2 * lr.max())
        ax_lr.set_yticks([lr.max()], labels=[f"{lr.max():g}"])


def _draw_losses(ax, steps: pd.DataFrame, epochs: pd.DataFrame, beta) -> None:
    if _has(steps, "train_loss"):
        ax.plot(steps["x"], steps["train_loss"], color="tab:blue", alpha=0.25, lw=0.8, label="train loss (step)")
        if beta:
            ax.plot(steps["x"], _trend(steps["train_loss"], beta), color="tab:blue", lw=1.5,
                    label=f"train loss (EMA {beta})")
    if _has(epochs, "train_loss"):
        ax.plot(epochs["epoch"], epochs["train_loss"], "o-", color="navy", ms=4, label="train loss (epoch)")
    if _has(epochs, "val_loss"):
        ax.plot(epochs["epoch"], epochs["val_loss"], "s-", color="tab:orange", ms=4, label="validation loss")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend(fontsize=7, loc="upper right")


def _draw_accuracies(ax, steps: pd.DataFrame, epochs: pd.DataFrame, beta) -> None:
    if _has(steps, "train_acc") and beta:
        ax.plot(steps["x"], _trend(steps["train_acc"], beta), color="tab:blue", lw=1, alpha=0.6,
                label=f"train accuracy (EMA {beta})")
    if _has(epochs, "train_acc"):
        ax.plot(epochs["epoch"], epochs["train_acc"], "o-", color="navy", ms=4, label="train accuracy (epoch)")
    if _has(epochs, "val_acc"):
        ax.plot(epochs["epoch"], epochs["val_acc"], "s-", color="tab:orange", ms=4, label="validation accuracy")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax.legend(fontsize=7, loc="lower right")


def plot_confusion_matrix(cm, classes=None, *, normalize: bool = True, ax=None, title: str = "confusion matrix"):
    """Draw a confusion matrix (rows: true class, columns: predicted); returns the figure.

    ``normalize`` divides each row by its total, so the diagonal holds each class's recall.
    """
    import matplotlib.pyplot as plt

    m = _as_array(cm).reshape(len(cm), len(cm))
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.2))
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ticks = range(len(m))
    labels = classes if classes is not None else [str(i) for i in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    for i in ticks:
        for j in ticks:
            if m[i, j] >= 0.005:
                ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}", ha="center", va="center",
                        fontsize=6, color="white" if m[i, j] > 0.6 * m.max() else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    return ax.figure


# ------------------------------------------------------------------------------------------ live plots


def _display_available() -> bool:
    """True inside a Jupyter kernel that can show rich output (not under nbgrader's autograde)."""
    if under_autograder():
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePlot:
    """A ``course_lib.train.fit`` callback that draws :func:`plot_history` while training runs.

    In JupyterLab the figure is shown once and then updated in place (``display_id``) at the end of an
    epoch, at most once every ``every`` steps, so drawing costs little (``fit`` copies the step records
    to the host once per epoch, so there is nothing new to draw in between). Under nbgrader's autograde
    or with no display (a script, a test) nothing is drawn during training: the figure is drawn once,
    at the end. The end is the last of ``epochs`` epochs, a ``state.stop``, or :meth:`finish`
    (called by ``with LivePlot() as live: ...`` on exit). ``draws`` counts the redraws.
    """

    def __init__(self, every: int = 50, *, epochs: int | None = None, live: bool | None = None, **plot_kwargs):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        from matplotlib.figure import Figure

        self.every, self.epochs, self.plot_kwargs = int(every), epochs, plot_kwargs
        self.live = _display_available() if live is None else bool(live)
        self.figure = Figure(figsize=(10, 3.6))
        self.history, self.draws, self.finished, self._handle, self._drawn_at = None, 0, False, None, 0

    def _draw(self) -> None:
        plot_history(self.history, figure=self.figure, **self.plot_kwargs)
        self.draws += 1
        self._drawn_at = self.history.steps[-1]["step"] if self.history.steps else 0
        if self.live:
            self._show()

    def _show(self) -> None:
        """Show the figure in the notebook the first time, then update that output in place."""
        from IPython.display import display
        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)

    def on_epoch_end(self, state) -> None:
        self.history = state.history
        if self.epochs is not None and state.epoch >= self.epochs or state.stop:
            self.finish()
        elif self.live and state.step - self._drawn_at >= self.every:
            self._draw()

    def finish(self):
        """Draw the final figure once (shown in a notebook, kept in ``self.figure``); returns the figure."""
        if not self.finished and self.history is not None:
            self.finished = True
            if not self.live and _in_notebook():
                from IPython.display import display
                self._draw()
                display(self.figure)
            else:
                self._draw()
        return self.figure

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False


def _in_notebook() -> bool:
    """True inside any IPython kernel, nbgrader's included (where a final figure can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
