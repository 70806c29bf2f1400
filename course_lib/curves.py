"""Reading a training curve by the numbers: smooth it, measure its noise band, diagnose it (chapter 07).

- :func:`smooth` is the exponential moving average with bias correction (Adam's, Kingma & Ba 2015).
- :func:`loss_band` measures the width of the noisy band around the smoothed loss (seed 003: a wide band
  means a noisy gradient, so a larger batch).
- :func:`diagnose` turns the seeds' rules of thumb (seeds 001, 003) into findings: divergence (NaN or
  ``loss > 3 * initial loss``), a learning rate too low (the loss still falling in a straight line),
  a plateau, and overfitting (validation loss rising while the training loss falls).
- :func:`steps_to_target` and :func:`fewer_steps_ratio` measure training speed as the BN paper does
  (Ioffe & Szegedy 2015, section 4.2): the steps to reach an accuracy, and how many times fewer one network
  needs than another (chapter 04f).

Drawing lives in :mod:`course_lib.plots`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .release import reference

# ------------------------------------------------------------------------------------------ smoothing


def _as_array(values) -> np.ndarray:
    """Numbers, a list, a pandas Series, a NumPy array or a tensor, as a 1-D float64 array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


@reference("07_training_plots", "smooth_ema")
def smooth(values, beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction.

    ``m_0 = 0``, ``m_t = beta * m_{t-1} + (1 - beta) * x_t`` and the result is ``m_t / (1 - beta**t)``
    (t = 1, 2, ...). Without the correction the average starts near 0, because ``m_0 = 0``; dividing by
    ``1 - beta**t`` (the total weight given so far) removes that bias (Kingma & Ba 2015, section 3).
    ``beta = 0`` returns the values unchanged. Returns a float64 NumPy array.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    x = _as_array(values)
    out, m = np.empty_like(x), 0.0
    for t, value in enumerate(x, start=1):
        m = beta * m + (1.0 - beta) * value
        out[t - 1] = m / (1.0 - beta ** t)
    return out


def _trend(values, beta: float = 0.9) -> np.ndarray:
    """The curve :func:`smooth` draws, computed by pandas (``ewm(adjust=True)`` is the same average), for the
    plots and :func:`loss_band`.

    pandas skips NaN and infinite values; :func:`smooth` does not: from the first one on, its average is
    infinite (the sum of the infinities so far) or NaN, whatever finite values follow. So is this one.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    x = _as_array(values)
    if beta == 0.0:
        out = x.copy()
    else:
        out = pd.Series(x).ewm(alpha=1.0 - beta, adjust=True).mean().to_numpy(dtype=np.float64, copy=True)
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argmax(bad))
        if beta == 0.0:                          # 0 * inf is NaN
            out[first + 1:] = np.nan
        else:
            with np.errstate(invalid="ignore"):  # inf - inf is NaN, as in smooth
                out[first:] = np.cumsum(np.where(bad[first:], x[first:], 0.0))
    return out


def loss_band(values, beta: float = 0.9, skip: float = 0.5) -> float:
    """Width of the noise band of a loss curve: the std of ``values - smooth(values, beta)``.

    Only the last ``1 - skip`` fraction of the run is measured (the early descent is not noise).
    The width of this band grows with the variance of the mini-batch gradient, about like
    ``1/sqrt(batch_size)`` (seed 003: "if the band is wide, increase the batch size").
    """
    x = _as_array(values)
    start = int(len(x) * skip)
    residual = x[start:] - _trend(x, beta)[start:]
    return float(np.std(residual))



# ------------------------------------------------------------------------------------- histories


def _frames(history) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The step and epoch frames of a History (or of anything with ``to_frame``)."""
    return history.to_frame("step"), history.to_frame("epoch")


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].notna().any()



# ----------------------------------------------------------------------------------------- diagnosis


@dataclass
class Finding:
    """One thing :func:`diagnose` saw: its ``kind``, where it shows (``level`` step/epoch and ``at``),
    the numbers behind it (``details``) and a sentence (``message``)."""

    kind: str
    level: str
    at: int
    message: str
    details: dict = field(default_factory=dict)


@reference("07_training_plots", "diverged_at")
def divergence_step(losses, factor: float = 3.0, steps=None) -> int | None:
    """The first step whose loss is NaN/inf or above ``factor`` times the first loss, else ``None``.

    The seeds' rule (seed 001): a learning rate is too high when "cur cost > 3 * original cost".
    ``steps`` gives each value's step number (default 1, 2, ...).
    """
    x = _as_array(losses)
    steps = np.arange(1, len(x) + 1) if steps is None else _as_array(steps).astype(int)
    if len(x) == 0:
        return None
    bad = ~np.isfinite(x) | (x > factor * x[0])
    return int(steps[np.argmax(bad)]) if bad.any() else None


