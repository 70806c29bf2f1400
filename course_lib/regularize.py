"""Regularization written out (chapter 06): weight penalties, max-norm, dropout, and MC dropout.

- Penalties :func:`l2_penalty`, :func:`l1_penalty`, :func:`elastic_net_penalty` are added to the loss.
  They cover the **weights** only (:func:`weight_parameters`: tensors with 2 or more dimensions).
  Biases and normalization parameters are left out: a bias shifts a unit without making the function
  more wiggly, and batch norm's scale is undone by the next layer's weights, so penalising them
  constrains nothing useful and can hurt (cs231n, "Regularization"; Goodfellow et al., *Deep Learning*, 7.1).
- :func:`max_norm_` projects each unit's incoming weight vector onto the ball ``‖w‖₂ <= c`` after a step.
- :func:`dropout` / :class:`Dropout`: inverted dropout with ``p`` the **drop** probability, as
  ``torch.nn.Dropout``; its core :func:`dropout_with_mask` takes the mask, so it can be compared exactly.
  The seeds' keep-probability form (001: ``p = 0.5  # probability of keeping a unit active``) scales at
  test time instead: :func:`keep_prob_dropout_train` and :func:`keep_prob_dropout_test`.
- :func:`mc_dropout_predict` averages the softmax of many stochastic passes (dropout as an ensemble).

Sources: seeds 001 (sections 7.7.2 and 8), 002 (2.3.2), 003 ("Regularization"); Srivastava et al. (2014),
"Dropout: a simple way to prevent neural networks from overfitting"; Zou & Hastie (2005) for the
elastic net; Gal & Ghahramani (2016) for MC dropout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .release import reference
from .runtime import generator_device

# ----------------------------------------------------------------------------------------- penalties


@reference("06_regularization", "l2_penalty", "l1_elastic", "weight_sparsity")
def weight_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters a weight penalty applies to: those with ``dim() >= 2`` (Linear and conv weights).

    Biases, batch-norm scales and shifts, and PReLU slopes are 1-D and are left out.
    """
    return [p for p in module.parameters() if p.dim() >= 2]


def _check_coefficient(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"the penalty weight {name} must be >= 0, got {value}")


@reference("06_regularization", "l2_penalty", "l1_elastic")
def l2_penalty(module: nn.Module, lam: float = 1.0) -> torch.Tensor:
    """``(λ/2) Σ w²`` over :func:`weight_parameters`.

    With the ``1/2`` its gradient is ``λ w``, exactly what ``torch.optim.SGD(weight_decay=λ)`` adds, so
    SGD on ``loss + l2_penalty(model, λ)`` is weight decay on the weights (seed 003: "a penalty on large weights").
    """
    _check_coefficient("lam", lam)
    params = weight_parameters(module)
    total = sum((p.pow(2).sum() for p in params), torch.zeros((), device=_device(module, params)))
    return 0.5 * lam * total


@reference("06_regularization", "l1_elastic")
def l1_penalty(module: nn.Module, lam: float = 1.0) -> torch.Tensor:
    """``λ Σ |w|`` over :func:`weight_parameters`. Its gradient ``λ sign(w)`` pulls every weight toward 0
    by the same amount, so small weights reach 0 and the solution is sparse (seed 003)."""
    _check_coefficient("lam", lam)
    params = weight_parameters(module)
    return lam * sum((p.abs().sum() for p in params), torch.zeros((), device=_device(module, params)))


