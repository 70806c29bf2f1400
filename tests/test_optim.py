"""course_lib.optim follows torch.optim step for step; course_lib.testfunctions are what they claim."""
import math

import pytest
import torch
from torch.optim import Optimizer

from course_lib import optim, testfunctions

CASES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=1e-2)),
    (optim.AdaGrad, dict(lr=0.1)),
    (optim.AdaGrad, dict(lr=0.05, eps=1e-6)),
    (optim.AdaDelta, dict()),
    (optim.AdaDelta, dict(lr=0.5, rho=0.95, eps=1e-5)),
    (optim.RMSprop, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=3e-3, alpha=0.9, eps=1e-6)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for cls, kw in CASES]


@pytest.mark.parametrize("cls, kwargs", CASES, ids=IDS)
def test_follows_torch_for_200_steps(cls, kwargs, device):
    torch_cls = optim.TORCH_EQUIVALENTS[cls]
    err = optim.follow_error(lambda p: cls(p, **kwargs), lambda p: torch_cls(p, **kwargs), steps=200, device=device)
    assert err < 1e-6, f"{cls.__name__}{kwargs} vs torch.optim.{torch_cls.__name__}: relative error {err:.3g}"


def test_the_comparison_can_fail():
    """Slightly different hyper-parameters must be told apart: the check is not vacuous."""
    err = optim.follow_error(lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2, eps=1e-3), steps=30)
    assert err > 1e-3
    err = optim.follow_error(lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                             lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1), steps=30)
    assert err > 1e-3


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.AdaDelta, optim.RMSprop, optim.Adam])
def test_parameters_without_gradient_are_skipped(cls, device):
    used = torch.nn.Parameter(torch.randn(4, device=device))
    unused = torch.nn.Parameter(torch.randn(4, device=device))
    before = unused.detach().clone()
    opt = cls([used, unused], lr=0.1)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        (used ** 2).sum().backward()
        opt.step()
    assert unused.grad is None and torch.equal(unused.detach(), before)
    assert unused not in opt.state or not opt.state[unused]
    assert used.device == device and all(t.device == device for t in opt.state[used].values()
                                         if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.AdaDelta, optim.RMSprop, optim.Adam])
def test_negative_lr_is_rejected_by_name(cls):
    with pytest.raises(ValueError, match="lr"):
        cls([torch.nn.Parameter(torch.zeros(2))], lr=-1e-3)


@pytest.mark.parametrize("cls", [optim.AdaGrad, optim.AdaDelta, optim.RMSprop, optim.Adam])
def test_negative_eps_is_rejected_by_name(cls):
    with pytest.raises(ValueError, match="eps"):
        cls([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, eps=-1e-8)


@pytest.mark.parametrize("betas, bad", [((1.0, 0.999), "betas\\[0\\]"), ((-0.1, 0.999), "betas\\[0\\]"),
                                        ((0.9, 1.0), "betas\\[1\\]"), ((0.9, 1.5), "betas\\[1\\]")])
def test_betas_outside_unit_interval_are_rejected_by_name(betas, bad):
    with pytest.raises(ValueError, match=bad):
        optim.Adam([torch.nn.Parameter(torch.zeros(2))], betas=betas)
    with pytest.raises(ValueError):  # torch agrees that these are invalid
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], betas=betas)


def test_other_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="alpha"):
        optim.RMSprop(p, alpha=1.5)
    with pytest.raises(ValueError, match="rho"):
        optim.AdaDelta(p, rho=1.5)


def test_seed_momentum_form_is_torch_form_with_lr_folded_in():
    """Seed 001: V = γV + η·dw; w -= V. torch: v = μv + g; w -= η v. Same path for a constant η."""
    torch.manual_seed(0)
    a, q = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.1
    grad = lambda w: q * (w - a)
    w_seed, V = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(50):
        V = 0.9 * V + 0.1 * grad(w_seed)
        w_seed = w_seed - V
        w.grad = grad(w.detach())
        opt.step()
        torch.testing.assert_close(w.detach(), w_seed, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.state[w]["momentum_buffer"] * 0.1, V, rtol=1e-12, atol=1e-12)


