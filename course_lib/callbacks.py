"""Callbacks for :func:`course_lib.train.fit`: early stopping (seed 001, 7.7.3: "watch the validation
error; stop training when it no longer improves") and :class:`StopAfter`, a fixed budget of steps.

A callback is an object with optional ``on_step_end(state)`` / ``on_epoch_end(state)`` methods.
``state`` has ``model``, ``optimizer``, ``history`` (a :class:`course_lib.train.History`), ``epoch``,
``step`` and ``stop``; setting ``state.stop = True`` ends training after the current epoch.
"""
from __future__ import annotations

import math
from typing import Iterable

from .release import reference


def is_improvement(value: float, best: float, min_delta: float = 0.0, mode: str = "min") -> bool:
    """``value < best − min_delta`` (mode ``"min"``) or ``value > best + min_delta`` (mode ``"max"``)."""
    if mode == "min":
        return value < best - min_delta
    if mode == "max":
        return value > best + min_delta
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


@reference("04_training", "early_stopping_point")
def early_stopping_point(values: Iterable[float], patience: int, min_delta: float = 0.0,
                         mode: str = "min") -> tuple[int, int | None]:
    """Replay early stopping on a sequence of validation values (index 0 = epoch 1).

    An epoch is an improvement if its value beats the best so far by more than ``min_delta``
    (:func:`is_improvement`); training stops at the first epoch that ends ``patience`` epochs in a row
    without one. Returns ``(best_index, stop_index)``, with ``stop_index`` ``None`` if it never stops.
    Keras's ``EarlyStopping`` rule (Prechelt, 1998, "Early stopping — but when?").
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    best, best_index, wait = (math.inf if mode == "min" else -math.inf), None, 0
    for i, value in enumerate(values):
        if best_index is None or is_improvement(value, best, min_delta, mode):
            best, best_index, wait = value, i, 0
        else:
            wait += 1
            if wait >= patience:
                return best_index, i
    return best_index, None


class EarlyStopping:
    """Stop :func:`course_lib.train.fit` when ``monitor`` (an epoch column of the history, by default
    ``"val_loss"``) has not improved by more than ``min_delta`` for ``patience`` epochs.

    It keeps a copy of the weights of the best epoch (on their device) and, when it stops, loads them
    back into the model (``restore_best=True``) and marks the history:
    ``history.events`` gets ``{"event": "early_stop", "epoch", "best_epoch", "best"}``.
    If training ends without stopping, :meth:`restore` loads the best weights on request.
    The rule is :func:`early_stopping_point`'s, applied one epoch at a time.
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, monitor: str = "val_loss",
                 mode: str = "min", restore_best: bool = True):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        is_improvement(0.0, 0.0, 0.0, mode)  # validates mode
        self.patience, self.min_delta, self.monitor, self.mode = patience, min_delta, monitor, mode
        self.restore_best = restore_best
        self.best, self.best_epoch, self.wait, self.stopped_epoch, self.best_state = None, None, 0, None, None

    def on_epoch_end(self, state) -> None:
        """Update the best value and the count of epochs without improvement; stop when it reaches patience."""
        value = state.history.last(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the history does not have "
                             "(pass val_data to fit to get val_loss)")
        if self.best is None or is_improvement(value, self.best, self.min_delta, self.mode):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch, state.stop = state.epoch, True
            if self.restore_best:
                self.restore(state.model)
            state.history.mark("early_stop", epoch=state.epoch, best_epoch=self.best_epoch, best=self.best,
                               monitor=self.monitor, restored=self.restore_best)

    def restore(self, model) -> None:
        """Load the weights of the best epoch seen into ``model``."""
        if self.best_state is None:
            raise RuntimeError("no epoch has been seen yet: nothing to restore")
        model.load_state_dict(self.best_state)


class StopAfter:
    """Stop :func:`course_lib.train.fit` once ``steps`` optimizer steps have run, so that runs of different
    batch sizes or data sizes can be compared at the same number of updates (``epochs`` is then an upper
    bound: pass ``math.ceil(steps / len(loader))``)."""

    def __init__(self, steps: int):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def on_step_end(self, state) -> None:
        """``state.stop = state.step >= steps``."""
        state.stop = state.step >= self.steps
