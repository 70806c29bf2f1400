"""Grading an optimizer written from its update rule: it must follow its ``torch.optim`` twin step by step.

:func:`follow_error` trains two copies of a small probe network with two optimizers on the same batches
and returns the largest relative error between their parameters; :func:`assert_follows` grades a
student's class that way, with the references disabled while it runs. Both run in the test cells of
chapter 04b (``optim.assert_follows`` there is this function).
"""
from __future__ import annotations

import sys

import torch

from . import call_without_reference, report


class _Probe(torch.nn.Module):
    """A small network for comparing optimizers: a trunk, a branch used only on even steps (so its
    ``.grad`` is ``None`` on odd steps) and a parameter that is never used (its ``.grad`` stays ``None``)."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        self.branch = torch.nn.Linear(6, 4)
        self.unused = torch.nn.Parameter(torch.zeros(3))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, x, step: int):
        out = self.trunk(x)
        return out + self.branch(x) if step % 2 == 0 else out


def _trajectory(make_optimizer, steps: int, seed: int, device, dtype, check_state: bool = True) -> list[torch.Tensor]:
    """Train a :class:`_Probe` with ``make_optimizer`` for ``steps`` steps on random batches drawn from
    ``seed``; return the flattened parameters after every step (on the CPU).

    Asserts that the never-used parameter was not changed and, with ``check_state``, got no state
    (torch's ``Adagrad`` creates state for every parameter up front, so references skip that check).
    """
    gen = torch.Generator().manual_seed(seed)
    net = _Probe(torch.Generator().manual_seed(seed)).to(device, dtype)
    start = net.unused.detach().clone()
    opt = make_optimizer(net.parameters())
    path = []
    for step in range(steps):
        x = torch.randn(16, 6, generator=gen, dtype=dtype).to(device)
        y = torch.randint(0, 4, (16,), generator=gen).to(device)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x, step), y).backward()
        opt.step()
        path.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    assert torch.equal(net.unused.detach(), start), \
        "a parameter whose .grad is None was changed: skip parameters without a gradient"
    assert not check_state or len(opt.state.get(net.unused, {})) == 0, \
        "a parameter whose .grad is None got optimizer state: skip parameters without a gradient"
    return [p.cpu() for p in path]


def _path_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest :func:`course_lib.gradcheck.rel_error` between two trajectories, step by step."""
    from ..gradcheck import rel_error

    return rel_error(torch.stack(a), torch.stack(b))


def follow_error(make_optimizer, make_reference, *, steps: int = 200, seed: int = 0, device="cpu",
                 dtype=torch.float64) -> float:
    """Largest relative error (:func:`course_lib.gradcheck.rel_error`) between the parameters of two
    copies of one network, trained for ``steps`` steps with ``make_optimizer(params)`` and
    ``make_reference(params)`` on the same fresh random mini-batches (drawn from ``seed``), over all steps.

    The network has a branch whose gradient is ``None`` on every other step and a parameter that never
    gets a gradient; if the first optimizer touches the latter, or gives it state, an ``AssertionError`` says so.
    """
    return _path_error(_trajectory(make_optimizer, steps, seed, device, dtype),
                       _trajectory(make_reference, steps, seed, device, dtype, check_state=False))


def _torch_functional(torch_cls) -> list:
    """``torch_cls.step`` and the functional update it calls (``torch.optim.adam.adam`` for Adam)."""
    module = sys.modules[torch_cls.__module__]
    functional = getattr(module, module.__name__.rsplit(".", 1)[-1], None)
    return [torch_cls.step] + ([functional] if callable(functional) else [])


def assert_follows(student_cls, reference_cls, kwargs: dict, reference_kwargs: dict | None = None, *,
                   steps: int = 100, seeds=(0,), tol: float = 1e-6, device="cpu") -> float:
    """Grade an optimizer class: run it as :func:`follow_error` does (float64, ``steps`` steps, one run
    per seed in ``seeds``) and require relative error <= ``tol`` against the ``torch.optim`` equivalent of
    ``reference_cls`` (a class of this module) built with ``reference_kwargs`` (default ``kwargs``).

    The student's class may not subclass either implementation, and while it runs both are disabled
    (:func:`course_lib.grading.call_without_reference`), so it must write the update itself.
    Returns the largest error seen.
    """
    from .. import optim

    torch_cls = optim.TORCH_EQUIVALENTS[reference_cls]
    ref_kwargs = kwargs if reference_kwargs is None else reference_kwargs
    name = getattr(student_cls, "__name__", str(student_cls))
    if isinstance(student_cls, type) and issubclass(student_cls, (reference_cls, torch_cls)):
        raise AssertionError(f"{name} subclasses {reference_cls.__name__} or torch.optim.{torch_cls.__name__}: "
                             "write the update rule yourself, from torch.optim.Optimizer")
    worst = 0.0
    for seed in seeds:
        expected = _trajectory(lambda p: torch_cls(p, **ref_kwargs), steps, seed, device, torch.float64,
                               check_state=False)

        def run_student(seed=seed):
            return _trajectory(lambda p: student_cls(p, **kwargs), steps, seed, device, torch.float64)
        run_student.__name__ = name
        got = call_without_reference(run_student, [reference_cls.step] + _torch_functional(torch_cls))
        err = _path_error(got, expected)
        if report.enabled():  # the grader compares the error with 0 (atol = tol) outside the kernel
            report.close(f"{name} against torch.optim.{torch_cls.__name__}, seed {seed}: largest relative error",
                         err, 0.0, rtol=0.0, atol=tol)
        if not err <= tol:
            raise AssertionError(f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) drifts from "
                                 f"torch.optim.{torch_cls.__name__}: largest relative error of a parameter over "
                                 f"{steps} steps (seed {seed}) is {err:.3g}, expected <= {tol:g}")
        worst = max(worst, err)
    return worst