class _HandWrittenAdam(Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                s["t"] += 1
                s["m"] = 0.9 * s["m"] + 0.1 * p.grad
                s["v"] = 0.999 * s["v"] + 0.001 * p.grad ** 2
                m_hat, v_hat = s["m"] / (1 - 0.9 ** s["t"]), s["v"] / (1 - 0.999 ** s["t"])
                p -= group["lr"] * m_hat / (v_hat.sqrt() + 1e-8)


class _CallsCourseAdam(_HandWrittenAdam):
    def __init__(self, params, lr=1e-3):
        Optimizer.__init__(self, params, dict(lr=lr, betas=(0.9, 0.999), eps=1e-8))

    def step(self):
        return optim.Adam.step(self)


class _IgnoresNoneGrad(_HandWrittenAdam):
    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        super().step()


def test_assert_follows_grades_optimizer_classes():
    assert optim.assert_follows(_HandWrittenAdam, optim.Adam, dict(lr=1e-2), steps=50) < 1e-6
    with pytest.raises(AssertionError, match="reference"):
        optim.assert_follows(_CallsCourseAdam, optim.Adam, dict(lr=1e-2), steps=5)
    with pytest.raises(AssertionError, match="subclasses"):
        optim.assert_follows(optim.Adam, optim.Adam, dict(lr=1e-2), steps=5)
    with pytest.raises(AssertionError, match="drifts"):
        optim.assert_follows(_HandWrittenAdam, optim.Adam, dict(lr=1e-2), dict(lr=1.1e-2), steps=20)
    with pytest.raises(AssertionError, match="None"):
        optim.assert_follows(_IgnoresNoneGrad, optim.Adam, dict(lr=1e-2), steps=20)


def test_assert_follows_takes_the_torch_class():
    """The notebooks' visible tests name the reference by its torch.optim class (the course's is left out of the
    student release); the torch class maps to the course class, and calling either is caught."""
    assert optim.assert_follows(_HandWrittenAdam, torch.optim.Adam, dict(lr=1e-2), steps=20) < 1e-6
    with pytest.raises(AssertionError, match="reference"):
        optim.assert_follows(_CallsCourseAdam, torch.optim.Adam, dict(lr=1e-2), steps=5)
    with pytest.raises(AssertionError, match="subclasses"):
        optim.assert_follows(torch.optim.Adam, torch.optim.Adam, dict(lr=1e-2), steps=5)


def test_the_answers_are_marked_for_the_release():
    marks = {cls: cls.__course_exercises__ for cls in [optim.SGD, optim.AdaGrad, optim.AdaDelta, optim.RMSprop,
                                                        optim.Adam, optim.adagrad_rates]}
    assert marks[optim.SGD] == ("momentum", "nesterov") and marks[optim.adagrad_rates] == ("adagrad_rates",)
    assert all(cls.__course_reference__ == "04_training" for cls in marks)


# ------------------------------------------------------------------------------ test functions

@pytest.mark.parametrize("name", ["beale", "valley"])
def test_minima_are_minima(name, device):
    problem = testfunctions.PROBLEMS[name]
    xy = torch.tensor(problem.minimum, dtype=torch.float64, device=device, requires_grad=True)
    value = problem.fn(xy)
    (grad,) = torch.autograd.grad(value, xy)
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-12) and float(grad.abs().max()) < 1e-10


