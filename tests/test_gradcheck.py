import pytest
import torch

from course_lib import gradcheck


def test_rel_error():
    assert gradcheck.rel_error([1.0, 2.0], [1.0, 2.0]) == 0
    assert gradcheck.rel_error([1.0], [3.0]) == pytest.approx(0.5)
    assert gradcheck.rel_error([0.0], [0.0]) == 0


def test_numerical_gradient_matches_autograd_in_float64():
    x = torch.randn(3, 4, dtype=torch.float64)
    f = lambda t: (t.sin() * t).sum()
    x_ = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x_), x_)
    num = gradcheck.numerical_gradient(f, x)
    assert num.dtype == torch.float64 and num.shape == x.shape
    assert gradcheck.rel_error(num, g) < 1e-8


class _WrongSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x  # should be 2x


class _Square(_WrongSquare):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * grad * x


def test_check_gradient_accepts_a_right_backward_and_rejects_a_wrong_one():
    x = torch.randn(5) + 0.5
    ok, err = gradcheck.check_gradient(lambda t: _Square.apply(t).sum(), x)
    assert ok and err < 1e-7
    ok, err = gradcheck.check_gradient(lambda t: _WrongSquare.apply(t).sum(), x)
    assert not ok and err > 0.1


def test_check_gradient_needs_no_reference():
    """check_gradient (used by chapters 04f and 05) takes its central differences from torch, not from
    numerical_gradient, the answer to exercise 04d left out of the student release."""
    from course_lib import grading

    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ok, err = grading.call_without_reference(gradcheck.check_gradient, [gradcheck.numerical_gradient],
                                             lambda t: (t.sin() * t).sum(), x)
    assert ok and err < 1e-8
    ok, err = gradcheck.check_gradient(lambda t: torch.relu(t).sum(), torch.tensor([0.5, 3e-6, 1.3], dtype=torch.float64))
    assert not ok and err == pytest.approx(0.35 / 1.65)   # (1 - 0.65) / (1 + 0.65): the kink within h
    assert gradcheck.numerical_gradient.__course_reference__ == "04_training"
