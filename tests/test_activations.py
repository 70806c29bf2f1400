"""course_lib.activations against torch.nn.functional / torch.nn: values and gradients; RReLU's
sampling statistically; the hand-written ELU backward with the gradient checker; dead-unit counts."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import activations as A
from course_lib import gradcheck, models

PAIRS = [  # ours, torch's, kwargs
    (A.sigmoid, torch.sigmoid, {}),
    (A.tanh, torch.tanh, {}),
    (A.relu, F.relu, {}),
    (A.leaky_relu, F.leaky_relu, {}),
    (A.leaky_relu, F.leaky_relu, {"negative_slope": 0.2}),
    (A.elu, F.elu, {}),
    (A.elu, F.elu, {"alpha": 0.5}),
]


def _inputs(device, dtype=torch.float32):
    """Random values, extremes that overflow a naive exp, and exact zeros (the kinks)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([4 * torch.randn(200, generator=g), torch.tensor([0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0, 100.0, -100.0])])
    return x.to(device=device, dtype=dtype)


def _value_and_grad(fn, x, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x, **kwargs)
    (g,) = torch.autograd.grad((y * torch.linspace(-1, 2, y.numel(), device=y.device, dtype=y.dtype)).sum(), x)
    return y.detach(), g


@pytest.mark.parametrize("ours,theirs,kwargs", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_functions_match_torch(ours, theirs, kwargs, dtype, device):
    x = _inputs(device, dtype)
    y, g = _value_and_grad(ours, x, **kwargs)
    y_ref, g_ref = _value_and_grad(theirs, x, **kwargs)
    assert y.device.type == device.type and y.dtype == dtype
    torch.testing.assert_close(y, y_ref, rtol=1e-6 if dtype == torch.float64 else 1e-5, atol=1e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-6 if dtype == torch.float64 else 1e-5, atol=1e-7)
    assert torch.isfinite(g).all()


def test_derivative_helper():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(A.derivative(A.sigmoid, x), torch.sigmoid(x) * (1 - torch.sigmoid(x)))
    torch.testing.assert_close(A.derivative(A.leaky_relu, x, negative_slope=0.1),
                               torch.where(x > 0, 1.0, 0.1))


@pytest.mark.parametrize("num_parameters,shape", [(1, (7, 5)), (4, (3, 4)), (4, (2, 4, 5, 5)), (1, (2, 3, 6, 6))])
def test_prelu_matches_torch(num_parameters, shape, device):
    torch.manual_seed(0)
    ours, theirs = A.PReLU(num_parameters).to(device), nn.PReLU(num_parameters).to(device)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(num_parameters))
        theirs.weight.copy_(ours.weight)
    x = torch.randn(shape, device=device)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = torch.randn(shape, device=device)
    (ours(xa) * w).sum().backward()
    (theirs(xb) * w).sum().backward()
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-5)
    assert ours.weight.grad.abs().sum() > 0, "the slope must be learnable (get a gradient)"


def test_rrelu_eval_matches_torch(device):
    x = _inputs(device)
    for lower, upper in [(1 / 8, 1 / 3), (0.1, 0.1), (0.0, 0.5)]:
        ref = nn.RReLU(lower, upper).eval()(x)
        torch.testing.assert_close(A.rrelu(x, lower, upper, training=False), ref)
        torch.testing.assert_close(A.RReLU(lower, upper).eval()(x), ref)
        y, g = _value_and_grad(A.RReLU(lower, upper).eval(), x)
        y_ref, g_ref = _value_and_grad(lambda t: F.rrelu(t, lower, upper, training=False), x)
        torch.testing.assert_close(g, g_ref)


def test_rrelu_training_slopes_are_uniform(device):
    """In training the slope of each negative element is U(lower, upper): check its moments and
    quantiles, against the theory and against torch's own training-mode RReLU."""
    lower, upper, n = 0.1, 0.4, 200_000
    x = -torch.rand(n, device=device) - 0.5  # all negative
    gen = torch.Generator(device=device).manual_seed(0)
    xg = x.clone().requires_grad_(True)
    y = A.RReLU(lower, upper, generator=gen).train()(xg)
    y.sum().backward()
    slopes = (y / x).detach()
    torch.testing.assert_close(xg.grad, slopes, msg="the gradient of a negative input is its slope")
    assert slopes.min() >= lower - 1e-6 and slopes.max() <= upper + 1e-6
    se = (upper - lower) / math.sqrt(12 * n)
    assert abs(float(slopes.mean()) - (lower + upper) / 2) < 5 * se
    assert float(slopes.var()) == pytest.approx((upper - lower) ** 2 / 12, rel=0.02)
    torch.manual_seed(1)
    torch_slopes = F.rrelu(x, lower, upper, training=True) / x
    qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], device=device)
    torch.testing.assert_close(slopes.quantile(qs), torch_slopes.quantile(qs), atol=0.005, rtol=0)
    # Kolmogorov-Smirnov distance to U(lower, upper), sorted sample against the CDF
    sorted_ = slopes.sort().values.double().cpu()
    cdf = (sorted_ - lower) / (upper - lower)
    ks = float((torch.arange(1, n + 1, dtype=torch.float64) / n - cdf).abs().max())
    assert ks < 1.63 / math.sqrt(n), f"KS distance {ks:.4g} rejects U({lower}, {upper}) at 1%"


