"""Gradient checking: compare an analytic gradient (autograd or a hand-written backward) with
central differences in float64 (cs231n, "Gradient checks"; seeds 001 and 003).

Thresholds for the relative error of correct float64 code: below about 1e-7 is right, 1e-7..1e-4
deserves a look (kinks such as ReLU at 0 cause it), above 1e-4 is almost always a bug.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.autograd.gradcheck import _get_numerical_jacobian

from .release import reference


def rel_error(a, b) -> float:
    """``max |a - b| / max(1e-8, |a| + |b|)``, elementwise then the maximum."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-8)).max())


@reference("04_training", "numerical_gradient")
@torch.no_grad()
def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """``∂f/∂x_i ≈ (f(x + h e_i) - f(x - h e_i)) / 2h`` for a scalar function ``f``, in float64.

    ``x`` is not modified; the result has ``x``'s shape and is float64.
    """
    x = x.detach().to(torch.float64).clone()
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        plus = float(f(x))
        flat[i] = old - h
        minus = float(f(x))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def check_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, h: float = 1e-5,
                   threshold: float = 1e-7) -> tuple[bool, float]:
    """Compare autograd's gradient of the scalar ``f`` at ``x`` with central differences of step ``h``
    in float64 (torch's own numerical Jacobian, the one ``torch.autograd.gradcheck`` uses).

    ``f`` may use a custom ``torch.autograd.Function``: its ``backward`` is what gets checked.
    Returns ``(ok, relative error)``, ``ok`` meaning the error is below ``threshold``.
    """
    x64 = x.detach().to(torch.float64).requires_grad_(True)
    (analytic,) = torch.autograd.grad(f(x64), x64)
    point = x64.detach().clone().requires_grad_(True)   # the inputs it differentiates by are those that require grad
    with torch.no_grad():
        ((numeric,),) = _get_numerical_jacobian(lambda t: f(t).reshape(1), (point,), eps=h)
    err = rel_error(analytic, numeric.reshape(x.shape))
    return err < threshold, err
