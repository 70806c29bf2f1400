"""Optimizers written from their update rules, laid out like ``torch.optim`` (seeds 000 and 001,
section 7 of seed 001: "Gradient Descent Variants", momentum, NAG, AdaGrad, AdaDelta, RMSprop, Adam).

Each class is a :class:`torch.optim.Optimizer`: it keeps one ``state`` dict per parameter and
updates every parameter of every ``param_group`` in :meth:`step`, in place, on the parameter's own
device. Parameters whose ``.grad`` is ``None`` (they took no part in the loss) are skipped and get
no state, exactly as ``torch.optim`` skips them. With the same hyper-parameters each class follows
the matching ``torch.optim`` optimizer (``SGD``, ``Adagrad``, ``Adadelta``, ``RMSprop``, ``Adam``)
step for step; ``tests/test_optim.py`` checks it.

Notation: ``g`` is the gradient, ``θ`` the parameter, ``η`` the learning rate, ``t`` the step (from 1).
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from .release import reference


def _check_nonneg(name: str, value: float) -> None:
    """``ValueError`` naming ``name`` unless ``value >= 0`` (torch.optim's rule for lr, eps, decay)."""
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"Invalid {name}: {value!r} ({name} must be >= 0)")


def _check_unit(name: str, value: float) -> None:
    """``ValueError`` naming ``name`` unless ``0 <= value < 1`` (betas, rho, alpha, momentum)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {name}: {value!r} ({name} must be in [0, 1))")


def _with_grad(group: dict):
    """The parameters of ``group`` that received a gradient (``p.grad is not None``)."""
    return [p for p in group["params"] if p.grad is not None]


@reference("04_training", "momentum", "nesterov")
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    torch's form (Sutskever et al., 2013, with the learning rate outside the velocity)::

        g ← g + λθ                        (weight_decay λ)
        v ← μ v + g                       (v = g on the first step)
        g ← g + μ v  if nesterov, else g ← v
        θ ← θ − η g

    Seed 001 writes momentum as ``V ← γV + η·dw; w ← w − V``. With a constant ``η`` that is the same
    sequence of parameters: the seed's ``V`` is ``η v``. Seed 001's Nesterov (gradient at the
    look-ahead point ``w − γV``) becomes the form above after the change of variables of Bengio et
    al. (2012), which keeps the gradient at the current parameters.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        _check_nonneg("lr", lr)
        _check_nonneg("momentum", momentum)
        _check_nonneg("weight_decay", weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("Invalid momentum: nesterov=True needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in _with_grad(group):
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                if mu != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()
                    else:
                        state["momentum_buffer"].mul_(mu).add_(g)
                    buf = state["momentum_buffer"]
                    g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return loss


@reference("04_training", "adagrad")
class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer, 2011; seed 001, 7.4.1): a per-parameter rate that only shrinks.

        s ← s + g²
        θ ← θ − η g / (√s + ε)

    The sum ``s`` never decreases, so the effective rate ``η/√s`` decays towards zero: AdaGrad's
    weakness, which AdaDelta, RMSprop and Adam fix with moving averages.
    """

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10):
        _check_nonneg("lr", lr)
        _check_nonneg("eps", eps)
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One AdaGrad update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in _with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = torch.zeros_like(p)
                state["step"] += 1
                state["sum"].addcmul_(p.grad, p.grad)
                p.addcdiv_(p.grad, state["sum"].sqrt().add_(group["eps"]), value=-group["lr"])
        return loss


@reference("04_training", "adagrad_rates")
def adagrad_rates(grads: torch.Tensor, lr: float, eps: float = 1e-10) -> torch.Tensor:
    """AdaGrad's effective learning rate of every coordinate after every step (Duchi, Hazan & Singer, 2011).

    ``grads`` holds the successive gradients, shape ``(T, ...)``; the result has the same shape:

        rate_t = η / (√s_t + ε),   s_t = Σ_{τ ≤ t} g_τ²

    so that :class:`AdaGrad`'s update at step ``t`` is ``θ ← θ − rate_t · g_t``. A coordinate whose
    gradient is often zero (a rare feature of a sparse input) keeps a small ``s`` and a large rate:
    seed 001's "if the input data are sparse, adaptive learning-rate methods give the best results".
    """
    _check_nonneg("lr", lr)
    _check_nonneg("eps", eps)
    grads = torch.as_tensor(grads)
    if grads.dim() < 1 or len(grads) == 0:
        raise ValueError(f"grads must have shape (T, ...) with T >= 1, got {tuple(grads.shape)}")
    return lr / ((grads * grads).cumsum(0).sqrt() + eps)


