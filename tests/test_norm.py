"""course_lib.norm against torch.nn.BatchNorm1d/2d: outputs, running statistics, eval mode, backward."""
import pytest
import torch
from torch import nn

from course_lib import gradcheck, norm


def _pair(shape, device, momentum=0.1, affine=True):
    torch.manual_seed(0)
    c = shape[1]
    ref = (nn.BatchNorm1d if len(shape) in (2, 3) else nn.BatchNorm2d)(c, momentum=momentum, affine=affine).to(device)
    ours = norm.BatchNorm(c, momentum=momentum, affine=affine).to(device)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-0.5, 0.5)
            ours.weight.copy_(ref.weight), ours.bias.copy_(ref.bias)
    return ours, ref


@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 6, 6), (4, 7, 10)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_matches_torch_train_then_eval(device, shape, momentum):
    ours, ref = _pair(shape, device, momentum)
    for step in range(4):
        x = torch.randn(shape, device=device) * (step + 1) + step
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), atol=1e-5, rtol=1e-5, msg=name)
    ours.eval(), ref.eval()
    x = torch.randn(shape, device=device) * 3 - 1
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    assert ours(x).device == x.device


def test_module_state_dict_loads_into_torch(device):
    ours, ref = _pair((8, 4, 5, 5), device)
    ours(torch.randn(8, 4, 5, 5, device=device))
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(3, 4, 5, 5, device=device)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_without_affine_and_gradients_match(device):
    ours, ref = _pair((12, 6), device, affine=False)
    x = torch.randn(12, 6, device=device, requires_grad=True)
    (g1,) = torch.autograd.grad((ours(x) ** 3).sum(), x)
    (g2,) = torch.autograd.grad((ref(x) ** 3).sum(), x)
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)


def test_functional_uses_per_channel_statistics_for_convs(device):
    x = torch.randn(6, 3, 4, 4, device=device) * torch.tensor([1.0, 5.0, 0.1], device=device).view(1, 3, 1, 1)
    y = norm.batch_norm(x, training=True)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3, device=device), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3, device=device), atol=1e-3, rtol=0)


def test_eval_without_running_stats_uses_the_batch(device):
    x = torch.randn(10, 4, device=device)
    torch.testing.assert_close(norm.batch_norm(x, training=False), norm.batch_norm(x, training=True))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        norm.batch_norm(torch.randn(5))
    with pytest.raises(ValueError):
        norm.BatchNorm(3)(torch.randn(4, 5))
    with pytest.raises(ValueError):
        norm.batch_norm(torch.randn(1, 3), running_mean=torch.zeros(3), running_var=torch.ones(3))


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 3)])
def test_hand_written_backward_passes_gradient_check(shape):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64)
    gamma = torch.rand(shape[1], dtype=torch.float64) + 0.5
    beta = torch.randn(shape[1], dtype=torch.float64)
    w = torch.randn(shape, dtype=torch.float64)
    ok, err = gradcheck.check_gradient(lambda t: (norm.BatchNormFunction.apply(t, gamma, beta) * w).sum(), x)
    assert ok, f"relative error {err:.2e}"
    dy = torch.randn(shape, dtype=torch.float64)
    xs, gs, bs = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    out = nn.functional.batch_norm(xs, None, None, gs, bs, training=True)
    expected = torch.autograd.grad(out, (xs, gs, bs), dy)
    for got, want in zip(norm.batch_norm_backward(dy, x, gamma), expected):
        assert gradcheck.rel_error(got, want) < 1e-8


def test_a_wrong_backward_fails_the_check():
    x = torch.randn(5, 3, dtype=torch.float64)
    gamma, beta = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

    class Wrong(norm.BatchNormFunction):
        @staticmethod
        def backward(ctx, grad_out):  # forgets the terms through the mean and the variance
            x, gamma = ctx.saved_tensors
            return grad_out * gamma / torch.sqrt(x.var(0, unbiased=False) + ctx.eps), None, None, None

    w = torch.randn(5, 3, dtype=torch.float64)
    ok, err = gradcheck.check_gradient(lambda t: (Wrong.apply(t, gamma, beta) * w).sum(), x)
    assert not ok and err > 1e-4
