"""Two-dimensional test functions for watching optimizers move (seed 001, section 7.5: "SGD
optimization on Beale's function", "on Long Valley", "on Saddle Point"; the figures are Alec
Radford's), and a sparse logistic-regression problem for the advice "sparse input: use an adaptive method"
(seed 001, section 7.6).

Every 2-D function takes a tensor ``xy`` of shape ``(..., 2)`` and returns ``f`` of shape ``(...)``, so
the same code evaluates one point (for autograd) or a whole grid (for a contour map), on any device.
:func:`optimize_path` runs any ``torch.optim``-style optimizer from a start point and returns the path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


def beale(xy: torch.Tensor) -> torch.Tensor:
    """Beale's function, minimum 0 at (3, 0.5); flat plateaus and steep walls:
    ``(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``."""
    x, y = xy[..., 0], xy[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana valley ``(a − x)² + b (y − x²)²``, minimum 0 at (a, a²)."""
    x, y = xy[..., 0], xy[..., 1]
    return (a - x) ** 2 + b * (y - x ** 2) ** 2


def narrow_valley(xy: torch.Tensor, condition: float = 50.0) -> torch.Tensor:
    """A long narrow valley: the ill-conditioned quadratic ``(x² + condition · y²) / 2``, minimum 0 at the
    origin. Its Hessian's eigenvalues are 1 and ``condition``: plain gradient descent must take a rate
    below ``2 / condition`` to stay stable across the valley, and then crawls along it."""
    x, y = xy[..., 0], xy[..., 1]
    return 0.5 * (x ** 2 + condition * y ** 2)


def saddle(xy: torch.Tensor) -> torch.Tensor:
    """The saddle ``x² − y²``: a stationary point at the origin, a minimum along x and a maximum along y.
    Gradient descent started on the x axis stays there and converges to the saddle; any offset in y
    grows by a factor ``1 + 2η`` per step, so the speed of escape depends on the optimizer."""
    x, y = xy[..., 0], xy[..., 1]
    return x ** 2 - y ** 2


@dataclass(frozen=True)
class Problem:
    """A test function with a start point, a plotting window and its minimum (``None`` for the saddle)."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: tuple[float, float] | None


PROBLEMS = {
    "beale": Problem("Beale's function", beale, (1.0, 1.4), (-0.5, 4.0), (-1.5, 2.0), (3.0, 0.5)),
    "valley": Problem("long narrow valley", narrow_valley, (-4.0, 0.8), (-5.0, 1.0), (-1.2, 1.2), (0.0, 0.0)),
    "saddle": Problem("saddle point", saddle, (-1.0, 1e-3), (-1.5, 1.5), (-1.5, 1.5), None),
}


def optimize_path(make_optimizer: Callable, fn: Callable[[torch.Tensor], torch.Tensor], start, steps: int,
                  *, device=None, dtype=torch.float64) -> torch.Tensor:
    """Run ``make_optimizer([xy])`` on ``fn`` from ``start`` for ``steps`` steps; return the path,
    shape ``(steps + 1, 2)``, on ``device``. The path stops early (and is padded with its last point)
    if a value turns non-finite, so a diverging optimizer still plots."""
    xy = torch.tensor(start, dtype=dtype, device=device).requires_grad_(True)
    opt = make_optimizer([xy])
    path = [xy.detach().clone()]
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        fn(xy).backward()
        opt.step()
        if not torch.isfinite(xy).all():
            break
        path.append(xy.detach().clone())
    path += [path[-1]] * (steps + 1 - len(path))
    return torch.stack(path)


def grid(fn: Callable[[torch.Tensor], torch.Tensor], xlim, ylim, n: int = 200, device=None):
    """``(X, Y, Z)`` on an ``n × n`` grid for a contour plot (``Z = fn`` at each point)."""
    xs = torch.linspace(*xlim, n, device=device, dtype=torch.float64)
    ys = torch.linspace(*ylim, n, device=device, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    return X, Y, fn(torch.stack([X, Y], dim=-1))


# ------------------------------------------------------------------------------ a sparse problem

@dataclass(frozen=True)
class SparseProblem:
    """Binary features ``x`` (n, d), labels ``y`` (n,) in {0, 1}, the true ``weight`` (d,) and the
    probability ``frequency`` (d,) with which each feature is on."""

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor
    frequency: torch.Tensor

    def bayes_loss(self, index=slice(None)) -> float:
        """Mean logistic loss of the true weights on the examples ``index``: the floor a fit can reach."""
        logits = self.x[index].double() @ self.weight.to(self.x.device)
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, self.y[index].double()))


def sparse_logistic(n: int, *, n_common: int = 20, p_common: float = 0.5, n_rare: int = 500,
                    p_rare: tuple[float, float] = (0.02, 0.002), weight_std: float = 2.0, common_scale: float = 0.1,
                    generator: torch.Generator | None = None, device=None) -> SparseProblem:
    """A logistic-regression problem on sparse binary features, for seed 001's advice (section 7.6): "if
    the input data are sparse, adaptive learning-rate methods give the best results".

    Feature ``j`` is on with probability ``p_j``: ``n_common`` frequent features with ``p_common``, then
    ``n_rare`` rare ones with probabilities log-spaced from ``p_rare[0]`` down to ``p_rare[1]``. The
    true weights are ``N(0, weight_std²)``, those of the frequent features scaled by ``common_scale``
    (they carry little signal), and ``y ~ Bernoulli(sigmoid(x · w))``. A frequent feature gets a
    gradient at almost every step, a rare one only in the few examples where it is on, so one global
    learning rate cannot suit both; AdaGrad's per-parameter rates can (Duchi et al., 2011). With
    ``p_common = p_rare[0] = p_rare[1]`` every feature is equally frequent: the control.
    Drawn in float64 on the CPU from ``generator``; ``x`` and ``y`` are returned as float32 on ``device``.
    """
    lo, hi = p_rare
    if not (0 < hi <= 1 and 0 < lo <= 1 and 0 < p_common <= 1):
        raise ValueError(f"frequencies must be in (0, 1], got p_common={p_common}, p_rare={p_rare}")
    frequency = torch.cat([torch.full((n_common,), p_common, dtype=torch.float64),
                           torch.logspace(math.log10(lo), math.log10(hi), n_rare, dtype=torch.float64)])
    weight = torch.randn(n_common + n_rare, generator=generator, dtype=torch.float64) * weight_std
    weight[:n_common] *= common_scale
    x = (torch.rand(n, n_common + n_rare, generator=generator, dtype=torch.float64) < frequency).double()
    y = (torch.rand(n, generator=generator, dtype=torch.float64) < torch.sigmoid(x @ weight)).double()
    return SparseProblem(x.float().to(device), y.float().to(device), weight, frequency)
