"""Activation functions written out (chapter 05), each checked against ``torch.nn.functional``.

Functions: :func:`sigmoid`, :func:`tanh`, :func:`relu`, :func:`leaky_relu`, :func:`elu`, :func:`prelu`,
:func:`rrelu` (with its functional core :func:`rrelu_with_slope`) and :func:`maxout`.
Modules: :class:`PReLU`, :class:`RReLU`, :class:`Maxout`.
A hand-written backward: :class:`ELUFunction` (checked with :mod:`course_lib.gradcheck`).
Measurements: :func:`derivative`, :func:`dead_mask`, :func:`dead_fraction`.

Sources: the seeds (000 section 5, 001 section 2, 002 section 2.2, 003 "激活函数"), which follow cs231n;
Krizhevsky et al. (2012) for ReLU's "6x"; Maas et al. (2013) for Leaky ReLU; He et al. (2015) for
PReLU; Xu et al. (2015), "Empirical Evaluation of Rectified Activations", for RReLU; Clevert et al.
(2016) for ELU; Goodfellow et al. (2013) for Maxout.
"""
from __future__ import annotations

import torch
from torch import nn

from . import diagnostics
from .release import reference
from .runtime import generator_device

# ------------------------------------------------------------------------------------------ functions


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``σ(x) = 1 / (1 + e^{-x})``, computed without overflow: ``e^{-|x|}`` is never above 1.

    For ``x >= 0`` it is ``1 / (1 + e^{-x})``, for ``x < 0`` the equal ``e^{x} / (1 + e^{x})``.
    """
    minus_abs = torch.where(x >= 0, -x, x)  # -|x| with slope ±1 everywhere (also at 0)
    e = torch.exp(minus_abs)
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = (e^x - e^{-x}) / (e^x + e^{-x}) = 2σ(2x) - 1``: a zero-centred, rescaled sigmoid."""
    return 2 * sigmoid(2 * x) - 1


def relu(x: torch.Tensor) -> torch.Tensor:
    """``max(0, x)``; its derivative is 1 for ``x > 0`` and 0 otherwise (0 at the kink, as torch)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


@reference("05_activations", "leaky_relu")
def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``x`` for ``x > 0``, ``negative_slope · x`` otherwise (Maas et al. 2013; seed 003's α)."""
    return torch.where(x > 0, x, negative_slope * x)


@reference("05_activations", "elu")
def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``x`` for ``x > 0``, ``α (e^x - 1)`` otherwise (Clevert et al. 2016). Saturates at ``-α``.

    ``expm1`` of ``min(x, 0)``: accurate near 0, and no ``inf`` in the branch that is not taken.
    """
    return torch.where(x > 0, x, alpha * torch.expm1(torch.where(x > 0, torch.zeros_like(x), x)))


@reference("05_activations", "prelu")
def _channel_shape(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight`` (one value, or one per channel of dim 1) shaped to broadcast against ``x``."""
    if weight.numel() == 1 or x.dim() < 2:
        return weight.reshape(-1)[0] if weight.numel() == 1 else weight
    return weight.reshape(1, -1, *([1] * (x.dim() - 2)))


@reference("05_activations", "prelu")
def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Parametric ReLU (He et al. 2015): ``x`` for ``x > 0``, ``a_c · x`` otherwise, ``a`` learned.

    ``weight`` holds one slope, or one per channel (dimension 1 of ``x``), like ``torch.nn.functional.prelu``.
    """
    return torch.where(x > 0, x, _channel_shape(weight, x) * x)


@reference("05_activations", "rrelu")
def rrelu_with_slope(x: torch.Tensor, slope) -> torch.Tensor:
    """The functional core of RReLU: ``x`` for ``x > 0``, ``slope · x`` otherwise.

    ``slope`` is a number or a tensor of ``x``'s shape (one slope per element).
    """
    return torch.where(x > 0, x, slope * x)


@reference("05_activations", "rrelu")
def sample_rrelu_slope(shape, lower: float, upper: float, *, generator: torch.Generator | None = None,
                       device=None, dtype=torch.float32) -> torch.Tensor:
    """One slope per element, ``a ~ U(lower, upper)`` (Xu et al. 2015 draw it per element and per pass).

    Drawn on the generator's device (the CPU without one) and returned on ``device``.
    """
    gen_device = generator_device(generator)
    u = torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return (lower + (upper - lower) * u).to(device if device is not None else gen_device)


def _check_bounds(lower: float, upper: float) -> None:
    if not 0 <= lower <= upper:
        raise ValueError(f"RReLU needs 0 <= lower <= upper, got lower={lower}, upper={upper}")


@reference("05_activations", "rrelu")
def rrelu(x: torch.Tensor, lower: float = 1 / 8, upper: float = 1 / 3, training: bool = False, *,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomized leaky ReLU (Xu et al. 2015; seed 003).

    - training: ``slope · x`` for ``x < 0`` with ``slope ~ U(lower, upper)`` drawn per element from ``generator``;
    - evaluation: the expected slope ``(lower + upper) / 2`` (a leaky ReLU), as ``torch.nn.functional.rrelu``.
    """
    _check_bounds(lower, upper)
    if not training:
        return rrelu_with_slope(x, (lower + upper) / 2)
    slope = sample_rrelu_slope(x.shape, lower, upper, generator=generator, device=x.device, dtype=x.dtype)
    return rrelu_with_slope(x, slope)