def test_rrelu_training_keeps_positives_and_uses_the_generator(device):
    x = torch.randn(1000, device=device)
    a = A.rrelu(x, training=True, generator=torch.Generator(device=device).manual_seed(3))
    b = A.rrelu(x, training=True, generator=torch.Generator(device=device).manual_seed(3))
    c = A.rrelu(x, training=True, generator=torch.Generator(device=device).manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    torch.testing.assert_close(a[x >= 0], x[x >= 0])
    assert a.device.type == device.type


def test_rrelu_rejects_bad_bounds():
    with pytest.raises(ValueError):
        A.RReLU(0.5, 0.1)
    with pytest.raises(ValueError):
        A.rrelu(torch.zeros(3), -0.1, 0.2)


def test_maxout_is_the_max_of_linear_maps(device):
    torch.manual_seed(0)
    layer = A.Maxout(6, 4, pieces=3).to(device)
    x = torch.randn(10, 6, device=device)
    w, b = layer.linear.weight, layer.linear.bias
    expected = torch.stack([x @ w[k::3].T + b[k::3] for k in range(3)], dim=-1).amax(-1)
    assert layer(x).shape == (10, 4)
    torch.testing.assert_close(layer(x), expected)
    # one piece is a plain Linear; and 2 pieces (w, 0) make a ReLU: max(w·x, 0)
    one = A.Maxout(6, 4, pieces=1).to(device)
    torch.testing.assert_close(one(x), one.linear(x))
    two = A.Maxout(6, 4, pieces=2).to(device)
    with torch.no_grad():
        two.linear.weight[1::2] = 0
        two.linear.bias[1::2] = 0
    torch.testing.assert_close(two(x), F.relu(F.linear(x, two.linear.weight[0::2], two.linear.bias[0::2])))


def test_maxout_gradients():
    torch.manual_seed(0)
    layer = A.Maxout(5, 3, pieces=2).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
    with pytest.raises(ValueError):
        A.Maxout(3, 2, pieces=0)


def test_hand_written_elu_backward(device):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(40, dtype=torch.float64, generator=g) * 2).to(device)
    w = torch.randn(40, dtype=torch.float64, generator=g).to(device)
    for alpha in (1.0, 0.3, 2.0):
        ok, err = gradcheck.check_gradient(lambda t: (A.elu_manual(t, alpha) * w).sum(), x)
        assert ok, f"relative error {err:.3g}"
        y, g = _value_and_grad(A.elu_manual, x, alpha=alpha)
        y_ref, g_ref = _value_and_grad(F.elu, x, alpha=alpha)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(g, g_ref)


def test_a_wrong_backward_is_caught():
    class Wrong(A.ELUFunction):
        @staticmethod
        def backward(ctx, grad_output):
            x, y = ctx.saved_tensors
            return grad_output * torch.where(x > 0, torch.ones_like(y), y), None  # forgot + alpha
    x = torch.randn(30, dtype=torch.float64)
    ok, err = gradcheck.check_gradient(lambda t: Wrong.apply(t, 1.0).sum(), x)
    assert not ok and err > 1e-3


def test_modules_plug_into_mlp():
    for act in (A.PReLU, A.RReLU(generator=torch.Generator().manual_seed(0))):
        net = models.MLP(12, 3, depth=2, width=8, activation=act)
        assert net(torch.randn(5, 12)).shape == (5, 3)


def test_dead_mask_and_fraction(device):
    h = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]], device=device)
    assert A.dead_mask(h).tolist() == [True, False, True, False]
    torch.manual_seed(0)
    net = models.MLP(6, 2, depth=2, width=10).to(device)
    with torch.no_grad():
        net.hidden_layers[0].bias[:4] = -100.0  # units 0..3 of layer 1 can never fire on inputs in [0, 1]
    x = torch.rand(500, 6, device=device)
    fractions = A.dead_fraction(net, x, batch_size=64)
    assert len(fractions) == 2
    assert fractions[0] >= 0.4 - 1e-6
    acts = torch.relu(net.hidden_layers[0](x))
    assert fractions[0] == pytest.approx(float(A.dead_mask(acts).float().mean()))
    assert net.training, "dead_fraction must restore the training mode"


def test_prelu_module_works_without_the_exercise_answers(monkeypatch):
    # the students' course_lib leaves out every @reference of this module (prelu among them); PReLU still runs
    marked = [name for name, obj in vars(A).items() if getattr(obj, "__course_reference__", None)]
    assert {"leaky_relu", "elu", "prelu", "rrelu", "maxout", "dead_fraction"} <= set(marked)
    assert "PReLU" not in marked

    def left_out(*args, **kwargs):
        raise AssertionError("a left-out reference was called")

    for name in marked:
        if not isinstance(getattr(A, name), type):
            monkeypatch.setattr(A, name, left_out)
    net = models.MLP(12, 3, depth=2, width=8, activation=A.PReLU)
    assert net(torch.randn(5, 12)).shape == (5, 3)
