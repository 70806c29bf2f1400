"""Weight initialization schemes, written out (chapter 03).

Every function fills ``tensor`` in place and returns it, like ``torch.nn.init``, and takes an optional
``torch.Generator``. Fans follow torch's convention for a weight of shape ``(out, in, *kernel)``:
``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.

Sources: the seeds (all four articles, "network initialization"); Glorot & Bengio (2010),
"Understanding the difficulty of training deep feedforward neural networks"; He et al. (2015),
"Delving Deep into Rectifiers".
"""
from __future__ import annotations

import math

import torch

from .release import reference

SCHEMES = ("zeros", "small", "large", "calibrated", "xavier_uniform", "xavier_normal",
           "kaiming_normal", "kaiming_uniform", "truncated_normal")


@reference("03_initialization", "fans")
def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``: ``in·k`` and ``out·k``, ``k = prod(kernel)``."""
    if tensor.dim() < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def gain(nonlinearity: str = "linear", param: float | None = None) -> float:
    """The recommended gain for a nonlinearity: ``sqrt(2)`` for ReLU, ``5/3`` for tanh, 1 for linear.

    This is ``torch.nn.init.calculate_gain``, which we use as is: it is a table, not the lesson.
    """
    return torch.nn.init.calculate_gain(nonlinearity, param)


@torch.no_grad()
def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """All-zero init. Every unit computes the same thing and gets the same gradient: symmetry never breaks."""
    return tensor.zero_()


@torch.no_grad()
def normal_(tensor: torch.Tensor, std: float = 0.01, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Small random init ``w = std · N(0, 1)``, ``std = 0.01`` as in the seeds (1.0 is "too large")."""
    return tensor.normal_(0.0, std, generator=generator)


@reference("03_initialization", "calibrated_normal")
@torch.no_grad()
def calibrated_normal_(tensor: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``w = N(0, 1) / sqrt(fan_in)``: the seeds' "calibrating the variances with 1/sqrt(n)"."""
    fan_in, _ = fans(tensor)
    return tensor.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)


@reference("03_initialization", "xavier_uniform")
def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot & Bengio (2010): ``std = gain · sqrt(2 / (fan_in + fan_out))``."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


@reference("03_initialization", "xavier_uniform")
@torch.no_grad()
def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``U(-a, a)`` with ``a = sqrt(3) · xavier_std``, since ``Var U(-a, a) = a²/3``."""
    bound = math.sqrt(3.0) * xavier_std(*fans(tensor), gain)
    return tensor.uniform_(-bound, bound, generator=generator)


@reference("03_initialization", "xavier_uniform")
@torch.no_grad()
def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(0, xavier_std²)``, ``Var = gain² · 2 / (fan_in + fan_out)``."""
    return tensor.normal_(0.0, xavier_std(*fans(tensor), gain), generator=generator)


@reference("03_initialization", "kaiming_normal")
def kaiming_std(tensor: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> float:
    """He et al. (2015): ``std = gain / sqrt(fan)``; for ReLU ``gain = sqrt(2)``, so ``Var = 2 / n``."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(tensor)
    return gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


@reference("03_initialization", "kaiming_normal")
@torch.no_grad()
def kaiming_normal_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu", *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(0, 2 / fan_in)`` for ReLU: the seeds' ``w = np.random.randn(n) * sqrt(2.0/n)``."""
    return tensor.normal_(0.0, kaiming_std(tensor, mode, nonlinearity, a), generator=generator)


@reference("03_initialization", "kaiming_normal")
@torch.no_grad()
def kaiming_uniform_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu", *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``U(-b, b)`` with ``b = sqrt(3) · gain / sqrt(fan)``, the same variance as :func:`kaiming_normal_`."""
    bound = math.sqrt(3.0) * kaiming_std(tensor, mode, nonlinearity, a)
    return tensor.uniform_(-bound, bound, generator=generator)


@reference("03_initialization", "truncated_normal")
def truncated_std(std: float, k: float = 2.0) -> float:
    """Std of ``N(0, std²)`` truncated to ``[-k·std, k·std]``: ``std·sqrt(1 - 2kφ(k)/(2Φ(k)-1))`` (≈ 0.88·std at k=2)."""
    phi = math.exp(-k * k / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(k / math.sqrt(2))
    return std * math.sqrt(1 - 2 * k * phi / mass)


@reference("03_initialization", "truncated_normal")
@torch.no_grad()
def truncated_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 0.1, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(mean, std²)`` cut at 2 std, as TensorFlow's ``truncated_normal`` in seed 002.

    Inverse-CDF sampling: ``u ~ U(Φ(-2), Φ(2))`` and ``x = mean + std · sqrt(2) · erfinv(2u - 1)``.
    """
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    lo, hi = 0.5 * (1 + math.erf(-2 / math.sqrt(2))), 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    tensor.uniform_(2 * lo - 1, 2 * hi - 1, generator=generator)
    tensor.erfinv_().mul_(std * math.sqrt(2.0)).add_(mean)
    return tensor.clamp_(mean - 2 * std, mean + 2 * std)


def init_weight_(tensor: torch.Tensor, scheme: str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the named scheme (one of :data:`SCHEMES`) to a weight.

    ``small`` is ``0.01 · N(0, 1)`` and ``large`` is ``1.0 · N(0, 1)``; Xavier uses gain 1 as in the paper,
    Kaiming the ReLU gain ``sqrt(2)``, and ``truncated_normal`` std 0.1 as in seed 002.

    It draws with ``torch.nn.init``, so that it works in the students' course_lib too, where the exercises'
    answers above are left out. Its samplers draw the same numbers as the ones above (the same formulas, the
    same calls on the generator), except ``trunc_normal_``, which samples the same distribution by rejection.
    """
    nn_init = torch.nn.init
    schemes = {
        "zeros": lambda t: nn_init.zeros_(t),
        "small": lambda t: nn_init.normal_(t, 0.0, 0.01, generator=generator),
        "large": lambda t: nn_init.normal_(t, 0.0, 1.0, generator=generator),
        "calibrated": lambda t: nn_init.kaiming_normal_(t, nonlinearity="linear", generator=generator),
        "xavier_uniform": lambda t: nn_init.xavier_uniform_(t, generator=generator),
        "xavier_normal": lambda t: nn_init.xavier_normal_(t, generator=generator),
        "kaiming_normal": lambda t: nn_init.kaiming_normal_(t, nonlinearity="relu", generator=generator),
        "kaiming_uniform": lambda t: nn_init.kaiming_uniform_(t, nonlinearity="relu", generator=generator),
        "truncated_normal": lambda t: nn_init.trunc_normal_(t, 0.0, 0.1, -0.2, 0.2, generator=generator),
    }
    if scheme not in schemes:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return schemes[scheme](tensor)


def init_module_(module: torch.nn.Module, scheme: str, *, generator: torch.Generator | None = None) -> torch.nn.Module:
    """Initialize every Linear/Conv weight of ``module`` with ``scheme`` and set their biases to zero (seed 002)."""
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            init_weight_(layer.weight, scheme, generator=generator)
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)
    return module