@reference("05_activations", "maxout")
def maxout(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pieces: int) -> torch.Tensor:
    """Maxout (Goodfellow et al. 2013): ``h_j = max_k (x · W_{j,k} + b_{j,k})`` over ``pieces`` affine maps.

    ``weight`` is ``(out_features * pieces, in_features)``; row ``j * pieces + k`` is piece ``k`` of unit ``j``.
    ``x`` is ``(..., in_features)``; the result is ``(..., out_features)``.
    """
    z = torch.nn.functional.linear(x, weight, bias)
    return z.unflatten(-1, (-1, pieces)).amax(dim=-1)


def derivative(fn, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """``d fn(x) / dx`` elementwise for an elementwise ``fn``, by autograd (the sum's gradient)."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x, **kwargs).sum(), x)
    return grad


# ------------------------------------------------------------------------- a hand-written backward


@reference("05_activations", "my_elu", "elu")
class ELUFunction(torch.autograd.Function):
    """ELU with its backward written out: ``dy/dx = 1`` for ``x > 0`` and ``α e^x = y + α`` otherwise.

    The backward reuses the output ``y``, so no exponential is recomputed. Call it as
    ``ELUFunction.apply(x, alpha)``; check it with :func:`course_lib.gradcheck.check_gradient`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        y = elu(x, alpha)
        ctx.save_for_backward(x, y)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, y = ctx.saved_tensors
        local = torch.where(x > 0, torch.ones_like(y), y + ctx.alpha)
        return grad_output * local, None


@reference("05_activations", "my_elu", "elu")
def elu_manual(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """:func:`elu` through :class:`ELUFunction`'s hand-written backward."""
    return ELUFunction.apply(x, alpha)


# ------------------------------------------------------------------------------------------- modules


class PReLU(nn.Module):
    """Parametric ReLU with a learnable slope per channel (``num_parameters``), initialised to ``init``.

    The same parameter layout as ``torch.nn.PReLU``, so weights can be copied across.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's prelu, not :func:`prelu` (an exercise's answer, left out of the students' course_lib)
        return torch.nn.functional.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


@reference("05_activations", "rrelu")
class RReLU(nn.Module):
    """Randomized leaky ReLU: random slopes from ``generator`` in training, their mean in eval."""

    def __init__(self, lower: float = 1 / 8, upper: float = 1 / 3, generator: torch.Generator | None = None):
        super().__init__()
        _check_bounds(lower, upper)
        self.lower, self.upper, self.generator = lower, upper, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rrelu(x, self.lower, self.upper, self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"lower={self.lower:.4g}, upper={self.upper:.4g}"


@reference("05_activations", "maxout")
class Maxout(nn.Module):
    """A maxout layer: ``pieces`` linear maps per output unit, and the maximum of them.

    It replaces a ``Linear`` + activation pair: ``in_features -> out_features`` with
    ``pieces`` times the parameters.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maxout(x, self.linear.weight, self.linear.bias, self.pieces)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"


# ------------------------------------------------------------------------------------ measurements


@reference("05_activations", "dead_fraction")
def dead_mask(h: torch.Tensor) -> torch.Tensor:
    """Which units of ``h`` (``(N, ...)``: one row per example) are 0 for every one of the ``N`` inputs.

    A unit is one entry of ``h[i]``. A ReLU unit dead on a whole data set gets no gradient from it
    (seeds 000 and 003: "up to 40%" of a network with too high a learning rate).
    """
    return (h == 0).all(dim=0)


@reference("05_activations", "dead_fraction")
@torch.no_grad()
def dead_fraction(model: nn.Module, x: torch.Tensor, types=(nn.ReLU,), batch_size: int = 2048) -> list[float]:
    """The fraction of dead units (:func:`dead_mask`) of every module of ``types``, input side first,
    over all of ``x`` (a validation set, say), processed in batches, in eval mode."""
    was_training, alive = model.training, None
    model.eval()
    for start in range(0, len(x), batch_size):
        acts = diagnostics.activations(model, x[start:start + batch_size], types=types)
        batch_alive = [~dead_mask(a) for a in acts]
        alive = batch_alive if alive is None else [a | b for a, b in zip(alive, batch_alive)]
    model.train(was_training)
    return [1.0 - float(a.float().mean()) for a in (alive or [])]
