import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import data, ensemble, models, train


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one CPU thread is faster than two fighting over a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits(device, k=5, n=64, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, c, generator=g).to(device)


def test_averaging_rules_accept_a_list_or_a_stacked_tensor(device):
    z = _logits(device)
    expected = sum(F.softmax(z[k], dim=1) for k in range(len(z))) / len(z)
    for form in (z, list(z), tuple(z)):
        torch.testing.assert_close(ensemble.average_probs(form), expected)
        torch.testing.assert_close(ensemble.average_logits(form), z.mean(0))
    assert ensemble.average_probs(z).device.type == device.type
    torch.testing.assert_close(ensemble.average_probs(z).sum(1), torch.ones(z.shape[1], device=device))
    with pytest.raises(ValueError):
        ensemble.average_probs(torch.randn(3, 4))


def test_majority_vote_against_a_per_sample_loop(device):
    z = _logits(device, k=4, n=300, c=3)             # 4 voters, 3 classes: many ties
    got = ensemble.majority_vote(z)
    votes = z.argmax(-1).T.cpu().tolist()             # (N, K)
    probs = z.softmax(-1).sum(0).cpu()
    ties = 0
    for i, v in enumerate(votes):
        counts = [v.count(c) for c in range(3)]
        best = [c for c in range(3) if counts[c] == max(counts)]
        ties += len(best) > 1
        want = max(best, key=lambda c: (probs[i, c].item(), -c))
        assert got[i].item() == want, (i, v, probs[i])
    assert ties > 20, "the test must contain ties"
    assert got.dtype == torch.int64 and got.device.type == device.type


def test_majority_vote_tie_broken_by_summed_probability():
    # member 0 votes class 0 weakly, member 1 votes class 1 strongly: a 1-1 tie, class 1 has more probability
    z = torch.tensor([[[0.1, 0.0, -5.0]], [[0.0, 5.0, -5.0]]])
    assert ensemble.majority_vote(z).tolist() == [1]
    # three members: two vote class 2, one votes class 0 with huge confidence: the vote wins
    z = torch.tensor([[[0.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]], [[50.0, 0.0, 0.0]]])
    assert ensemble.majority_vote(z).tolist() == [2]


def test_pairwise_disagreement(device):
    z = _logits(device, k=3, n=100)
    d = ensemble.pairwise_disagreement(z)
    pred = z.argmax(-1)
    for i, j in itertools.product(range(3), repeat=2):
        assert d[i, j].item() == pytest.approx((pred[i] != pred[j]).float().mean().item())
    assert ensemble.mean_disagreement(z) == pytest.approx(d[~torch.eye(3, dtype=bool, device=device)].mean().item())
    assert ensemble.mean_disagreement(z[:1]) == 0.0


