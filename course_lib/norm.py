"""Batch normalization written out (chapter 04; seeds 001 and 002; Ioffe & Szegedy 2015).

For a mini-batch, every channel ``c`` is normalized with the batch's own statistics, then scaled and
shifted by learnable ``gamma`` and ``beta``:

    mu_c = mean(x[:, c]),  var_c = mean((x[:, c] - mu_c)^2)            (biased, over N or N·H·W)
    y[:, c] = gamma_c · (x[:, c] - mu_c) / sqrt(var_c + eps) + beta_c

For a convolution a whole feature map is one "neuron" (seed 001, points 8-9): the statistics run over
N·H·W and there is one ``(gamma, beta)`` pair per channel. In training the running estimates move by
``momentum`` (PyTorch's convention, the weight of the *new* value):

    running_mean <- (1 - momentum) · running_mean + momentum · mu
    running_var  <- (1 - momentum) · running_var  + momentum · var · m / (m - 1)   (unbiased, m = N·H·W)

In eval mode the running estimates replace the batch statistics (seed 001, "5.2 BN test").
Everything matches ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (tests/test_norm.py).

Seed 002 says BN normalizes each mini-batch "into [0, 1]"; it does not: the normalized values have mean 0
and variance 1 (about half of them negative, none bounded), and ``gamma``, ``beta`` then scale and shift
them. Seed 002's "1/14 of the iterations" is the BN paper's BN-x5 (BN plus a 5 times larger learning rate,
no dropout, no local response normalization); BN alone needed about half the steps. Notebook 04f measures
the steps to a target accuracy with and without BN.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .release import reference


def _reduce_dims(x: Tensor) -> list[int]:
    """Every dimension but the channel dimension 1: ``[0]`` for ``(N, C)``, ``[0, 2, 3]`` for ``(N, C, H, W)``."""
    if x.dim() < 2:
        raise ValueError(f"batch_norm needs an input of shape (N, C) or (N, C, ...), got shape {tuple(x.shape)}")
    return [0] + list(range(2, x.dim()))


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """A ``(C,)`` tensor shaped to broadcast against ``x``: ``(1, C)`` or ``(1, C, 1, 1)``."""
    return t.reshape(1, -1, *([1] * (x.dim() - 2)))


@reference("04_training")
def batch_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and *biased* variance of ``x`` over every dimension except 1 (N, or N·H·W)."""
    dims = _reduce_dims(x)
    mean = x.mean(dim=dims)
    var = (x - _per_channel(mean, x)).pow(2).mean(dim=dims)
    return mean, var


@reference("04_training", "batch_norm_forward")
def batch_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None,
               running_mean: Tensor | None = None, running_var: Tensor | None = None,
               training: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization of ``x`` (``(N, C)`` or ``(N, C, H, W)``), per channel.

    - ``training=True``: normalize with the batch's mean and biased variance; if running buffers are
      given, update them *in place* (the variance with the unbiased factor ``m / (m - 1)``).
    - ``training=False``: normalize with ``running_mean`` / ``running_var`` (the batch's own statistics
      when none are given, like torch with ``track_running_stats=False``).
    ``gamma`` / ``beta`` of shape ``(C,)`` scale and shift the result (``None``: 1 and 0).
    """
    use_batch = training or running_mean is None or running_var is None
    if use_batch:
        mean, var = batch_stats(x)
        if training and running_mean is not None and running_var is not None:
            m = x.numel() // x.shape[1]
            if m < 2:
                raise ValueError(f"expected more than 1 value per channel when training, got shape {tuple(x.shape)}")
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                running_var.mul_(1 - momentum).add_(momentum * var.detach() * m / (m - 1))
    else:
        mean, var = running_mean, running_var
    y = (x - _per_channel(mean, x)) / torch.sqrt(_per_channel(var, x) + eps)
    if gamma is not None:
        y = y * _per_channel(gamma, x)
    if beta is not None:
        y = y + _per_channel(beta, x)
    return y


@reference("04_training", "batch_norm_backward")
def batch_norm_backward(grad_out: Tensor, x: Tensor, gamma: Tensor | None = None,
                        eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """Hand-written backward pass of training-mode :func:`batch_norm`: ``(dx, dgamma, dbeta)``.

    With ``x_hat = (x - mu) / sqrt(var + eps)`` and ``m`` values per channel (Ioffe & Szegedy 2015, section 3;
    the compact form of cs231n's assignment 2):

        dbeta  = sum(dy),   dgamma = sum(dy · x_hat)
        dx     = gamma / sqrt(var + eps) · (dy - mean(dy) - x_hat · mean(dy · x_hat))
    """
    dims = _reduce_dims(x)
    mean, var = batch_stats(x)
    inv_std = _per_channel(torch.rsqrt(var + eps), x)
    x_hat = (x - _per_channel(mean, x)) * inv_std
    dbeta = grad_out.sum(dim=dims)
    dgamma = (grad_out * x_hat).sum(dim=dims)
    g = _per_channel(gamma, x) if gamma is not None else 1.0
    dx = g * inv_std * (grad_out - _per_channel(grad_out.mean(dim=dims), x)
                        - x_hat * _per_channel((grad_out * x_hat).mean(dim=dims), x))
    return dx, dgamma, dbeta


@reference("04_training", "batch_norm_backward")
class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm whose backward is :func:`batch_norm_backward`, not autograd's.

    ``BatchNormFunction.apply(x, gamma, beta, eps)``; check it with ``course_lib.gradcheck``.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        ctx.save_for_backward(x, gamma)
        ctx.eps = eps
        return batch_norm(x, gamma, beta, training=True, eps=eps)

    @staticmethod
    def backward(ctx, grad_out):
        x, gamma = ctx.saved_tensors
        dx, dgamma, dbeta = batch_norm_backward(grad_out, x, gamma, ctx.eps)
        return dx, dgamma, dbeta, None


@reference("04_training", "batch_norm_forward")
class BatchNorm(nn.Module):
    """A batch-norm layer for ``(N, C)`` and ``(N, C, H, W)`` inputs: ``nn.BatchNorm1d`` and ``2d`` in one.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros); buffers ``running_mean`` (zeros),
    ``running_var`` (ones) and ``num_batches_tracked``, named as torch names them, so state dicts load
    both ways. ``momentum=None`` uses the cumulative average ``1 / num_batches_tracked`` as torch does.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (2, 3, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}) or (N, {self.num_features}, H, W), got {tuple(x.shape)}")
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                          training=self.training, momentum=momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
