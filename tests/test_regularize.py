"""course_lib.regularize: penalties (weights only) against torch's weight decay and by hand, max-norm
against torch.renorm, dropout exactly against torch.nn.functional.dropout given torch's own mask and
statistically for its sampling, the keep-probability form, and MC dropout."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import models
from course_lib import regularize as R


def _net(device, norm="batch"):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(12, 5), nn.PReLU(5), nn.Linear(5, 2)).to(device)


def test_weight_parameters_are_weights_only(device):
    net = _net(device)
    names = [n for n, p in net.named_parameters() if any(p is q for q in R.weight_parameters(net))]
    assert names == ["0.weight", "4.weight", "6.weight"]


def test_l2_and_l1_by_hand(device):
    net = _net(device)
    ws = [net[0].weight, net[4].weight, net[6].weight]
    l2 = 0.5 * 0.3 * sum((w ** 2).sum() for w in ws)
    l1 = 0.2 * sum(w.abs().sum() for w in ws)
    torch.testing.assert_close(R.l2_penalty(net, 0.3), l2)
    torch.testing.assert_close(R.l1_penalty(net, 0.2), l1)
    torch.testing.assert_close(R.elastic_net_penalty(net, l1=0.2, l2=0.3), l1 + l2)
    assert R.l2_penalty(net, 0.3).device.type == device.type


def test_l2_penalty_is_sgd_weight_decay_on_the_weights(device):
    """One SGD step on loss + l2_penalty(λ) == one SGD step with weight_decay=λ on the weights only."""
    lam, lr = 0.05, 0.1
    x, y = torch.randn(4, 2, 4, 4, device=device), torch.tensor([0, 1, 1, 0], device=device)
    a, b = _net(device), _net(device)
    opt_a = torch.optim.SGD(a.parameters(), lr=lr)
    wd = {id(p) for p in R.weight_parameters(b)}
    opt_b = torch.optim.SGD([{"params": [p for p in b.parameters() if id(p) in wd], "weight_decay": lam},
                             {"params": [p for p in b.parameters() if id(p) not in wd]}], lr=lr)
    (F.cross_entropy(a(x), y) + R.l2_penalty(a, lam)).backward()
    F.cross_entropy(b(x), y).backward()
    opt_a.step()
    opt_b.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, msg=name)


def test_l1_gradient_is_sign():
    net = _net("cpu")
    R.l1_penalty(net, 0.5).backward()
    torch.testing.assert_close(net[4].weight.grad, 0.5 * net[4].weight.sign())
    assert net[4].bias.grad is None and net[1].weight.grad is None


def test_negative_penalty_weight_raises():
    net = _net("cpu")
    for call in (lambda: R.l2_penalty(net, -1e-4), lambda: R.l1_penalty(net, -1.0),
                 lambda: R.elastic_net_penalty(net, l1=0.1, l2=-0.1)):
        with pytest.raises(ValueError):
            call()
    assert float(R.l2_penalty(net, 0.0).detach()) == 0.0


def test_max_norm_matches_torch_renorm(device):
    net = _net(device)
    with torch.no_grad():
        for w in R.weight_parameters(net):
            w.mul_(3)
    expected = [torch.renorm(w.detach(), p=2, dim=0, maxnorm=0.8) for w in R.weight_parameters(net)]
    bias = net[4].bias.detach().clone()
    assert R.max_norm_(net, 0.8) is net
    for w, e in zip(R.weight_parameters(net), expected):
        torch.testing.assert_close(w.detach(), e, rtol=1e-5, atol=1e-6)
        norms = w.detach().reshape(w.shape[0], -1).norm(dim=1)
        assert (norms <= 0.8 + 1e-5).all()
    torch.testing.assert_close(net[4].bias.detach(), bias, msg="biases are not constrained")


def test_max_norm_leaves_small_rows_alone():
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, 0, 0], [3.0, 4, 0], [0, 0, 0], [1, 1, 1]]))
    R.max_norm_(lin, 2.0)
    torch.testing.assert_close(lin.weight.detach(), torch.tensor([[0.1, 0, 0], [1.2, 1.6, 0], [0, 0, 0],
                                                                   [1, 1, 1]]))
    with pytest.raises(ValueError):
        R.max_norm_(lin, 0.0)


def test_weight_sparsity():
    lin = nn.Linear(4, 2, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 1e-4, 0.5, -2e-4], [1.0, -1.0, 0.0, 0.3]]))
        lin.bias.zero_()
    assert R.weight_sparsity(lin, tol=1e-3) == pytest.approx(4 / 8)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_with_mask_equals_torch(p, device):
    """torch draws its own mask; read it off the output and give it to ours: values and gradients agree."""
    x = torch.rand(64, 50, device=device) + 0.5  # nonzero, so the mask is visible in the output
    torch.manual_seed(0)
    xa = x.clone().requires_grad_(True)
    ref = F.dropout(xa, p, training=True)
    mask = ref != 0
    xb = x.clone().requires_grad_(True)
    ours = R.dropout_with_mask(xb, mask, p)
    torch.testing.assert_close(ours, ref)
    w = torch.randn_like(x)
    (ref * w).sum().backward()
    (ours * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad)


def test_dropout_sampling_statistics(device):
    n, p = 400_000, 0.3
    x = torch.ones(n, device=device)
    y = R.dropout(x, p, training=True, generator=torch.Generator(device=device).manual_seed(0))
    assert y.device.type == device.type
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert abs(float(y.mean()) - 1) < 5 * math.sqrt(p / (1 - p) / n), "inverted dropout keeps the mean"
    # neighbouring masks independent: P(both dropped) = p²
    both = float(((y[:-1] == 0) & (y[1:] == 0)).float().mean())
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n)


def test_dropout_eval_module_and_generator(device):
    x = torch.randn(20, 30, device=device)
    assert R.dropout(x, 0.5, training=False) is x
    assert R.dropout(x, 0.0, training=True) is x
    layer = R.Dropout(0.5, generator=torch.Generator(device=device).manual_seed(1))
    a = layer(x)
    layer.generator.manual_seed(1)
    torch.testing.assert_close(layer(x), a)
    layer.eval()
    assert torch.equal(layer(x), x)
    torch.testing.assert_close(R.Dropout(0.5).eval()(x), nn.Dropout(0.5).eval()(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_p_raises(p):
    with pytest.raises(ValueError):
        R.dropout(torch.ones(3), p)
    with pytest.raises(ValueError):
        R.Dropout(p)
    with pytest.raises(ValueError):
        R.dropout_mask((3,), p)


def test_keep_probability_form_equals_inverted_in_expectation():
    """Averaged over many masks, each form's training output equals its own test-time output, and
    the two differ only by the factor keep_prob (absorbed by the next layer's weights)."""
    keep, n = 0.6, 20_000
    x = torch.rand(8) + 0.1
    g = torch.Generator().manual_seed(0)
    masks = R.dropout_mask((n, 8), 1 - keep, generator=g)
    keep_train = R.keep_prob_dropout_train(x, masks).mean(0)
    inverted_train = R.dropout_with_mask(x, masks, 1 - keep).mean(0)
    se = x * math.sqrt(keep * (1 - keep) / n)
    assert ((keep_train - R.keep_prob_dropout_test(x, keep)).abs() < 5 * se).all()
    assert ((inverted_train - x).abs() < 5 * se / keep).all()
    torch.testing.assert_close(R.keep_prob_dropout_train(x, masks[0]) / keep, R.dropout_with_mask(x, masks[0], 1 - keep))
    with pytest.raises(ValueError):
        R.keep_prob_dropout_test(x, 0.0)


def test_mc_dropout_predict(device):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), R.Dropout(0.5), nn.Linear(16, 3)).to(device)
    net.train()
    x = torch.randn(7, 5, device=device)
    probs = R.mc_dropout_predict(net, x, n_samples=50)
    assert probs.shape == (7, 3) and probs.device.type == device.type
    torch.testing.assert_close(probs.sum(1), torch.ones(7, device=device))
    assert net.training and net[3].training, "the model's mode is restored"
    stats = net[1].running_mean.clone()
    R.mc_dropout_predict(net, x, n_samples=5)
    torch.testing.assert_close(net[1].running_mean, stats, msg="batch norm stays in eval mode (no update)")
    # with p -> 0 the MC average is the deterministic prediction
    net[3].p = 0.0
    net.eval()
    torch.testing.assert_close(R.mc_dropout_predict(net, x, 3), F.softmax(net(x), -1))
    with pytest.raises(ValueError):
        R.mc_dropout_predict(net, x, 0)


def test_regularized_mlp_trains_on_cpu():
    """A tiny end-to-end use: penalties and max-norm in a training loop keep the norms bounded."""
    torch.manual_seed(0)
    net = models.MLP(10, 3, depth=2, width=16)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        (F.cross_entropy(net(x), y) + R.elastic_net_penalty(net, l1=1e-4, l2=1e-3)).backward()
        opt.step()
        R.max_norm_(net, 1.0)
    for w in R.weight_parameters(net):
        assert (w.reshape(w.shape[0], -1).norm(dim=1) <= 1.0 + 1e-5).all()
