"""course_lib.architecture: output sizes against real layers, parameter counts against formulas, residual nets."""
import pytest
import torch
from torch import nn

from course_lib import architecture as arch


@pytest.mark.parametrize("n,k,s,p,d", [(32, 3, 1, 1, 1), (28, 5, 1, 0, 1), (28, 2, 2, 0, 1), (7, 2, 2, 0, 1),
                                       (31, 3, 2, 1, 1), (20, 3, 1, 2, 2), (9, 9, 1, 0, 1)])
def test_conv_output_size_matches_torch(n, k, s, p, d):
    out = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)(torch.zeros(1, 1, n, n))
    assert arch.conv_output_size(n, k, s, p, d) == out.shape[-1]
    if d == 1 and p <= k // 2:
        assert arch.conv_output_size(n, k, s, p) == nn.MaxPool2d(k, s, p)(torch.zeros(1, 1, n, n)).shape[-1]


def test_3x3_same_padding_keeps_the_size_and_bad_sizes_raise():
    assert arch.conv_output_size(32, 3, 1, 1) == 32  # the seeds' (32 - 3 + 2)/1 + 1
    with pytest.raises(ValueError):
        arch.conv_output_size(2, 5)
    with pytest.raises(ValueError):
        arch.conv_output_size(8, 3, stride=0)


def test_count_params_counts_shared_and_trainable():
    lin = nn.Linear(10, 4)
    net = nn.Sequential(lin, nn.ReLU(), lin, nn.BatchNorm1d(4))
    assert arch.count_params(net) == 44 + 8
    lin.weight.requires_grad_(False)
    assert arch.count_params(net, trainable_only=True) == 4 + 8


@pytest.mark.parametrize("c", [8, 64])
def test_trick_modules_match_their_formulas(c):
    k5 = arch.count_params(arch.single(c, c, 5))
    k33 = arch.count_params(arch.stacked_3x3(c, c, 2))
    assert k5 == arch.conv_params(c, c, 5, bias=False) == 25 * c * c
    assert k33 == 2 * arch.conv_params(c, c, 3, bias=False) and k33 / k5 == pytest.approx(18 / 25)
    assert arch.count_params(arch.factorized(c, c, 7)) == 2 * 7 * c * c
    assert arch.count_params(arch.bottleneck(4 * c, c, 4 * c)) == 4 * c * c + 9 * c * c + 4 * c * c
    sep = arch.count_params(arch.depthwise_separable(c, c, 3))
    assert sep == arch.conv_params(c, c, 3, groups=c, bias=False) + c * c == 9 * c + c * c
    assert sep / (9 * c * c) == pytest.approx(1 / c + 1 / 9)
    assert arch.count_params(arch.gap_head(c, 10)) == 10 * c + 10
    assert arch.count_params(arch.fc_head(c, 7, 7, 10)) == 10 * 49 * c + 10


def test_receptive_field():
    assert arch.receptive_field([3, 3]) == 5
    assert arch.receptive_field([3, 3, 3]) == 7
    assert arch.receptive_field([3, 2, 3], [1, 2, 1]) == 8


@pytest.mark.parametrize("trick", list(arch.TRICKS))
def test_trick_cnns_run_and_keep_the_device(device, trick):
    net = arch.trick_cnn(trick, 1, 10, widths=(4, 8), image_size=28, hidden=16).to(device)
    x = torch.randn(2, 1, 28, 28, device=device)
    out = net(x)
    assert out.shape == (2, 10) and out.device == x.device


def test_trick_cnn_takes_a_block_of_ones_own():
    torch.manual_seed(0)
    ref = arch.trick_cnn("depthwise-sep. 5x5 + FC head", widths=(4, 8), hidden=16)
    torch.manual_seed(0)
    own = arch.trick_cnn("depthwise-sep. 5x5 + FC head", widths=(4, 8), hidden=16,
                         block=lambda ci, co: nn.Sequential(nn.Conv2d(ci, ci, 5, padding=2, groups=ci, bias=False),
                                                            nn.ReLU(), nn.Conv2d(ci, co, 1, bias=False), nn.ReLU()))
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(own(x), ref(x))


def test_residual_is_x_plus_body():
    body = nn.Linear(5, 5)
    x = torch.randn(3, 5)
    torch.testing.assert_close(arch.Residual(body)(x), x + body(x))


def test_unknown_trick_raises():
    with pytest.raises(ValueError):
        arch.trick_cnn("11x11")


@pytest.mark.parametrize("conv", [False, True])
def test_residual_and_plain_nets_differ_only_by_the_shortcut(device, conv):
    torch.manual_seed(0)
    res = arch.DeepNet((1, 8, 8), 10, blocks=4, width=8, residual=True, conv=conv).to(device)
    plain = arch.DeepNet((1, 8, 8), 10, blocks=4, width=8, residual=False, conv=conv).to(device)
    plain.load_state_dict(res.state_dict())
    x = torch.randn(3, 1, 8, 8, device=device)
    h = res.stem(x)
    torch.testing.assert_close(res(x), res.head(_run(res, h, True)))
    torch.testing.assert_close(plain(x), res.head(_run(res, h, False)))


def _run(net, h, residual):
    for block in net.blocks:
        h = h + block(h) if residual else block(h)
    return h


def test_gradients_vanish_in_the_deep_plain_net_and_hold_in_the_residual_one():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    plain = arch.block_gradient_norms(arch.DeepNet((1, 8, 8), 10, blocks=20, width=32, residual=False), x, y)
    res = arch.block_gradient_norms(arch.DeepNet((1, 8, 8), 10, blocks=20, width=32, residual=True), x, y)
    assert len(plain) == len(res) == 20
    assert plain[0] / plain[-1] < 1e-3            # the first block gets almost nothing
    assert 0.1 < res[0] / res[-1] < 10            # same order of magnitude everywhere


def test_halvings_counts_clean_2x2_pools():
    assert [arch.halvings(n) for n in (32, 28, 224, 384, 512, 7)] == [5, 2, 5, 7, 9, 0]
    n = 224
    for _ in range(arch.halvings(224)):  # each halving is what a 2x2 pool with stride 2 returns
        assert arch.conv_output_size(n, 2, 2) * 2 == n
        n //= 2
    with pytest.raises(ValueError):
        arch.halvings(0)


@pytest.mark.parametrize("conv", [False, True])
def test_deep_net_with_batch_norm_and_he_init(device, conv):
    torch.manual_seed(0)
    net = arch.DeepNet((1, 8, 8), 10, blocks=3, width=8, residual=False, conv=conv, norm="batch",
                       init="kaiming_normal").to(device)
    bns = [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(bns) == 2 * 3 + 1  # one before every ReLU: two per block, one in the head
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert all(float(m.bias.detach().abs().max()) == 0 for m in layers)
    fan_in = 8 * (9 if conv else 1)
    assert float(net.blocks[1][2].weight.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.35)
    out = net(torch.randn(4, 1, 8, 8, device=device))
    assert out.shape == (4, 10) and out.device.type == device.type
    with pytest.raises(ValueError):
        arch.DeepNet((1, 8, 8), 10, blocks=1, width=8, norm="layer")


def test_with_he_init_and_batch_norm_the_plain_nets_gradients_do_not_vanish():
    # the confound of the default-init experiment: with an appropriate init (and BN, as in He et al. 2016)
    # the first block of the plain net gets at least as much gradient as the last one
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    plain = arch.block_gradient_norms(arch.DeepNet((1, 8, 8), 10, blocks=20, width=32, residual=False,
                                                   norm="batch", init="kaiming_normal"), x, y)
    assert plain[0] / plain[-1] > 0.1
