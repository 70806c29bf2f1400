"""course_lib.schedules: each schedule matches its torch.optim.lr_scheduler counterpart, works in
course_lib.train.fit, and the range test sweeps, stops, restores and suggests."""
import math

import pytest
import torch
from torch.optim import lr_scheduler as tls

from course_lib import data, schedules, train


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("ours, theirs", [
    (lambda o: schedules.step_decay(o, 7, 0.5), lambda o: tls.StepLR(o, 7, 0.5)),
    (lambda o: schedules.exponential(o, 0.93), lambda o: tls.ExponentialLR(o, 0.93)),
    (lambda o: schedules.cosine(o, 30, 0.1), lambda o: tls.CosineAnnealingLR(o, 30, eta_min=0.1 * 0.1)),
    (lambda o: schedules.cosine(o, 30), lambda o: tls.CosineAnnealingLR(o, 30)),
    (lambda o: schedules.linear_warmup(o, 10, 0.05), lambda o: tls.LinearLR(o, 0.05, 1.0, total_iters=10)),
], ids=["step", "exponential", "cosine-min", "cosine", "warmup"])
def test_schedules_match_torch(ours, theirs):
    n = 31  # CosineAnnealingLR is periodic past T_max (30 or 40 here); ours stays at the minimum
    a, b = _lrs(ours(_opt()), n), _lrs(theirs(_opt()), n)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_warmup_cosine_matches_torch_sequential():
    warmup, total = 5, 30
    ours = _lrs(schedules.warmup_cosine(_opt(), warmup, total, start_factor=0.1, min_factor=0.01), total + 1)
    opt = _opt()
    theirs = _lrs(tls.SequentialLR(opt, [tls.LinearLR(opt, 0.1, 1.0, total_iters=warmup),
                                         tls.CosineAnnealingLR(opt, total - warmup, eta_min=0.001)],
                                   milestones=[warmup]), total + 1)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours[0] == pytest.approx(0.01) and ours[warmup] == pytest.approx(0.1) and ours[total] == pytest.approx(0.001)
    assert max(ours) == pytest.approx(0.1) and all(x >= y for x, y in zip(ours[warmup:], ours[warmup + 1:]))


def test_factor_edge_cases():
    assert schedules.cosine_factor(100, 10) == 0.0 and schedules.cosine_factor(0, 10) == 1.0
    assert schedules.warmup_factor(3, 0) == 1.0
    with pytest.raises(ValueError):
        schedules.warmup_cosine(_opt(), 10, 10)
    with pytest.raises(ValueError):
        schedules.divide_on_plateau(_opt(), k=1)


@pytest.mark.parametrize("k, patience, threshold", [(2, 2, 1e-4), (5, 1, 0.0), (2, 0, 1e-2), (5, 3, 1e-3)])
def test_plateau_lrs_replays_torch_reduce_on_plateau(k, patience, threshold):
    g = torch.Generator().manual_seed(k * 10 + patience)
    for _ in range(20):
        losses = (torch.rand(30, generator=g) + torch.linspace(1.0, 0.2, 30) * (torch.rand(1, generator=g) > 0.5)).tolist()
        sched = schedules.divide_on_plateau(_opt(0.1), k=k, patience=patience, threshold=threshold, min_lr=1e-4)
        expected = []
        for loss in losses:
            sched.step(loss)
            expected.append(sched.optimizer.param_groups[0]["lr"])
        got = schedules.plateau_lrs(losses, 0.1, k=k, patience=patience, threshold=threshold, min_lr=1e-4)
        assert got == pytest.approx(expected, rel=1e-12)
    assert isinstance(schedules.divide_on_plateau(_opt(), k=5), tls.ReduceLROnPlateau)


def _digits(device, n=512):
    ds = data.load_dataset("digits", device=device)
    return ds.x_train[:n].flatten(1), ds.y_train[:n]