@reference("04_training", "adadelta")
class AdaDelta(Optimizer):
    """AdaDelta (Zeiler, 2012; seed 001, 7.4.2): the ratio of two running RMS values sets the step.

        E[g²]  ← ρ E[g²] + (1 − ρ) g²
        Δ      ← √(E[Δ²] + ε) / √(E[g²] + ε) · g
        E[Δ²]  ← ρ E[Δ²] + (1 − ρ) Δ²
        θ      ← θ − η Δ

    The units of ``Δ`` are those of ``θ``, and ``η = 1`` (Zeiler's rule, torch's default) needs no tuning.
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6):
        _check_nonneg("lr", lr)
        _check_nonneg("eps", eps)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho: {rho!r} (rho must be in [0, 1])")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One AdaDelta update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rho, eps = group["rho"], group["eps"]
            for p in _with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p)
                    state["acc_delta"] = torch.zeros_like(p)
                state["step"] += 1
                sq, acc = state["square_avg"], state["acc_delta"]
                sq.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                delta = acc.add(eps).sqrt_().div_(sq.add(eps).sqrt_()).mul_(p.grad)
                acc.mul_(rho).addcmul_(delta, delta, value=1 - rho)
                p.add_(delta, alpha=-group["lr"])
        return loss


@reference("04_training", "rmsprop")
class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6e, 2012; seed 001, 7.4.3): AdaGrad with a moving average.

        E[g²] ← α E[g²] + (1 − α) g²
        θ     ← θ − η g / (√E[g²] + ε)
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        _check_nonneg("lr", lr)
        _check_nonneg("eps", eps)
        _check_unit("alpha", alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One RMSprop update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha = group["alpha"]
            for p in _with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p)
                state["step"] += 1
                sq = state["square_avg"].mul_(alpha).addcmul_(p.grad, p.grad, value=1 - alpha)
                p.addcdiv_(p.grad, sq.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss


@reference("04_training", "adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015, Algorithm 1; seed 001, 7.4.4): momentum plus RMSprop, bias-corrected.

        m ← β₁ m + (1 − β₁) g                 v ← β₂ v + (1 − β₂) g²
        m̂ = m / (1 − β₁ᵗ)                     v̂ = v / (1 − β₂ᵗ)
        θ ← θ − η m̂ / (√v̂ + ε)

    Without the corrections the zero-initialised ``m`` and ``v`` are biased towards 0 in the first
    steps (with β₂ = 0.999, ``v`` after one step is 1000 times too small).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        _check_nonneg("lr", lr)
        _check_nonneg("eps", eps)
        _check_unit("betas[0]", betas[0])
        _check_unit("betas[1]", betas[1])
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
            for p in _with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
        return loss


#: Each course optimizer and the ``torch.optim`` class it must agree with.
TORCH_EQUIVALENTS = {SGD: torch.optim.SGD, AdaGrad: torch.optim.Adagrad, AdaDelta: torch.optim.Adadelta,
                     RMSprop: torch.optim.RMSprop, Adam: torch.optim.Adam}


# The grading of an optimizer class (it runs in the test cells) lives with the other grading helpers;
# chapter 04b calls it by these names.
from .grading import optim as _grading  # noqa: E402
from .grading.optim import follow_error  # noqa: E402,F401


def assert_follows(student_cls, reference_cls, kwargs: dict, reference_kwargs: dict | None = None, **options) -> float:
    """:func:`course_lib.grading.optim.assert_follows`, with the reference named by its ``torch.optim`` class
    (``torch.optim.SGD``, ``torch.optim.Adagrad``, ...) or by the course class above: the student's class must
    follow that ``torch.optim`` optimizer step for step, with both implementations disabled while it runs."""
    course_cls = {torch_cls: cls for cls, torch_cls in TORCH_EQUIVALENTS.items()}.get(reference_cls, reference_cls)
    return _grading.assert_follows(student_cls, course_cls, kwargs, reference_kwargs, **options)
