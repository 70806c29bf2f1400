"""course_lib.init against torch.nn.init: the same fans, and the same distributions within sampling error."""
import math

import pytest
import torch

from course_lib import init

SHAPES = [(300, 500), (64, 32, 3, 3), (16, 8, 5), (128, 3, 7, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init.fans(torch.empty(shape)) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fans(torch.empty(7))


def _big(shape=(400, 600), device="cpu"):
    return torch.empty(shape, device=device)


def _gen(device, seed=0):
    return torch.Generator(device=device).manual_seed(seed)


PAIRS = [  # ours, torch's equivalent, kwargs for both
    (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {}),
    (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 5 / 3}),
    (init.xavier_normal_, torch.nn.init.xavier_normal_, {}),
    (init.kaiming_normal_, torch.nn.init.kaiming_normal_, {}),
    (init.kaiming_normal_, torch.nn.init.kaiming_normal_, {"mode": "fan_out"}),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"nonlinearity": "relu"}),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"a": 0.1, "nonlinearity": "leaky_relu"}),
]


@pytest.mark.parametrize("ours,theirs,kwargs", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("shape", [(400, 600), (128, 64, 3, 3)])
def test_distribution_matches_torch(ours, theirs, kwargs, shape, device):
    a = ours(torch.empty(shape, device=device), generator=_gen(device), **kwargs)
    b = theirs(torch.empty(shape, device=device), generator=_gen(device, 1), **kwargs)
    assert a.device.type == device.type
    assert a.std().item() == pytest.approx(b.std().item(), rel=0.03)
    assert abs(a.mean().item()) < 0.05 * b.std().item()
    qs = torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99], device=device)
    torch.testing.assert_close(a.flatten().quantile(qs), b.flatten().quantile(qs), atol=0.05 * b.std().item(), rtol=0)


def test_default_kaiming_is_fan_in_with_relu_gain():
    w = init.kaiming_normal_(_big(), generator=_gen("cpu"))
    assert w.std().item() == pytest.approx(math.sqrt(2 / 600), rel=0.02)
    with pytest.raises(ValueError, match="fan_in"):
        init.kaiming_normal_(_big(), mode="fan_avg")


def test_small_large_calibrated_and_zeros(device):
    assert init.normal_(_big(device=device)).std().item() == pytest.approx(0.01, rel=0.02)
    assert init.normal_(_big(device=device), 1.0).std().item() == pytest.approx(1.0, rel=0.02)
    assert init.calibrated_normal_(_big(device=device)).std().item() == pytest.approx(1 / math.sqrt(600), rel=0.02)
    assert init.zeros_(torch.ones(3, 3, device=device)).abs().sum().item() == 0


@pytest.mark.parametrize("mean,std", [(0.0, 0.1), (1.0, 0.5), (-2.0, 3.0)])
def test_truncated_normal_matches_torch_cut_at_two_std(mean, std, device):
    ours = init.truncated_normal_(torch.empty(500, 500, device=device), mean, std, generator=_gen(device))
    theirs = torch.nn.init.trunc_normal_(torch.empty(500, 500, device=device), mean, std, a=mean - 2 * std,
                                         b=mean + 2 * std, generator=_gen(device, 1))
    assert ours.min().item() >= mean - 2 * std - 1e-6 and ours.max().item() <= mean + 2 * std + 1e-6
    assert ours.std().item() == pytest.approx(init.truncated_std(std), rel=0.01)
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.02)
    assert ours.mean().item() == pytest.approx(mean, abs=0.01 * std)


def test_truncated_std_formula_against_sampling():
    # the truncated normal's std at 2 sigma is 0.8796 sigma (a textbook value)
    assert init.truncated_std(1.0) == pytest.approx(0.8796, abs=1e-4)


def test_in_place_and_generator_reproducible():
    for fn in (init.xavier_uniform_, init.kaiming_normal_, init.calibrated_normal_, init.truncated_normal_):
        w = torch.empty(20, 30)
        assert fn(w, generator=_gen("cpu", 5)) is w
        assert torch.equal(w, fn(torch.empty(20, 30), generator=_gen("cpu", 5)))


def test_init_module_sets_every_weight_and_zero_biases():
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Conv2d(3, 4, 3))
    init.init_module_(net, "kaiming_normal")
    assert net[0].bias.abs().sum() == 0 and net[2].bias.abs().sum() == 0
    with pytest.raises(ValueError, match="unknown init scheme"):
        init.init_module_(net, "glorot")
    for scheme in init.SCHEMES:
        init.init_module_(net, scheme)


def test_init_weight_draws_what_the_written_out_schemes_draw():
    # torch.nn.init draws the same numbers as this module's samplers (trunc_normal_: the same distribution)
    written_out = {
        "zeros": lambda t, g: init.zeros_(t),
        "small": lambda t, g: init.normal_(t, 0.01, generator=g),
        "large": lambda t, g: init.normal_(t, 1.0, generator=g),
        "calibrated": lambda t, g: init.calibrated_normal_(t, generator=g),
        "xavier_uniform": lambda t, g: init.xavier_uniform_(t, generator=g),
        "xavier_normal": lambda t, g: init.xavier_normal_(t, generator=g),
        "kaiming_normal": lambda t, g: init.kaiming_normal_(t, generator=g),
        "kaiming_uniform": lambda t, g: init.kaiming_uniform_(t, generator=g),
    }
    assert set(written_out) | {"truncated_normal"} == set(init.SCHEMES)
    for shape in [(300, 700), (64, 32, 3, 3)]:
        for scheme, fn in written_out.items():
            expected = fn(torch.empty(shape), _gen("cpu", 3))
            assert torch.equal(init.init_weight_(torch.empty(shape), scheme, generator=_gen("cpu", 3)), expected), scheme
    w = init.init_weight_(torch.empty(500, 500), "truncated_normal", generator=_gen("cpu"))
    assert w.abs().max().item() <= 0.2 + 1e-7
    assert w.std().item() == pytest.approx(init.truncated_std(0.1), rel=0.01)


def test_init_module_works_without_the_exercise_answers(monkeypatch):
    # the students' course_lib leaves out every @reference of this module; models and capstone still init
    from course_lib import models, release

    def left_out(*args, **kwargs):
        raise release.Unreleased("a reference", "03_initialization")

    marked = [name for name, obj in vars(init).items() if getattr(obj, "__course_reference__", None)]
    assert {"fans", "xavier_uniform_", "kaiming_normal_", "truncated_normal_"} <= set(marked)
    for name in marked:
        monkeypatch.setattr(init, name, left_out)
    for scheme in init.SCHEMES:
        models.MLP(20, 3, depth=2, width=8, init=scheme, generator=_gen("cpu"))
        models.SmallCNN(1, 3, widths=(4,), init=scheme, generator=_gen("cpu"))