def test_schedulers_run_in_fit_and_are_recorded(device):
    x, y = _digits(device)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = data.DeviceLoader(x, y, 64, generator=torch.Generator().manual_seed(0))
    hist = train.fit(model, loader, epochs=3, optimizer=opt, scheduler=schedules.warmup_cosine(opt, 4, 24),
                     scheduler_interval="step", progress=False)
    steps = hist.to_frame("step")
    expected = [0.1 * schedules.warmup_cosine_factor(t, 4, 24) for t in range(len(steps))]
    assert steps["lr"].tolist() == pytest.approx(expected)
    # divide-on-plateau at the epoch level, fed the validation loss by fit; the validation labels are
    # shifted by one so that the validation loss soon stops improving and the rate must be divided
    model = torch.nn.Linear(64, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    hist = train.fit(model, loader, epochs=6, optimizer=opt, val_data=(x, y.roll(1)), progress=False,
                     scheduler=schedules.divide_on_plateau(opt, k=5, patience=0))
    epochs = hist.to_frame()
    expected = [5.0] + schedules.plateau_lrs(epochs["val_loss"].tolist()[:-1], 5.0, k=5, patience=0)
    assert epochs["lr"].tolist() == pytest.approx(expected)
    assert min(expected) < 5.0, "the test should see at least one division"


def test_lr_range_test_sweeps_stops_restores_and_suggests(device):
    x, y = _digits(device)
    x = (x - x.mean()) / x.std()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).to(device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = data.DeviceLoader(x, y, 32, generator=torch.Generator().manual_seed(0))
    res = schedules.lr_range_test(model, loader, opt, start_lr=1e-5, end_lr=100.0, num_steps=200)
    # weights and optimizer are back where they started
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was not restored"
    assert opt.param_groups[0]["lr"] == 0.01 and not opt.state
    # exponential sweep: constant ratio between consecutive rates, starting at start_lr
    ratios = [b / a for a, b in zip(res.lrs, res.lrs[1:])]
    assert res.lrs[0] == pytest.approx(1e-5) and ratios == pytest.approx([(1e7) ** (1 / 199)] * len(ratios))
    # it stopped because the smoothed loss passed 4x its best, and only then
    assert res.stopped_early and len(res.lrs) < 200
    assert res.smoothed[-1] > 4 * min(res.smoothed) or not math.isfinite(res.smoothed[-1])
    assert all(s <= 4 * min(res.smoothed[:i + 1]) for i, s in enumerate(res.smoothed[:-1]))
    # the smoothed loss is the bias-corrected moving average of the raw losses
    avg = 0.0
    for i, loss in enumerate(res.losses):
        avg = 0.98 * avg + 0.02 * loss
        assert res.smoothed[i] == pytest.approx(avg / (1 - 0.98 ** (i + 1)))
    best = min(range(len(res.smoothed)), key=res.smoothed.__getitem__)
    assert res.best_lr == res.lrs[best] and res.suggestion == pytest.approx(res.best_lr / 10)
    assert res.lrs[0] <= res.steepest_lr <= res.best_lr
    # the suggested rate trains: a few epochs at it lower the loss
    loss0 = train.evaluate(model, x, y)[0]
    train.fit(model, loader, epochs=3, optimizer=torch.optim.SGD(model.parameters(), lr=res.suggestion, momentum=0.9),
              progress=False)
    assert train.evaluate(model, x, y)[0] < 0.7 * loss0


def test_lr_range_test_bad_arguments():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError):
        schedules.lr_range_test(model, [], start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="no batches"):
        schedules.lr_range_test(model, [], num_steps=5)


def test_marked_answers_call_no_other_reference():
    """warmup_cosine_factor (04_training) is written out, so that it needs no cosine_factor (08_ensembles'
    cyclic_cosine_lr) when one chapter's answers are released before the other's."""
    import math as _math

    for t, w, total, a, m in [(0, 5, 40, 0.1, 0.05), (3, 5, 40, 0.1, 0.05), (5, 5, 40, 0.1, 0.0), (22, 5, 40, 0.01, 0.1),
                              (40, 5, 40, 0.01, 0.1), (70, 5, 40, 0.01, 0.1), (3, 0, 10, 0.01, 0.0)]:
        composed = schedules.warmup_factor(t, w, a) if t < w else schedules.cosine_factor(t - w, max(total - w, 1), m)
        assert _math.isclose(schedules.warmup_cosine_factor(t, w, total, a, m), composed, rel_tol=1e-12, abs_tol=1e-15)
    assert schedules.warmup_cosine_factor.__course_reference__ == "04_training"
    assert schedules.cosine_factor.__course_reference__ == "08_ensembles"