@reference("06_regularization", "l1_elastic")
def elastic_net_penalty(module: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """``l1 · Σ|w| + (l2/2) · Σ w²``: L1 and L2 together (Zou & Hastie 2005; seed 003 "L1 with L2")."""
    return l1_penalty(module, l1) + l2_penalty(module, l2)


def _device(module: nn.Module, params) -> torch.device:
    if params:
        return params[0].device
    return next(module.parameters(), torch.empty(0)).device


@reference("06_regularization", "max_norm")
@torch.no_grad()
def max_norm_(module: nn.Module, max_norm: float) -> nn.Module:
    """Max-norm constraint (Srivastava et al. 2014, section 5.1; seed 003): after a step, every unit's
    incoming weight vector ``w_j`` (row ``j`` of a weight, flattened) becomes ``w_j · min(1, c / ‖w_j‖₂)``.

    In place, on every tensor of :func:`weight_parameters`; returns ``module``.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    for w in weight_parameters(module):
        norms = w.reshape(w.shape[0], -1).norm(dim=1)
        scale = (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
        w.mul_(scale.reshape(-1, *([1] * (w.dim() - 1))))
    return module


@reference("06_regularization", "weight_sparsity")
def weight_sparsity(module: nn.Module, tol: float = 1e-3) -> float:
    """The fraction of entries of :func:`weight_parameters` with ``|w| < tol``."""
    params = weight_parameters(module)
    small = sum(int((p.detach().abs() < tol).sum()) for p in params)
    return small / max(1, sum(p.numel() for p in params))


# ------------------------------------------------------------------------------------------- dropout


def _check_p(p: float) -> None:
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")


@reference("06_regularization", "dropout")
def dropout_mask(shape, p: float, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A boolean keep-mask: each entry is True (kept) with probability ``1 - p``, independently.

    Drawn on the generator's device (the CPU without one) and returned on ``device``.
    """
    _check_p(p)
    gen_device = generator_device(generator)
    u = torch.rand(tuple(shape), generator=generator, device=gen_device)
    return (u >= p).to(device if device is not None else gen_device)


@reference("06_regularization", "dropout")
def dropout_with_mask(x: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout's core: ``x · mask / (1 - p)``. Kept units are scaled up by ``1/(1-p)`` so
    that ``E[output] = x``, and nothing is done at test time."""
    _check_p(p)
    return x * mask.to(x.dtype) / (1 - p)


@reference("06_regularization", "dropout")
def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout, ``p`` = drop probability (as ``torch.nn.functional.dropout``); identity when
    not training. ``p = 0.5`` is the seeds' choice for fully connected layers (003)."""
    _check_p(p)
    if not training or p == 0:
        return x
    return dropout_with_mask(x, dropout_mask(x.shape, p, generator=generator, device=x.device), p)


@reference("06_regularization", "dropout")
class Dropout(nn.Module):
    """:func:`dropout` as a module; the mask is drawn from ``generator`` (the global RNG if ``None``)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        _check_p(p)
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@reference("06_regularization", "keep_prob")
def keep_prob_dropout_train(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The seeds' (001, after cs231n) training-time dropout: ``x · mask``, no scaling;
    ``mask`` keeps each unit with probability ``keep_prob``."""
    return x * mask.to(x.dtype)


@reference("06_regularization", "keep_prob")
def keep_prob_dropout_test(x: torch.Tensor, keep_prob: float) -> torch.Tensor:
    """The seeds' test-time scaling: ``x · keep_prob``, the expected training output ``E[x · mask]``.

    Inverted dropout divides by ``keep_prob = 1 - p`` in training instead; the two give the same
    network up to the factor ``keep_prob``, which the next layer's weights absorb.
    """
    if not 0 < keep_prob <= 1:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    return x * keep_prob


DROPOUT_TYPES = (Dropout, nn.Dropout)


@reference("06_regularization", "mc_dropout")
@torch.no_grad()
def mc_dropout_predict(model: nn.Module, x: torch.Tensor, n_samples: int = 20) -> torch.Tensor:
    """Monte Carlo dropout (Gal & Ghahramani 2016): the mean of ``softmax(model(x))`` over ``n_samples``
    passes with dropout active and everything else (batch norm) in eval mode. Each mask is one member
    of the implicit ensemble of thinned networks (Srivastava et al. 2014, section 7.5)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    was_training = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, DROPOUT_TYPES):
            m.train()
    try:
        return sum(F.softmax(model(x), dim=-1) for _ in range(n_samples)) / n_samples
    finally:
        model.train(was_training)
