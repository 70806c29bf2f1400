"""Hyper-parameter search: grid search, random search with log-scaled ranges, and coarse-to-fine
refinement (seed 001, "超级参数优化" / hyper-parameter optimization, in its list of training-dynamics
tricks; Bergstra & Bengio, 2012, "Random search for hyper-parameter optimization", JMLR 13).

A *space* is a dict ``name -> (low, high, scale)`` with ``scale`` ``"log"`` (rates, weight decays: a
value is as likely in [1e-4, 1e-3] as in [1e-2, 1e-1]) or ``"linear"`` (momentum, dropout). Randomness
comes from an explicit ``torch.Generator``, so two implementations given generators with the same seed
draw exactly the same trials:

- :func:`log_uniform`: ``low · (high / low) ** u`` with ``u ~ U[0, 1)``, i.e. ``log x`` uniform;
- :func:`sample_space`: one ``torch.rand(n)`` per hyper-parameter, in the order of the space;
- :func:`random_search` / :func:`grid_search`: evaluate an objective (lower is better) on the trials;
- :func:`refine_space`: the coarse-to-fine step, a narrower range centred on the best trial.

Bergstra & Bengio's point (their figure 1): when only a few hyper-parameters matter, a grid of ``k^d``
points tries only ``k`` distinct values of each one, while ``k^d`` random points try ``k^d`` distinct
values of every one, so random search explores the hyper-parameter that matters far more finely for
the same budget.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import torch

from .release import reference

SCALES = ("log", "linear")


def _check_range(low: float, high: float, scale: str) -> None:
    """``ValueError`` unless ``low < high``, a known ``scale``, and ``low > 0`` on a log scale."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not low < high:
        raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
    if scale == "log" and not low > 0:
        raise ValueError(f"a log-scaled range needs low > 0, got low={low!r}")


@reference("04_training", "log_uniform")
def log_uniform(low: float, high: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` float64 draws whose logarithm is uniform on ``[log low, log high)``:
    ``low · (high / low) ** u`` with ``u = torch.rand(n, generator=generator, dtype=torch.float64)``.

    Each decade of the range gets the same share of the draws (Bergstra & Bengio, 2012, section 2.3;
    cs231n: "search for hyper-parameters on log scale").
    """
    _check_range(low, high, "log")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return low * (high / low) ** u


def uniform(low: float, high: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` float64 draws uniform on ``[low, high)``: ``low + (high − low) · u``, ``u`` as in :func:`log_uniform`."""
    _check_range(low, high, "linear")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return low + (high - low) * u


@reference("04_training", "random_search", "log_uniform")
def sample_space(space: dict, n: int, generator: torch.Generator | None = None) -> list[dict]:
    """``n`` random trials of ``space``: the values of each hyper-parameter are drawn as one tensor of
    ``n`` (:func:`log_uniform` or :func:`uniform`), hyper-parameter after hyper-parameter in the order of
    ``space``; trial ``i`` takes the ``i``-th value of each. Returns a list of ``{name: float}``."""
    columns = {}
    for name, (low, high, scale) in space.items():
        draw = log_uniform if scale == "log" else uniform
        _check_range(low, high, scale)
        columns[name] = draw(low, high, n, generator).tolist()
    return [{name: columns[name][i] for name in space} for i in range(n)]


def grid_points(space: dict, per_dim: int | dict) -> list[dict]:
    """The grid of ``space``: ``per_dim`` points per hyper-parameter (an int, or a dict by name),
    evenly spaced on its scale and including both ends (``torch.logspace`` / ``torch.linspace``), in
    ``itertools.product`` order (the last hyper-parameter varies fastest)."""
    axes = []
    for name, (low, high, scale) in space.items():
        _check_range(low, high, scale)
        k = per_dim[name] if isinstance(per_dim, dict) else per_dim
        if k < 1:
            raise ValueError(f"per_dim must be >= 1, got {k} for {name!r}")
        if k == 1:
            values = [math.sqrt(low * high) if scale == "log" else (low + high) / 2]
        elif scale == "log":
            values = torch.logspace(math.log10(low), math.log10(high), k, dtype=torch.float64).tolist()
        else:
            values = torch.linspace(low, high, k, dtype=torch.float64).tolist()
        axes.append(values)
    return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


def evaluate_trials(objective: Callable[..., float], points: list[dict]) -> tuple[dict, list[dict]]:
    """Call ``objective(**point)`` on every point in order. Returns ``(best, trials)``: ``trials`` are
    the points with their ``"value"`` added, ``best`` the first trial with the lowest value."""
    trials = [{**point, "value": float(objective(**point))} for point in points]
    if not trials:
        raise ValueError("no trials to evaluate")
    best = min(trials, key=lambda t: t["value"])  # min keeps the first of equal values
    return best, trials


@reference("04_training", "random_search")
def random_search(objective: Callable[..., float], space: dict, n_trials: int,
                  generator: torch.Generator | None = None) -> tuple[dict, list[dict]]:
    """Random search: ``n_trials`` points of :func:`sample_space`, each evaluated by ``objective``
    (lower is better). Returns ``(best, trials)`` as :func:`evaluate_trials` does."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    return evaluate_trials(objective, sample_space(space, n_trials, generator))


def grid_search(objective: Callable[..., float], space: dict, per_dim: int | dict) -> tuple[dict, list[dict]]:
    """Grid search over :func:`grid_points`; returns ``(best, trials)`` as :func:`evaluate_trials` does."""
    return evaluate_trials(objective, grid_points(space, per_dim))


@reference("04_training", "refine_space")
def refine_space(space: dict, best: dict, shrink: float = 0.25) -> dict:
    """Coarse-to-fine: a narrower space centred on the ``best`` trial.

    On each hyper-parameter's own scale (``log10`` of the value for ``"log"``, the value itself for
    ``"linear"``) the new range is ``shrink`` times as wide as the old one and centred on the best
    trial's value; where that would stick out of the old range it is shifted back inside, keeping its
    width. Returns ``{name: (low, high, scale)}`` in the order of ``space``.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    out = {}
    for name, (low, high, scale) in space.items():
        _check_range(low, high, scale)
        to_axis, from_axis = (math.log10, lambda v: 10.0 ** v) if scale == "log" else (float, float)
        lo, hi, centre = to_axis(low), to_axis(high), to_axis(best[name])
        width = (hi - lo) * shrink
        new_lo = min(max(centre - width / 2, lo), hi - width)
        out[name] = (from_axis(new_lo), from_axis(new_lo + width), scale)
    return out