def test_rosenbrock_and_saddle():
    xy = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert float(testfunctions.rosenbrock(xy)) == 0.0
    xy = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(testfunctions.saddle(xy), xy)
    assert torch.equal(grad, torch.zeros(2, dtype=torch.float64))
    hessian = torch.autograd.functional.hessian(testfunctions.saddle, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(hessian, torch.diag(torch.tensor([2.0, -2.0], dtype=torch.float64)))


def test_beale_known_value_and_grid(device):
    assert float(testfunctions.beale(torch.tensor([0.0, 0.0]))) == pytest.approx(1.5 ** 2 + 2.25 ** 2 + 2.625 ** 2)
    X, Y, Z = testfunctions.grid(testfunctions.beale, (-1, 4), (-2, 2), n=30, device=device)
    assert Z.shape == (30, 30) and Z.device == X.device == device
    assert float(Z[3, 7]) == pytest.approx(float(testfunctions.beale(torch.stack([X[3, 7], Y[3, 7]]))))


def test_optimize_path(device):
    path = testfunctions.optimize_path(lambda p: optim.SGD(p, lr=0.03), testfunctions.narrow_valley,
                                       (-4.0, 0.8), 300, device=device)
    assert path.shape == (301, 2) and path.device == device
    assert float(testfunctions.narrow_valley(path[-1])) < 1e-3
    # lr above 2/condition diverges across the valley: the path stops at the last finite point
    path = testfunctions.optimize_path(lambda p: optim.SGD(p, lr=0.1), testfunctions.narrow_valley,
                                       (-4.0, 0.8), 2000)
    assert torch.isfinite(path).all() and abs(float(path[-1, 1])) > 1e3
    # started on the x axis, gradient descent walks into the saddle point
    path = testfunctions.optimize_path(lambda p: optim.SGD(p, lr=0.1), testfunctions.saddle, (-1.0, 0.0), 100)
    assert float(path[-1].abs().max()) < 1e-6
    path = testfunctions.optimize_path(lambda p: optim.SGD(p, lr=0.1), testfunctions.saddle, (-1.0, 1e-3), 100)
    assert abs(float(path[-1, 1])) > 1.0


def test_sparse_logistic_frequencies_labels_and_floor(device):
    g = torch.Generator().manual_seed(0)
    p = testfunctions.sparse_logistic(20000, n_common=10, p_common=0.5, n_rare=50, p_rare=(0.05, 0.005),
                                      generator=g, device=device)
    assert p.x.shape == (20000, 60) and p.y.shape == (20000,) and p.x.device == p.y.device == device
    assert p.x.dtype == torch.float32 and set(p.x.unique().tolist()) <= {0.0, 1.0} and set(p.y.unique().tolist()) <= {0.0, 1.0}
    assert p.frequency[:10].tolist() == [0.5] * 10
    assert p.frequency[10].item() == pytest.approx(0.05) and p.frequency[-1].item() == pytest.approx(0.005)
    # each feature is on about as often as its frequency says
    seen = p.x.double().mean(0).cpu()
    assert torch.allclose(seen, p.frequency, atol=4 * (p.frequency * (1 - p.frequency) / 20000).sqrt().max().item())
    # the frequent features carry little weight
    assert p.weight[:10].abs().max() < p.weight[10:].abs().max() / 3
    # the labels follow the true weights: their loss is the floor, and below the loss of a constant guess
    floor = p.bayes_loss()
    base = float(torch.nn.functional.binary_cross_entropy(p.y.double().mean().expand(20000).cpu(), p.y.double().cpu()))
    assert floor < base
    assert p.bayes_loss(slice(0, 100)) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(
        p.x[:100].double().cpu() @ p.weight, p.y[:100].double().cpu())))
    with pytest.raises(ValueError):
        testfunctions.sparse_logistic(10, p_rare=(0.0, 0.1))


def test_adagrad_beats_sgd_on_rare_informative_features():
    """Seed 001 (7.6): with rare features that carry the signal, AdaGrad's per-parameter rates win."""
    p = testfunctions.sparse_logistic(6000, generator=torch.Generator().manual_seed(1))
    test = slice(4000, 6000)

    def excess(make, lr):
        torch.manual_seed(0)
        model = torch.nn.Linear(p.x.shape[1], 1)
        torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
        opt = make(model.parameters(), lr=lr)
        for _ in range(2):
            for start in range(0, 4000, 32):
                xb, yb = p.x[start:start + 32], p.y[start:start + 32]
                opt.zero_grad()
                torch.nn.functional.binary_cross_entropy_with_logits(model(xb).squeeze(1), yb).backward()
                opt.step()
        with torch.no_grad():
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(p.x[test]).squeeze(1), p.y[test])
        return float(loss) - p.bayes_loss(test) if torch.isfinite(loss) else math.inf

    sgd = min(excess(optim.SGD, lr) for lr in [0.1, 0.3, 1.0, 3.0])
    adagrad = min(excess(optim.AdaGrad, lr) for lr in [0.1, 0.3, 1.0, 3.0])
    assert adagrad < 0.6 * sgd, (adagrad, sgd)


def test_adagrad_rates_are_torch_adagrads_steps(device):
    """θ_t − θ_{t−1} = −rate_t · g_t for torch.optim.Adagrad, with sparse gradients (many exact zeros)."""
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(30, 7, generator=g, dtype=torch.float64) * (torch.rand(30, 7, generator=g) < 0.2)
    grads = grads.to(device)
    p = torch.nn.Parameter(torch.zeros(7, dtype=torch.float64, device=device))
    opt = torch.optim.Adagrad([p], lr=0.3, eps=1e-10)
    steps = []
    for grad in grads:
        before = p.detach().clone()
        p.grad = grad.clone()
        opt.step()
        steps.append(p.detach() - before)
    rates = optim.adagrad_rates(grads, lr=0.3)
    torch.testing.assert_close(torch.stack(steps), -rates * grads, rtol=1e-12, atol=1e-14)
    rare, common = rates[-1][grads.ne(0).sum(0).argmin()], rates[-1][grads.ne(0).sum(0).argmax()]
    assert rare > common, "the coordinate updated least often must keep the largest rate"
    with pytest.raises(ValueError, match="grads"):
        optim.adagrad_rates(torch.zeros(0, 3), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.adagrad_rates(grads, lr=-1.0)
