"""Learning-rate schedules and the learning-rate range test (seeds 000, 002 and 003: "start at 0.1,
divide by 2 or 5 when the validation loss stops improving"; decay during training; warm-up).

Each schedule is a pure *factor* function of the step (or epoch) ``t``, multiplied into the
optimizer's initial rate, and a factory that wraps it in ``torch.optim.lr_scheduler.LambdaLR``.
The factories plug into ``course_lib.train.fit(scheduler=..., scheduler_interval="step"|"epoch")``,
which records the rate of every step and epoch in its history. ``t`` counts calls of
``scheduler.step()``: steps or epochs, as the interval says.

"Divide by k on a plateau" is torch's ``ReduceLROnPlateau(factor=1/k)``; :func:`plateau_lrs`
replays its rule on a list of validation losses. :func:`lr_range_test` is fastai's ``lr_find``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from .release import reference


# ------------------------------------------------------------------------------ factor functions

def step_decay_factor(t: int, step_size: int, gamma: float = 0.1) -> float:
    """``gamma ** floor(t / step_size)``: the rate drops by ``gamma`` every ``step_size`` (torch ``StepLR``)."""
    return gamma ** (t // step_size)


def exponential_factor(t: int, gamma: float) -> float:
    """``gamma ** t``: a constant fraction lost every step (torch ``ExponentialLR``; seed 002's decay)."""
    return gamma ** t


@reference("08_ensembles", "cyclic_cosine_lr")
def cosine_factor(t: int, total: int, min_factor: float = 0.0) -> float:
    """Half a cosine from 1 at ``t = 0`` to ``min_factor`` at ``t = total``, then flat (Loshchilov &
    Hutter, SGDR, 2017; torch ``CosineAnnealingLR`` with ``eta_min = min_factor · lr``):
    ``min_factor + (1 − min_factor) · (1 + cos(π · min(t, total) / total)) / 2``."""
    progress = min(t, total) / total
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_factor(t: int, warmup: int, start_factor: float = 0.01) -> float:
    """Linear warm-up from ``start_factor`` at ``t = 0`` to 1 at ``t = warmup``, then 1 (Goyal et al.,
    2017, "gradual warmup"; torch ``LinearLR(start_factor, 1.0, total_iters=warmup)``)."""
    if warmup <= 0:
        return 1.0
    return start_factor + (1 - start_factor) * min(t, warmup) / warmup


@reference("04_training", "warmup_cosine")
def warmup_cosine_factor(t: int, warmup: int, total: int, start_factor: float = 0.01,
                         min_factor: float = 0.0) -> float:
    """Linear warm-up for ``warmup`` steps, then a cosine decay to ``min_factor`` at ``t = total``:
    ``warmup_factor(t)`` for ``t < warmup``, else ``cosine_factor(t − warmup, total − warmup)``
    (written out here, so that it calls no other chapter's reference)."""
    if t < warmup:
        return start_factor + (1 - start_factor) * t / warmup
    span = max(total - warmup, 1)
    progress = min(t - warmup, span) / span
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------ schedulers

def step_decay(optimizer, step_size: int, gamma: float = 0.1) -> LambdaLR:
    """Scheduler: multiply the rate by ``gamma`` every ``step_size`` steps (:func:`step_decay_factor`)."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    return LambdaLR(optimizer, partial(step_decay_factor, step_size=step_size, gamma=gamma))


def exponential(optimizer, gamma: float) -> LambdaLR:
    """Scheduler: multiply the rate by ``gamma`` every step (:func:`exponential_factor`)."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    return LambdaLR(optimizer, partial(exponential_factor, gamma=gamma))


@reference("08_ensembles", "cyclic_cosine_lr")
def cosine(optimizer, total: int, min_factor: float = 0.0) -> LambdaLR:
    """Scheduler: cosine decay over ``total`` steps (:func:`cosine_factor`)."""
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    return LambdaLR(optimizer, partial(cosine_factor, total=total, min_factor=min_factor))


def linear_warmup(optimizer, warmup: int, start_factor: float = 0.01) -> LambdaLR:
    """Scheduler: linear warm-up over ``warmup`` steps, then constant (:func:`warmup_factor`)."""
    return LambdaLR(optimizer, partial(warmup_factor, warmup=warmup, start_factor=start_factor))


@reference("04_training", "warmup_cosine")
def warmup_cosine(optimizer, warmup: int, total: int, start_factor: float = 0.01,
                  min_factor: float = 0.0) -> LambdaLR:
    """Scheduler: warm-up then cosine decay (:func:`warmup_cosine_factor`)."""
    if not 0 <= warmup < total:
        raise ValueError(f"need 0 <= warmup < total, got warmup={warmup}, total={total}")
    return LambdaLR(optimizer, partial(warmup_cosine_factor, warmup=warmup, total=total,
                                       start_factor=start_factor, min_factor=min_factor))


def divide_on_plateau(optimizer, k: float = 2.0, patience: int = 2, threshold: float = 1e-4,
                      min_lr: float = 0.0) -> ReduceLROnPlateau:
    """Scheduler: divide the rate by ``k`` (2 or 5 in the seeds) when the validation loss has not
    improved (by a relative ``threshold``) for more than ``patience`` epochs: torch's
    ``ReduceLROnPlateau(mode="min", factor=1/k)``. ``fit`` passes it the validation loss each epoch."""
    if not k > 1:
        raise ValueError(f"k must be > 1, got {k}")
    return ReduceLROnPlateau(optimizer, mode="min", factor=1.0 / k, patience=patience,
                             threshold=threshold, threshold_mode="rel", min_lr=min_lr)


@reference("04_training", "plateau_lrs")
def plateau_lrs(val_losses: Iterable[float], lr: float, k: float = 2.0, patience: int = 2,
                threshold: float = 1e-4, min_lr: float = 0.0) -> list[float]:
    """The rate after each epoch under :func:`divide_on_plateau`, replayed on a list of losses.

    A loss is an improvement if it is below ``best · (1 − threshold)``; otherwise the count of bad
    epochs grows. When the count exceeds ``patience`` the rate becomes ``max(lr / k, min_lr)`` and the
    count restarts at 0 (torch's rule; a change smaller than 1e-8 is ignored, as torch does).
    """
    best, bad, lrs = math.inf, 0, []
    for loss in val_losses:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            new = max(lr / k, min_lr)
            if lr - new > 1e-8:
                lr = new
            bad = 0
        lrs.append(lr)
    return lrs


# ------------------------------------------------------------------------------ range test

@dataclass
class RangeTest:
    """What :func:`lr_range_test` saw: the rates tried, the raw and smoothed losses, and its picks."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    best_lr: float = math.nan        # rate of the lowest smoothed loss
    suggestion: float = math.nan     # best_lr / 10 (fastai's classic rule)
    steepest_lr: float = math.nan    # rate where the smoothed loss falls fastest against log(lr)
    stopped_early: bool = False      # True if the loss diverged before end_lr


def _suggest(result: RangeTest) -> RangeTest:
    """Fill in ``best_lr``, ``suggestion`` and ``steepest_lr`` from the smoothed curve."""
    s, lrs = result.smoothed, result.lrs
    i = min(range(len(s)), key=s.__getitem__)
    result.best_lr, result.suggestion = lrs[i], lrs[i] / 10
    if i >= 2:
        logs = [math.log(lr) for lr in lrs[:i + 1]]
        slopes = [(s[j + 1] - s[j - 1]) / (logs[j + 1] - logs[j - 1]) for j in range(1, i)]
        result.steepest_lr = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
    else:
        result.steepest_lr = lrs[i]
    return result


def _forever(loader: Iterable):
    """Batches of ``loader``, epoch after epoch (a fresh ``iter()`` each pass, so shuffling goes on)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yielded no batches")


def lr_range_test(model: torch.nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer | None = None, *,
                  loss_fn: Callable = F.cross_entropy, start_lr: float = 1e-7, end_lr: float = 10.0,
                  num_steps: int = 100, beta: float = 0.98, diverge: float = 4.0) -> RangeTest:
    """The learning-rate range test (Smith, 2017, "Cyclical learning rates", section 3.3; fastai's ``lr_find``).

    Train for up to ``num_steps`` mini-batches while the rate grows exponentially,
    ``lr_i = start_lr · (end_lr / start_lr) ** (i / (num_steps − 1))``, and record the loss. The loss is
    smoothed by a bias-corrected moving average, ``a ← β a + (1 − β) loss``, ``smooth = a / (1 − βⁱ⁺¹)``.
    The test stops when the smoothed loss passes ``diverge`` × its best (or turns non-finite).
    Afterwards the model's weights and the optimizer's state are restored to where they started.
    ``optimizer`` defaults to SGD with momentum 0.9; its rate is overwritten at every step.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=start_lr, momentum=0.9)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    model.train()
    result, avg, best = RangeTest(), 0.0, math.inf
    try:
        for i, (xb, yb) in zip(range(num_steps), _forever(loader)):
            lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (i + 1))
            result.lrs.append(lr), result.losses.append(value), result.smoothed.append(smooth)
            best = min(best, smooth)
            if not math.isfinite(smooth) or smooth > diverge * best:
                result.stopped_early = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        model.train(was_training)
    return _suggest(result)