@reference("07_training_plots", "linearity")
def linearity(losses, beta: float = 0.9) -> tuple[float, float]:
    """``(drop_ratio, relative_drop)`` of a loss curve, smoothed with :func:`smooth`.

    With ``a`` the first value and ``b``, ``c`` the means of the middle and last tenth of the smoothed curve,
    ``drop_ratio = (b - c) / (a - b)`` compares the fall of the second half with that of the first:
    about 1 for a straight line (no curvature, learning rate too low), near 0 for a curve that bends
    and levels off. ``relative_drop = (a - c) / a`` is how far it fell in all.
    """
    x = smooth(losses, beta)
    tenth = max(len(x) // 10, 1)
    mid = len(x) // 2
    a = x[0]
    b = x[max(mid - tenth // 2, 0):max(mid - tenth // 2, 0) + tenth].mean()
    c = x[-tenth:].mean()
    first = a - b
    ratio = (b - c) / first if first > 0 else float("nan")
    return float(ratio), float((a - c) / abs(a)) if a else float("nan")


@reference("07_training_plots", "plateau_start")
def plateau_start(losses, patience: int, rel_tol: float = 0.02, beta: float = 0.9, steps=None) -> int | None:
    """The first step after which the smoothed loss never again improves by ``rel_tol`` on its best.

    With ``s`` the :func:`smooth`-ed curve and ``best_t = min(s_1..s_t)``, a plateau starts at the
    first t with ``min(s_{t+1}..s_end) >= (1 - rel_tol) * best_t`` that leaves at least ``patience``
    steps after it. ``None`` if there is none.
    """
    x = smooth(losses, beta)
    steps = np.arange(1, len(x) + 1) if steps is None else _as_array(steps).astype(int)
    if len(x) <= patience:
        return None
    best = np.minimum.accumulate(x)
    future = np.minimum.accumulate(x[::-1])[::-1]          # future[t] = min(x[t:])
    later = np.append(future[1:], np.inf)                   # min(x[t+1:])
    flat = later >= (1.0 - rel_tol) * best
    flat[len(x) - patience:] = False
    return int(steps[np.argmax(flat)]) if flat.any() else None


@reference("07_training_plots", "overfitting_epoch")
def overfitting_epoch(train_losses, val_losses, rel_tol: float = 0.02, epochs=None) -> tuple[int, float] | None:
    """Where overfitting shows: ``(epoch, gap)`` or ``None``.

    The validation loss has its minimum at epoch ``e*``; if at the last epoch it is more than ``rel_tol``
    (relative) above that minimum while the training loss is below its value at ``e*``, the curves part:
    the finding is the epoch after ``e*`` and the final gap ``val_loss - train_loss`` (seed 003: "the gap
    between the two curves grows: overfitting").
    """
    train, val = _as_array(train_losses), _as_array(val_losses)
    epochs = np.arange(1, len(val) + 1) if epochs is None else _as_array(epochs).astype(int)
    if len(val) < 2 or not np.isfinite(val).all():
        return None
    best = int(np.argmin(val))
    if best == len(val) - 1 or val[-1] <= (1 + rel_tol) * val[best] or train[-1] >= train[best]:
        return None
    return int(epochs[best + 1]), float(val[-1] - train[-1])


@reference("07_training_plots", "diverged_at", "linearity", "plateau_start", "overfitting_epoch")
def diagnose(history, *, factor: float = 3.0, patience: int | None = None, rel_tol: float = 0.02,
             linear_ratio: float = 0.5, min_drop: float = 0.01, beta: float = 0.9) -> list[Finding]:
    """Read a training history with the seeds' rules; returns a list of :class:`Finding` (maybe empty).

    - ``divergence`` (step): :func:`divergence_step` with ``factor`` (3x the first loss, or NaN). A
      diverged run gets no other finding: what follows a blow-up means nothing.
    - ``lr_too_low`` (step = the last one): :func:`linearity` says the smoothed loss fell by at least
      ``min_drop`` (relative) and its second half fell by ``linear_ratio`` or more of the first half's fall.
    - ``plateau`` (step): :func:`plateau_start` with ``patience`` (default a quarter of the run).
    - ``overfitting`` (epoch): :func:`overfitting_epoch` on the epoch train/validation losses.
    """
    steps, epochs = _frames(history)
    findings: list[Finding] = []
    if len(steps):
        loss, step_no = steps["train_loss"].to_numpy(float), steps["step"].to_numpy(int)
        at = divergence_step(loss, factor, step_no)
        if at is not None:
            value = loss[step_no == at][0]
            return [Finding("divergence", "step", at,
                            f"step {at}: loss {value:.3g} is NaN or above {factor:g}x the first loss "
                            f"{loss[0]:.3g}: the learning rate is too high", {"loss": value, "first": loss[0]})]
        ratio, drop = linearity(loss, beta)
        if drop >= min_drop and ratio >= linear_ratio:
            findings.append(Finding("lr_too_low", "step", int(step_no[-1]),
                                    f"up to step {step_no[-1]} the loss is still falling without levelling off "
                                    f"(its second half fell {ratio:.2f}x as much as its first): the learning "
                                    f"rate looks too low",
                                    {"drop_ratio": ratio, "relative_drop": drop}))
        wait = patience if patience is not None else max(len(loss) // 4, 1)
        start = plateau_start(loss, wait, rel_tol, beta, step_no)
        if start is not None and not findings:
            level = float(smooth(loss, beta)[step_no == start][0])
            findings.append(Finding("plateau", "step", start,
                                    f"from step {start} the loss (about {level:.3g}) no longer improves by "
                                    f"{rel_tol:.0%}: a plateau (lower the learning rate, or stop)",
                                    {"loss": level, "patience": wait}))
    if _has(epochs, "val_loss") and _has(epochs, "train_loss"):
        found = overfitting_epoch(epochs["train_loss"], epochs["val_loss"], rel_tol, epochs["epoch"])
        if found is not None:
            at, gap = found
            findings.append(Finding("overfitting", "epoch", at,
                                    f"from epoch {at} the validation loss rises while the training loss falls; "
                                    f"final gap {gap:.3g}", {"gap": gap,
                                                             "best_epoch": at - 1}))
    return findings


# ------------------------------------------------------------------------------------- training speed


@reference("04_training", "steps_to_target")
def steps_to_target(steps, accuracy, target: float) -> int | None:
    """The first evaluation step whose accuracy is ``>= target``, as an ``int``; ``None`` if none is.

    The BN paper measures training speed this way (Ioffe & Szegedy 2015, section 4.2, figures 2 and 3): the
    number of training steps a network needs to reach a given accuracy. ``steps`` (increasing) and
    ``accuracy`` are equal-length sequences (lists, NumPy arrays, tensors, pandas Series); a NaN accuracy
    never reaches the target. Raises ``ValueError`` if their lengths differ or they are empty.
    """
    s, a = _as_array(steps), _as_array(accuracy)
    if len(s) != len(a):
        raise ValueError(f"steps and accuracy must have the same length, got {len(s)} and {len(a)}")
    if len(s) == 0:
        raise ValueError("steps and accuracy are empty")
    hit = np.flatnonzero(a >= float(target))
    return int(s[hit[0]]) if len(hit) else None


def fewer_steps_ratio(steps, acc_plain, acc_bn) -> float | None:
    """How many times fewer steps the BN network needs to reach the plain network's final accuracy.

    The paper's measure (Ioffe & Szegedy 2015, section 4.2, figures 2 and 3: BN-x5 reached Inception's best
    accuracy, 72.2%, in 14 times fewer steps), with the plain network's final accuracy as the target (as
    chapter 04f's experiment does): with ``target = acc_plain[-1]``, the ratio
    ``steps_to_target(steps, acc_plain, target) / max(steps_to_target(steps, acc_bn, target), 1)``, a float;
    the BN step count is clipped below at 1 so that a target reached at step 0 does not divide by zero.
    Both curves are evaluated at the same ``steps``. ``None`` if the BN network never reaches the target
    (a NaN target is never reached). Raises ``ValueError`` as :func:`steps_to_target` does (lengths that
    differ, empty curves).
    """
    plain = _as_array(acc_plain)
    if len(plain) == 0:
        raise ValueError("acc_plain is empty")
    target = float(plain[-1])
    n_plain = steps_to_target(steps, plain, target)
    n_bn = steps_to_target(steps, acc_bn, target)
    if n_bn is None:        # otherwise n_plain is an int too: the plain curve reaches its own last value
        return None
    return n_plain / max(n_bn, 1)