def test_cyclic_cosine_matches_huang_et_al_and_the_scheduler():
    m, lr = 10, 0.2
    assert ensemble.cyclic_cosine_lr(1, m, lr) == pytest.approx(lr)
    assert ensemble.cyclic_cosine_lr(m + 1, m, lr) == pytest.approx(lr), "restart after each cycle"
    assert ensemble.cyclic_cosine_lr(m // 2 + 1, m, lr) == pytest.approx(lr / 2)
    assert ensemble.cyclic_cosine_lr(m, m, lr) == pytest.approx(lr / 2 * (1 + math.cos(math.pi * (m - 1) / m)))
    # the LambdaLR follows the same formula when stepped once per step (as fit does)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = ensemble.snapshot_scheduler(opt, m)
    seen = []
    for _ in range(3 * m):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([ensemble.cyclic_cosine_lr(t, m, lr) for t in range(1, 3 * m + 1)])
    # and matches torch's warm-restart scheduler with T_0 = m (eta_min = 0)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt2, T_0=m)
    torch_lrs = []
    for _ in range(3 * m):
        torch_lrs.append(opt2.param_groups[0]["lr"])
        opt2.step()
        ref.step()
    assert seen == pytest.approx(torch_lrs)


def _digits(device):
    ds = data.load_dataset("digits", device=device, verbose=False)
    return ds


def test_snapshots_and_checkpoints_are_taken_from_one_run(device):
    ds = _digits(device)
    torch.manual_seed(0)
    net = models.MLP(64, 10, depth=1, width=32).to(device)
    loader = data.DeviceLoader(ds.x_train, ds.y_train, 100, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    snaps, ckpts = ensemble.Snapshots(steps_per_cycle=15), ensemble.Checkpoints()
    train.fit(net, loader, epochs=4, optimizer=opt, scheduler=ensemble.snapshot_scheduler(opt, 15),
              scheduler_interval="step", callbacks=[snaps, ckpts], val_data=(ds.x_test, ds.y_test), progress=False)
    assert snaps.steps == [15, 30, 45, 60] and len(ckpts.states) == 4
    torch.testing.assert_close(snaps.states[-1]["3.weight"], net.state_dict()["3.weight"])
    assert not torch.equal(snaps.states[0]["3.weight"], snaps.states[1]["3.weight"]), "copies, not references"
    best = ckpts.best(2)
    losses = [r["val_loss"] for r in ckpts.records]
    chosen = sorted(range(4), key=lambda i: losses[i])[:2]
    for state, i in zip(best, sorted(chosen)):
        torch.testing.assert_close(state["1.weight"], ckpts.states[i]["1.weight"])
    members = ensemble.models_from_states(lambda: models.MLP(64, 10, depth=1, width=32).to(device), snaps.states)
    z = ensemble.predict_logits(members, ds.x_test)
    assert z.shape == (4, len(ds.x_test), 10)
    acc = (ensemble.combine(z, "average_probs") == ds.y_test).float().mean().item()
    assert acc > 0.8


def test_bootstrap_indices_statistics():
    idx = ensemble.bootstrap_indices(10_000, k=20, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (20, 10_000) and idx.min() >= 0 and idx.max() < 10_000
    unique = torch.tensor([len(torch.unique(row)) / 10_000 for row in idx])
    # expected fraction of distinct items: 1 - (1 - 1/n)^n ~ 1 - 1/e; std of one row's fraction ~ 0.0027
    assert abs(unique.mean().item() - (1 - (1 - 1e-4) ** 10_000)) < 0.003
    again = ensemble.bootstrap_indices(10_000, k=20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    counts = torch.bincount(idx.flatten(), minlength=10_000).float()
    assert abs(counts.mean().item() - 20) < 1e-6 and abs(counts.var().item() - 20) < 1.5, "counts ~ Poisson(20)"


def test_penultimate_features_are_the_last_linear_input(device):
    torch.manual_seed(0)
    net = models.MLP(64, 10, depth=2, width=16).to(device)
    x = torch.randn(7, 1, 8, 8, device=device)
    torch.testing.assert_close(ensemble.penultimate_features(net, x), torch.nn.Sequential(*list(net)[:-1])(x))
    cnn = models.SmallCNN(1, 10, widths=(4, 8)).to(device).eval()
    torch.testing.assert_close(ensemble.penultimate_features(cnn, x), cnn.head[:-1](cnn.features(x)))


def _factory(device):
    return lambda: models.MLP(64, 10, depth=2, width=32).to(device)


def test_vmap_training_matches_sequential_training(device):
    ds = _digits(device)
    x, y = ds.x_train[:600], ds.y_train[:600]
    seeds = [0, 1, 2, 3]
    make_loader = lambda: data.DeviceLoader(x, y, 50, generator=torch.Generator().manual_seed(7))
    init = ensemble.make_members(_factory(device), seeds)
    sequential = ensemble.train_sequential([m for m in ensemble.make_members(_factory(device), seeds)],
                                           make_loader, epochs=3, lr=0.1, momentum=0.9)
    vmapped, losses = ensemble.train_vmap(init, make_loader(), epochs=3, lr=0.1, momentum=0.9)
    assert losses.shape == (3 * 12, 4)
    for k, (a, b) in enumerate(zip(sequential, vmapped)):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5, msg=f"member {k}, {name}")
    start = ensemble.make_members(_factory(device), seeds)
    moved = max((p0 - p1).abs().max().item() for p0, p1 in zip(start[0].parameters(), vmapped[0].parameters()))
    assert moved > 1e-2, "training must move the weights (otherwise the comparison proves nothing)"
    differ = (vmapped[0][1].weight - vmapped[1][1].weight).abs().max().item()
    assert differ > 1e-2, "members with different seeds must differ"


def test_vmap_training_with_per_member_batches(device):
    ds = _digits(device)
    x, y = ds.x_train[:300], ds.y_train[:300]
    boot = ensemble.bootstrap_indices(300, k=3, generator=torch.Generator().manual_seed(1), device=device)
    members = ensemble.make_members(_factory(device), [0, 1, 2])
    batches = [(x[boot[:, i:i + 50]], y[boot[:, i:i + 50]]) for i in range(0, 300, 50)]  # (K, B, ...)
    vmapped, _ = ensemble.train_vmap(members, batches, epochs=2, lr=0.1, per_member_batches=True)
    for k in range(3):
        own = [(xb[k], yb[k]) for xb, yb in batches]
        (seq,) = ensemble.train_sequential(ensemble.make_members(_factory(device), [k]), lambda: own, epochs=2, lr=0.1)
        for pa, pb in zip(seq.parameters(), vmapped[k].parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)


def test_vmap_refuses_batch_norm():
    with pytest.raises(ValueError, match="buffers"):
        ensemble.train_vmap([models.MLP(4, 2, norm="batch")], [], epochs=1, lr=0.1)


def test_vmap_training_with_one_learning_rate_and_weight_decay_per_member(device):
    ds = _digits(device)
    x, y = ds.x_train[:400], ds.y_train[:400]
    lrs, wds = [0.02, 0.1, 0.3], [0.0, 1e-2, 1e-3]
    make_loader = lambda: data.DeviceLoader(x, y, 50, generator=torch.Generator().manual_seed(3))
    vmapped, _ = ensemble.train_vmap(ensemble.make_members(_factory(device), [0, 1, 2]), make_loader(), epochs=2,
                                     lr=lrs, weight_decay=torch.tensor(wds), momentum=0.9)
    for k in range(3):
        (seq,) = ensemble.train_sequential(ensemble.make_members(_factory(device), [k]), make_loader, epochs=2,
                                           lr=lrs[k], momentum=0.9, weight_decay=wds[k])
        for pa, pb in zip(seq.parameters(), vmapped[k].parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5, msg=f"member {k}")
    with pytest.raises(ValueError, match="one value per member"):
        ensemble.train_vmap(ensemble.make_members(_factory(device), [0, 1]), make_loader(), epochs=1, lr=[0.1, 0.2, 0.3])


def test_shard_indices_are_disjoint_and_top_k():
    idx = ensemble.shard_indices(103, 5, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (5, 20) and idx.dtype == torch.int64
    assert len(torch.unique(idx)) == 100 and int(idx.min()) >= 0 and int(idx.max()) < 103
    again = ensemble.shard_indices(103, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    with pytest.raises(ValueError):
        ensemble.shard_indices(3, 4)
    assert ensemble.top_k([0.5, 0.9, float("nan"), 0.9, 0.1], 3) == [1, 3, 0]


def _max_gap(members_a, members_b) -> float:
    return max((pa - pb).abs().max().item() for a, b in zip(members_a, members_b)
               for pa, pb in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("lr, weight_decay", [(0.1, 5e-4), ([0.05, 0.1, 0.2], [0.0, 1e-3, 5e-4])],
                         ids=["shared", "per-member"])
def test_vmap_agrees_with_sequential_in_float64(device, lr, weight_decay):
    """In float64 the vmapped members are the sequential ones up to rounding: within 1e-10 after 36 steps.
    (With the rates rounded to float32, as before, the gap was 1e-8 to 4e-8.)"""
    ds = _digits(device)
    x, y = ds.x_train[:600].double(), ds.y_train[:600]
    make_loader = lambda: data.DeviceLoader(x, y, 50, generator=torch.Generator().manual_seed(7))
    factory = lambda: models.MLP(64, 10, depth=2, width=32).to(device, torch.float64)
    seeds = [0, 1, 2]
    vmapped, _ = ensemble.train_vmap(ensemble.make_members(factory, seeds), make_loader(), epochs=3, lr=lr,
                                     momentum=0.9, weight_decay=weight_decay)
    lrs = lr if isinstance(lr, list) else [lr] * 3
    wds = weight_decay if isinstance(weight_decay, list) else [weight_decay] * 3
    sequential = [ensemble.train_sequential(ensemble.make_members(factory, [s]), make_loader, epochs=3, lr=lrs[k],
                                            momentum=0.9, weight_decay=wds[k])[0] for k, s in enumerate(seeds)]
    assert all(p.dtype == torch.float64 for m in vmapped for p in m.parameters())
    gap = _max_gap(vmapped, sequential)
    assert gap <= 1e-10, f"float64 members differ by {gap:.1e} (need <= 1e-10)"
    start = ensemble.make_members(factory, seeds)
    assert _max_gap(start, vmapped) > 1e-2, "training must move the weights (otherwise the comparison proves nothing)"


def test_hyper_parameters_keep_the_parameters_dtype():
    params = [torch.zeros(3, 4, 2, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float32)]
    assert ensemble._per_member(0.1, 3, "lr") == 0.1, "one number stays a double, as torch.optim.SGD keeps it"
    views = ensemble._member_views(ensemble._per_member([0.1, 0.2, 0.3], 3, "lr"), params)
    assert views[0].dtype == torch.float64 and views[0].shape == (3, 1, 1)
    assert views[0].flatten().tolist() == [0.1, 0.2, 0.3], "float64 rates are not rounded to float32 on the way"
    assert views[1].dtype == torch.float32 and views[1].shape == (3, 1)
    given = ensemble._per_member(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float32), 3, "lr")
    assert given.dtype == torch.float32, "a tensor keeps the dtype it was given in"


def test_sgd_foreach_is_torch_optim_sgd():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    ours, velocity = [p.clone() for p in params], [torch.zeros_like(p) for p in params]
    theirs = [torch.nn.Parameter(p.clone()) for p in params]
    opt = torch.optim.SGD(theirs, lr=0.05, momentum=0.9, weight_decay=1e-2)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        for p, gr in zip(theirs, grads):
            p.grad = gr.clone()
        opt.step()
        ensemble.sgd_foreach_(ours, grads, velocity, lr=0.05, momentum=0.9, weight_decay=1e-2)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-15)


def test_compiled_vmap_step_matches_eager_in_float64():
    """train_vmap(compiled=True): the whole step through torch.compile (inductor on the CPU), same batches."""
    ds = _digits(torch.device("cpu"))
    x, y = ds.x_train[:200].double(), ds.y_train[:200]
    make_loader = lambda: data.DeviceLoader(x, y, 40, generator=torch.Generator().manual_seed(5))
    factory = lambda: models.MLP(64, 10, depth=1, width=8).double()
    kwargs = dict(epochs=2, lr=[0.1, 0.2], momentum=0.9, weight_decay=1e-3)
    eager, eager_losses = ensemble.train_vmap(ensemble.make_members(factory, [0, 1]), make_loader(), **kwargs)
    fused, fused_losses = ensemble.train_vmap(ensemble.make_members(factory, [0, 1]), make_loader(), compiled=True,
                                              **kwargs)
    assert _max_gap(eager, fused) <= 1e-10 and fused_losses.shape == eager_losses.shape == (10, 2)
    torch.testing.assert_close(fused_losses, eager_losses, rtol=0, atol=1e-10)
    assert _max_gap(ensemble.make_members(factory, [0, 1]), fused) > 1e-2, "training must move the weights"


def test_mean_disagreement_from_the_votes_matches_the_pairwise_matrix():
    """mean_disagreement counts agreeing pairs from the votes, without pairwise_disagreement (left out of the
    student release): the same mean of the matrix off its diagonal."""
    g = torch.Generator().manual_seed(0)
    for k, c in [(2, 3), (5, 4), (8, 10)]:
        z = torch.randn(k, 300, c, generator=g)
        d = ensemble.pairwise_disagreement(z)
        assert ensemble.mean_disagreement(z) == pytest.approx(d[~torch.eye(k, dtype=bool)].mean().item(), abs=1e-6)
        assert ensemble.mean_disagreement(list(z)) == pytest.approx(ensemble.mean_disagreement(z))
