"""Per-layer statistics of a network: activations on the way forward, gradients on the way back.

These are the measurements behind the initialization, activation and residual-connection chapters:
a healthy deep network keeps the spread of its activations and of its gradients roughly constant
from layer to layer (Glorot & Bengio 2010, figures 3-7; He et al. 2015, section 2.2).
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .models import ACTIVATIONS
from .release import reference

ACTIVATION_TYPES = tuple(t for t in ACTIVATIONS.values() if t is not nn.Identity) + (nn.PReLU, nn.RReLU)
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _modules_of(model: nn.Module, types) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, types)]


@reference("03_initialization", "activation_stds")
@torch.no_grad()
def activations(model: nn.Module, x: torch.Tensor, types=ACTIVATION_TYPES) -> list[torch.Tensor]:
    """The outputs of every module of ``types`` (by default every activation), input side first.

    Uses forward hooks, removed again before returning.
    """
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
               for m in _modules_of(model, types)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy) -> list[float]:
    """``‖∂L/∂W_l‖₂`` for the weight of every Linear/Conv layer ``l``, input side first, for one batch.

    The model's existing ``.grad`` fields are left as they were.
    """
    layers = _modules_of(model, WEIGHT_TYPES)
    grads = torch.autograd.grad(loss_fn(model(x), y), [m.weight for m in layers])
    return [float(g.norm()) for g in grads]


@reference("03_initialization", "activation_stds")
def layer_statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy) -> pd.DataFrame:
    """One row per layer: its activation's mean and std and its weight's gradient norm, input side first."""
    acts = activations(model, x)
    grads = gradient_norms(model, x, y, loss_fn)
    return pd.DataFrame([{"layer": i, "act_mean": float(a.mean()), "act_std": float(a.std()), "grad_norm": g}
                         for i, (a, g) in enumerate(zip(acts, grads), start=1)])


@reference("03_initialization", "count_distinct_units")
def distinct_units(weight: torch.Tensor, tol: float = 1e-6) -> int:
    """How many rows of ``weight`` (one row per unit) differ from every earlier row by more than ``tol``
    (max absolute difference). Symmetric units — the mark of a constant init — count once."""
    w = weight.detach().reshape(weight.shape[0], -1).double()
    far = torch.cdist(w, w, p=float("inf")) > tol
    earlier = torch.ones_like(far).tril(-1)
    return int((far | ~earlier).all(dim=1).sum())
