"""course_lib.hyperopt: log-uniform draws, sampling a space, grid and random search, coarse-to-fine."""
import math

import pytest
import torch

from course_lib import hyperopt

SPACE = {"lr": (1e-5, 1.0, "log"), "momentum": (0.0, 0.99, "linear")}


def test_log_uniform_is_low_times_ratio_to_the_uniform_draw():
    got = hyperopt.log_uniform(1e-4, 1e-1, 1000, torch.Generator().manual_seed(0))
    u = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert got.dtype == torch.float64 and got.shape == (1000,)
    assert torch.allclose(got, torch.exp(math.log(1e-4) + u * (math.log(1e-1) - math.log(1e-4))), rtol=1e-12)
    assert bool(((got >= 1e-4) & (got <= 1e-1)).all())


def test_log_uniform_gives_each_decade_the_same_share():
    x = hyperopt.log_uniform(1e-6, 1e-1, 50000, torch.Generator().manual_seed(1))
    shares = torch.histc(x.log10(), bins=5, min=-6, max=-1) / len(x)
    assert torch.allclose(shares, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)
    # a uniform draw on the same range puts ~90% in the top decade
    u = hyperopt.uniform(1e-6, 1e-1, 50000, torch.Generator().manual_seed(1))
    assert float((u >= 1e-2).double().mean()) == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("args", [(0.0, 1.0, 3), (1.0, 1.0, 3), (2.0, 1.0, 3), (-1.0, 1.0, 3)])
def test_log_uniform_rejects_bad_ranges(args):
    with pytest.raises(ValueError):
        hyperopt.log_uniform(*args)


def test_sample_space_draws_one_column_per_hyper_parameter_in_order():
    trials = hyperopt.sample_space(SPACE, 7, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    lr = hyperopt.log_uniform(1e-5, 1.0, 7, g)
    momentum = hyperopt.uniform(0.0, 0.99, 7, g)
    assert [list(t) for t in trials] == [["lr", "momentum"]] * 7
    assert [t["lr"] for t in trials] == lr.tolist() and [t["momentum"] for t in trials] == momentum.tolist()
    assert all(isinstance(v, float) for t in trials for v in t.values())
    with pytest.raises(ValueError):
        hyperopt.sample_space({"x": (0.0, 1.0, "cubic")}, 3)


def test_grid_points_span_each_range_on_its_scale():
    points = hyperopt.grid_points(SPACE, {"lr": 3, "momentum": 2})
    assert len(points) == 6
    assert sorted({p["lr"] for p in points}) == pytest.approx([1e-5, 10 ** -2.5, 1.0])
    assert sorted({p["momentum"] for p in points}) == pytest.approx([0.0, 0.99])
    assert [p["momentum"] for p in points[:2]] == pytest.approx([0.0, 0.99])  # the last one varies fastest
    assert hyperopt.grid_points({"lr": (1e-4, 1e-2, "log")}, 1)[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        hyperopt.grid_points(SPACE, 0)


def test_random_search_evaluates_every_trial_in_order_and_returns_the_first_best():
    calls = []

    def objective(lr, momentum):
        calls.append((lr, momentum))
        return (math.log10(lr) + 2) ** 2 + (momentum - 0.9) ** 2

    best, trials = hyperopt.random_search(objective, SPACE, 20, torch.Generator().manual_seed(3))
    expected = hyperopt.sample_space(SPACE, 20, torch.Generator().manual_seed(3))
    assert calls == [(p["lr"], p["momentum"]) for p in expected]
    assert [t["value"] for t in trials] == [objective(**p) for p in expected]
    assert best == min(trials, key=lambda t: t["value"])
    best_tie, trials_tie = hyperopt.random_search(lambda **p: 0.0, SPACE, 5, torch.Generator().manual_seed(4))
    assert best_tie is trials_tie[0]
    with pytest.raises(ValueError):
        hyperopt.random_search(objective, SPACE, 0)


def test_random_search_beats_grid_search_when_one_hyper_parameter_matters():
    """Bergstra & Bengio (2012), figure 1: same budget, one important and one unimportant hyper-parameter."""
    g = torch.Generator().manual_seed(5)
    wins = 0
    for _ in range(200):
        best_lr = float(hyperopt.log_uniform(1e-4, 1e-1, 1, g))
        f = lambda lr, momentum: math.log10(lr / best_lr) ** 2 + 1e-3 * momentum  # noqa: E731
        grid_best, grid_trials = hyperopt.grid_search(f, SPACE, 3)
        rand_best, rand_trials = hyperopt.random_search(f, SPACE, 9, g)
        assert len(grid_trials) == len(rand_trials) == 9
        wins += rand_best["value"] < grid_best["value"]
    assert wins > 140


def test_refine_space_is_centred_on_the_best_and_stays_inside():
    best = {"lr": 1e-2, "momentum": 0.5}
    new = hyperopt.refine_space(SPACE, best, shrink=0.2)
    assert list(new) == ["lr", "momentum"] and new["lr"][2] == "log" and new["momentum"][2] == "linear"
    assert math.log10(new["lr"][1]) - math.log10(new["lr"][0]) == pytest.approx(1.0)    # 0.2 of 5 decades
    assert math.sqrt(new["lr"][0] * new["lr"][1]) == pytest.approx(1e-2)               # centred on the log scale
    assert new["momentum"][:2] == pytest.approx((0.5 - 0.099, 0.5 + 0.099))
    edge = hyperopt.refine_space(SPACE, {"lr": 2e-5, "momentum": 0.99}, shrink=0.25)
    assert edge["lr"][:2] == pytest.approx((1e-5, 10 ** -3.75))                         # shifted back inside
    assert edge["momentum"][:2] == pytest.approx((0.99 * 0.75, 0.99))
    whole = hyperopt.refine_space(SPACE, best, shrink=1.0)
    assert all(whole[k][:2] == pytest.approx(SPACE[k][:2]) for k in SPACE)
    with pytest.raises(ValueError):
        hyperopt.refine_space(SPACE, best, shrink=0.0)
