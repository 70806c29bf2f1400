"""course_lib.capstone: each piece of the fast path against torch / torchvision / course_lib references,
a tiny end-to-end run, the absence of host synchronisation in the step loop, and the ablation's verdicts."""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from course_lib import capstone as C
from course_lib import data, ensemble, preprocess, schedules

TINY = C.Recipe(epochs=3, batch_size=64, lr=0.4, widths=(8, 16, 16), members=2, whiten_images=256)
#: Every candidate trick switched on (a short EMA, the whitening bias for one epoch, six TTA views).
ALL_ON = dict(ema=True, ema_decay=0.5, alternating_flips=True, whiten_bias_epochs=1, tta_views=6)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits on the CPU (1500 train, 297 test)."""
    return data.load_dataset("digits", device="cpu", verbose=False)


# ----------------------------------------------------------------------------------------- recipe


def test_recipe_without_and_but():
    r = C.Recipe()
    assert all(r.tricks().values()) and r.label() == "full recipe" and r.n_members == r.members
    off = r.without("bn", "tta")
    assert not off.bn and not off.tta and off.augment and off.label() == "without bn, tta"
    assert r.without("ensemble").n_members == 1
    assert r.but(epochs=7).epochs == 7 and r.epochs != 7
    with pytest.raises(ValueError, match="unknown trick"):
        r.without("dropout")


def test_candidate_tricks_are_off_by_default_and_switchable():
    r = C.Recipe()
    assert not any(r.candidates().values()) and r.tta_views == 2 and r.whiten_bias_epochs == 0
    assert set(r.candidates()) == set(C.CANDIDATES)
    for name, changes in C.CANDIDATES.items():
        on = r.but(**changes)
        assert [c for c, v in on.candidates().items() if v] == [name] and on.label() == f"full recipe + {name}"
    assert r.without("bn").but(ema=True).label() == "without bn + ema"


# ---------------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.2, 0.5])
def test_label_smoothing_matches_torch(device, eps):
    g = torch.Generator().manual_seed(int(eps * 10))
    logits = (3 * torch.randn(64, 10, generator=g)).to(device).requires_grad_()
    target = torch.randint(0, 10, (64,), generator=g).to(device)
    ours = C.label_smoothing_loss(logits, target, eps)
    theirs = F.cross_entropy(logits, target, label_smoothing=eps)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    g_ours, = torch.autograd.grad(ours, logits)
    g_theirs, = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-7)


def test_label_smoothing_minimum_is_the_smoothed_target():
    """The loss is minimal where softmax(logits) = (1 − ε)·onehot + ε/C, not at a one-hot prediction."""
    eps, c = 0.2, 5
    q = torch.full((1, c), eps / c)
    q[0, 2] += 1 - eps
    target = torch.tensor([2])
    at_q = C.label_smoothing_loss(q.log(), target, eps)
    confident = C.label_smoothing_loss(torch.tensor([[0.0, 0, 20, 0, 0]]), target, eps)
    assert at_q < confident
    entropy = -(q * q.log()).sum()
    torch.testing.assert_close(at_q, entropy)
    assert C.smoothed_loss_floor(eps, c) == pytest.approx(float(entropy), rel=1e-6)
    assert C.smoothed_loss_floor(0.0, c) == 0.0


# ------------------------------------------------------------------------------------ augmentation


def test_augment_batch_matches_torchvision_per_sample(device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 12, 12, generator=g).to(device)
    flip = torch.tensor([True, False, True, True, False, False], device=device)
    top = torch.randint(0, 5, (6,), generator=g).to(device)
    left = torch.randint(0, 5, (6,), generator=g).to(device)
    mean, std = torch.tensor([0.3], device=device), torch.tensor([0.25], device=device)
    out = C.augment_batch(x, flip, top, left, mean, std, padding=2)
    expected = []
    for img, f, t, l in zip(x, flip, top, left):
        img = TF.horizontal_flip(img) if f else img
        img = TF.crop(TF.pad(img, [2]), int(t), int(l), 12, 12)
        expected.append(TF.normalize(img, [0.3], [0.25]))
    torch.testing.assert_close(out, torch.stack(expected), rtol=1e-6, atol=1e-6)


def test_augment_pads_with_black_not_with_the_mean():
    """Flip/crop before normalization: the padded border is normalized black, (0 − mean)/std."""
    x = torch.ones(2, 1, 8, 8)
    out = C.augment_batch(x, torch.tensor([False, False]), torch.tensor([0, 0]), torch.tensor([0, 0]),
                          torch.tensor([0.5]), torch.tensor([0.25]), padding=2)
    torch.testing.assert_close(out[:, :, :2, :], torch.full((2, 1, 2, 8), -2.0))
    torch.testing.assert_close(out[:, :, 2:, 2:], torch.full((2, 1, 6, 6), 2.0))


def test_epoch_batches_are_augment_batch_of_one_draw_per_epoch(device):
    """The whole epoch is drawn once (order, flips, offsets) and every batch is augment_batch of its slice."""
    x = torch.rand(100, 1, 10, 10).to(device)
    y = torch.arange(100, device=device)
    mean, std = torch.full((1,), 0.5, device=device), torch.full((1,), 2.0, device=device)
    make = lambda **kw: C.epoch_batches(x, y, 32, mean, std, padding=2, generator=torch.Generator(device=device).manual_seed(3), chunk=40, **kw)  # noqa: E731
    batches = make()
    assert len(batches) == 3 and all(xb.shape == (32, 1, 10, 10) and xb.device == x.device for xb, _ in batches)
    d = C.draw_epoch(100, 32, 2, True, torch.Generator(device=device).manual_seed(3), device)
    xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert torch.equal(ys, y[d["order"]]) and len(set(ys.tolist())) == 96
    expected = C.augment_batch(x[d["order"]], d["flip"], d["offsets"][0], d["offsets"][1], mean, std, 2)
    torch.testing.assert_close(xs, expected, rtol=0, atol=0)
    assert 0.3 < d["flip"].float().mean() < 0.7 and set(d["offsets"].unique().tolist()) <= set(range(5))
    plain = C.epoch_batches(x, y, 50, mean, std, padding=0, flip=False, generator=torch.Generator(device=device).manual_seed(0))
    torch.testing.assert_close(plain[0][0], (x[plain[0][1]] - 0.5) / 2)
    assert [b[0].data_ptr() for b in batches][1] - batches[0][0].data_ptr() == 32 * 100 * x.element_size(), "slices of one tensor"


# ---------------------------------------------------------------------------------- patch whitening


def test_image_patches_match_the_convolution(device):
    x = torch.randn(3, 2, 7, 7).to(device)
    w = torch.randn(5, 2, 3, 3).to(device)
    patches = C.image_patches(x, 3)
    assert patches.shape == (3 * 25, 18)
    conv = F.conv2d(x, w)                                        # (3, 5, 5, 5)
    torch.testing.assert_close(patches @ w.flatten(1).T, conv.permute(0, 2, 3, 1).reshape(-1, 5), rtol=1e-4, atol=1e-4)


def test_whitening_filters_compute_pca_whitening(device):
    g = torch.Generator().manual_seed(1)
    x = F.avg_pool2d(torch.rand(64, 1, 18, 18, generator=g), 3, 1).to(device)  # correlated neighbours
    weight, bias = C.whitening_filters(x, size=3, eps=1e-3)
    assert weight.shape == (18, 1, 3, 3) and bias.shape == (18,)
    torch.testing.assert_close(weight[9:], -weight[:9])
    torch.testing.assert_close(bias[9:], -bias[:9])
    out = F.conv2d(x, weight, bias).permute(0, 2, 3, 1).reshape(-1, 18)[:, :9]
    patches = C.image_patches(x, 3)
    expected = preprocess.Whitening("pca", eps=1e-3).fit_transform(patches)
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    cov = preprocess.covariance(out.double())
    eigvals = preprocess.pca(patches)[0].double()
    torch.testing.assert_close(cov, torch.diag(eigvals / (eigvals + 1e-3)), rtol=1e-3, atol=1e-3)


# -------------------------------------------------------------------------------------- the network


def test_build_net_follows_the_recipe(digits):
    net = C.build_net(TINY, digits.x_train, 10, mean=torch.zeros(1), std=torch.ones(1), generator=torch.Generator().manual_seed(0))
    assert not net.stem.weight.requires_grad and not net.stem.bias.requires_grad
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs) and any(isinstance(m, nn.BatchNorm2d) for m in net.body)
    w = convs[1].weight
    assert abs(float(w.detach().std()) / math.sqrt(2 / (w.shape[1] * 9)) - 1) < 0.15, "He init: std sqrt(2 / fan_in)"
    plain = C.build_net(TINY.without("whiten", "he_init", "bn"), digits.x_train, 10)
    assert plain.stem.weight.requires_grad and not any(isinstance(m, nn.BatchNorm2d) for m in plain.body)
    assert all(c.bias is not None for c in plain.body if isinstance(c, nn.Conv2d))
    assert abs(float(plain.body[0].weight.detach().std()) - 0.01) < 0.002, "small random init: 0.01·N(0, 1)"
    assert net(digits.x_train[:4]).shape == (4, 10)


def test_optimizer_is_fused_nesterov_sgd_with_plain_number_rates():
    net = nn.Linear(3, 2)
    opt, rates = C.make_optimizer(net, C.Recipe(lr=0.4, warmup=0.25), steps=100)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"] and opt.param_groups[0]["fused"]
    expected = [0.4 * schedules.warmup_cosine_factor(t, 25, 100, start_factor=0.1) for t in range(100)]
    assert all(isinstance(r, float) for r in rates) and rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(0.04) and max(rates) == pytest.approx(0.4) and rates[-1] < 0.001
    _, constant = C.make_optimizer(net, C.Recipe(lr=0.4).without("schedule"), steps=10)
    assert constant == [0.4] * 10


def test_fused_step_follows_the_reference_sgd():
    """The lean step (fused SGD, rates set as numbers, F.cross_entropy) takes the same steps as
    for-loop SGD with a LambdaLR and the course's own label-smoothed loss."""
    torch.manual_seed(0)
    recipe = C.Recipe(lr=0.3, warmup=0.5, weight_decay=1e-3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    ref = copy.deepcopy(net)
    x, y = torch.randn(5, 16, 1, 8, 8), torch.randint(0, 3, (5, 16))
    opt, rates = C.make_optimizer(net, recipe, 5)
    losses, correct = C.train_epoch(net, list(zip(x, y)), opt, rates, 0.2)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-3, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda t: rates[min(t, 4)] / 0.3)
    for i in range(5):
        loss = C.label_smoothing_loss(ref(x[i]), y[i], 0.2)
        torch.testing.assert_close(losses[i], loss.detach(), rtol=1e-5, atol=1e-6)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        sched.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert 0 <= int(correct) <= 80


# ----------------------------------------------------------------------------------- the head


def test_head_gradient_goes_to_one_index_not_split_by_equality():
    """adaptive_max_pool2d routes the gradient to the saved argmax; amax's gradient splits it over the
    elements equal to the max (an equality test, NaN in a compiled bf16 backward: issue 21)."""
    recipe = C.Recipe(widths=(4, 4, 4))
    net = C.CapstoneNet(1, 3, recipe)
    h = torch.zeros(1, 4, 2, 2, requires_grad=True)
    pooled = F.adaptive_max_pool2d(h, 1).flatten(1)
    pooled.sum().backward()
    assert h.grad[0].flatten(1).sum(1).tolist() == [1.0] * 4 and (h.grad == 1).sum() == 4  # one winner per channel
    seen = []
    net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x = torch.randn(2, 1, 16, 16)
    net(x)
    torch.testing.assert_close(seen[0], torch.amax(net.body(F.relu(net.stem(x))), dim=(2, 3)))


def _compiled_and_eager_grads(net, x, y):
    """One bf16-autocast step's loss and gradients, eager and through ``torch.compile(net)`` (inductor, CPU);
    asserts that the compiled gradients are finite and within bf16 tolerance of the eager ones."""
    def grads(fn):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(fn(x).float(), y, label_smoothing=0.2)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in net.parameters() if p.requires_grad]
    eager_loss, eager = grads(net)
    compiled_loss, compiled = grads(torch.compile(net))
    assert len(compiled) == len(eager) and all(torch.isfinite(g).all() for g in compiled), \
        "a non-finite gradient in the compiled bf16 step"
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=2e-2, atol=2e-2)
    for g, e in zip(compiled, eager):
        scale = float(e.abs().max()) + 1e-6
        assert float((g - e).abs().max()) / scale < 0.1, "compiled and eager gradients differ beyond bf16 rounding"
    return eager


def test_compiled_bf16_step_has_finite_gradients_matching_eager():
    """torch.compile (inductor, on the CPU) of one bf16-autocast training step: every gradient is finite and
    within bf16 tolerance of the eager step's."""
    torch.manual_seed(0)
    net = C.CapstoneNet(1, 10, TINY.but(widths=(8, 8, 8)))
    _compiled_and_eager_grads(net, torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))


def test_compiled_step_with_every_candidate_on(digits):
    """The same check with every candidate switched on: a whitened stem whose bias trains (weights frozen), a
    batch of alternating flips; then the EMA update and six-view TTA of the compiled net stay finite."""
    recipe = TINY.but(widths=(8, 8, 8), **ALL_ON)
    mean, std = C.channel_stats(digits.x_train)
    net = C.build_net(recipe, digits.x_train, 10, mean=mean, std=std, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    base = C.alternating_flip_base(len(digits.x_train), g, "cpu")
    (xb, yb), *_ = C.epoch_batches(digits.x_train, digits.y_train, 16, mean, std, generator=g, flip_base=base, epoch=1)
    grads = _compiled_and_eager_grads(net, xb, yb)
    assert len(grads) == len(list(net.parameters())) - 1, "every parameter but the stem's weights trains"
    average = copy.deepcopy(net)
    opt, _ = C.make_optimizer(net, recipe, 1)
    opt.step()
    C.ema_update(C.ema_state(average, net, recipe.ema_decay))
    assert all(torch.isfinite(t).all() for t in average.state_dict().values() if t.is_floating_point())
    assert torch.isfinite(C.predict_probs([average], xb, views=6)).all()


# ----------------------------------------------------------------------------------- TTA, ensembles


def _small_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))


def test_tta_averages_probabilities_not_logits(device):
    model = _small_model(0).to(device)
    x = torch.randn(16, 1, 6, 6, device=device)
    model.train()
    probs = C.tta_probs(model, x)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
        logits_avg = ((model(x) + model(x.flip(-1))) / 2).softmax(1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(1), torch.ones(16, device=device))
    assert not torch.allclose(probs, logits_avg, atol=1e-4)


def test_predict_probs_averages_members_and_views(device):
    models = [_small_model(s).to(device).eval() for s in (1, 2)]
    x = torch.randn(10, 1, 6, 6, device=device)
    with torch.no_grad():
        logits = [m(v) for m in models for v in (x, x.flip(-1))]
    torch.testing.assert_close(C.predict_probs(models, x), ensemble.average_probs(logits), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(C.predict_probs(models, x, tta=False), ensemble.average_probs(logits[::2]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ training runs


def test_train_recipe_learns_and_is_reproducible(digits):
    a = C.train_recipe(TINY, digits, seed=0, eval_each_epoch=True)
    b = C.train_recipe(TINY, digits, seed=0)
    assert a.accuracy == b.accuracy > 0.5, f"digits after 3 epochs: {a.accuracy:.3f}"
    assert len(a.models) == 2 and set(a.evaluations) == {(True, True), (True, False), (False, True), (False, False)}
    assert a.accuracy == a.evaluations[True, True]
    for p, q in zip(a.models[0].parameters(), b.models[0].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert a.train_seconds > 0 and a.compile_seconds == 0
    frame = pd.DataFrame(a.history)
    assert {"member", "seed", "epoch", "train_seconds", "train_loss", "test_acc"} <= set(frame.columns)
    assert len(frame) == TINY.epochs * TINY.members and frame["test_acc"].notna().all()
    assert list(frame["seed"].unique()) == [0, 1000] and frame.groupby("member")["train_seconds"].is_monotonic_increasing.all()
    assert C.time_to_accuracy(a.history, 0.0) == a.history[0]["train_seconds"]
    assert math.isnan(C.time_to_accuracy(a.history, 1.01))
    single = C.train_recipe(TINY.without("ensemble", "tta"), digits, seed=0)
    assert len(single.models) == 1 and single.accuracy == single.evaluations[False, False]
    assert C.split_accuracy(a, digits, "test") == pytest.approx(a.accuracy, abs=1e-6)
    assert C.split_accuracy(single, digits, "test") == pytest.approx(single.accuracy, abs=1e-6)
    raw = C.train_recipe(TINY.without("whiten", "ensemble"), digits, seed=0)
    assert C.split_accuracy(raw, digits, "test") == pytest.approx(raw.accuracy, abs=1e-6)
    assert 0.5 < C.split_accuracy(a, digits, "train") <= 1.0
    with pytest.raises(ValueError):
        C.split_accuracy(a, digits, "val")


def test_compile_for_real_warms_up_once_and_leaves_training_unchanged(digits):
    """Recipe(compile=True) with the real torch.compile (inductor on the CPU): the warm-up trains a copy, so
    the run matches eager closely; the second seed reuses the compiled code (no new graph)."""
    from torch._dynamo.utils import counters
    small = digits.subset(640, 297, generator=torch.Generator().manual_seed(0))
    recipe = TINY.without("ensemble").but(epochs=1)
    plain = C.train_recipe(recipe, small, seed=1)
    compiled = C.train_recipe(recipe.but(compile=True), small, seed=1)
    assert compiled.compile_seconds > 0 and compiled.diverged is None
    assert compiled.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
    for p, q in zip(plain.models[0].state_dict().values(), compiled.models[0].state_dict().values()):
        torch.testing.assert_close(p.float(), q.float(), rtol=1e-3, atol=1e-3)
    graphs = counters["stats"]["unique_graphs"]
    again = C.train_recipe(recipe.but(compile=True), small, seed=2)
    assert counters["stats"]["unique_graphs"] == graphs, "a second seed recompiled"
    assert again.compile_seconds < compiled.compile_seconds


def test_step_loop_never_reads_back_to_the_host(digits, monkeypatch):
    """No .item(), float(), int(), bool() or .tolist() of a tensor inside train_epoch."""
    recipe = TINY.without("ensemble")
    mean, std = C.channel_stats(digits.x_train)
    net = C.build_net(recipe, digits.x_train, 10, mean=mean, std=std)
    batches = C.epoch_batches(digits.x_train, digits.y_train, 64, mean, std, generator=torch.Generator().manual_seed(0))
    opt, rates = C.make_optimizer(net, recipe, len(batches))

    def forbidden(*args, **kwargs):
        raise AssertionError("a host read-back inside the step loop")
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    losses, correct = C.train_epoch(net, batches, opt, rates, 0.2)
    monkeypatch.undo()
    n = len(batches) * 64
    assert losses.shape == (len(batches),) and 0 < float(losses.mean()) < 5 and 0 <= int(correct) <= n


def test_a_non_finite_loss_ends_the_run_as_diverged(digits):
    """A rate of 1e6 without batch norm: the loss is not finite after the first epoch; the run stops there."""
    recipe = TINY.without("bn", "schedule").but(lr=1e6, epochs=3)
    result = C.train_recipe(recipe, digits, seed=0)
    assert result.diverged == 1 and result.status == "diverged at epoch 1"
    assert len(result.history) == 1 and len(result.models) == 1, "no further epoch, no further member"
    assert math.isnan(result.history[0]["train_loss"]) or math.isinf(result.history[0]["train_loss"])
    assert C.train_recipe(TINY.but(epochs=1), digits, seed=0).diverged is None


@pytest.mark.gpu
def test_cuda_fast_path_has_no_sync_and_uses_bf16_channels_last(digits):
    dev = torch.device("cuda")
    ds = digits.to(dev)
    recipe = TINY.without("ensemble")
    mean, std = C.channel_stats(ds.x_train)
    net = C.build_net(recipe, ds.x_train, 10, mean=mean, std=std).to(memory_format=torch.channels_last)
    batches = C.epoch_batches(ds.x_train, ds.y_train, 64, mean, std, generator=torch.Generator(device=dev).manual_seed(0),
                              memory_format=torch.channels_last)
    opt, rates = C.make_optimizer(net, recipe, len(batches))
    assert opt.param_groups[0]["fused"]
    ctx = C.fast_context(dev, recipe)
    with ctx:
        assert net(ds.x_train[:8].contiguous(memory_format=torch.channels_last)).dtype == torch.bfloat16
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        C.train_epoch(net, batches, opt, rates, 0.2, True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    result = C.train_recipe(recipe, ds, seed=0)
    assert result.accuracy > 0.5


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune-no-cudagraphs"])
def test_cuda_compile_reports_compile_time(digits, mode):
    result = C.train_recipe(TINY.without("ensemble").but(compile=True, compile_mode=mode), digits.to("cuda"), seed=0)
    assert result.compile_seconds > 0 and result.diverged is None and result.accuracy > 0.5


# -------------------------------------------------------------------------------------- the ablation


def test_ablation_rows_and_eval_only_tricks(digits):
    frame = C.ablation(TINY.but(epochs=1), digits, seeds=[0], tricks=("bn", "tta", "ensemble"))
    assert list(frame["removed"]) == [C.FULL, "bn", "tta", "ensemble"] and frame["final_train_loss"].notna().all()
    full = C.train_recipe(TINY.but(epochs=1), digits, seed=0)
    acc = dict(zip(frame["removed"], frame["accuracy"]))
    assert acc[C.FULL] == full.accuracy
    assert acc["tta"] == full.evaluations[False, True] and acc["ensemble"] == full.evaluations[True, False]
    no_bn = C.train_recipe(TINY.but(epochs=1).without("bn"), digits, seed=0)
    assert acc["bn"] == no_bn.accuracy


def test_summary_and_verdicts_follow_the_numbers():
    frame = pd.DataFrame([
        {"removed": C.FULL, "seed": s, "accuracy": a, "train_seconds": 1.0} for s, a in enumerate([0.90, 0.91, 0.92])
    ] + [
        {"removed": "bn", "seed": s, "accuracy": a, "train_seconds": 1.0} for s, a in enumerate([0.80, 0.81, 0.82])
    ] + [
        {"removed": "tta", "seed": s, "accuracy": a, "train_seconds": 1.0} for s, a in enumerate([0.909, 0.912, 0.918])
    ] + [
        {"removed": "augment", "seed": s, "accuracy": a, "train_seconds": 0.5} for s, a in enumerate([0.95, 0.96, 0.97])
    ])
    summary = C.summarize_ablation(frame)
    assert list(summary.index) == [C.FULL, "bn", "tta", "augment"]
    assert summary.loc["bn", "delta"] == pytest.approx(-0.10)
    assert summary.loc["bn", "std"] == pytest.approx(0.01) and summary.loc["bn", "seeds"] == 3
    v = C.verdicts(summary, n_test=10_000)
    assert v["bn"].startswith("helps") and v["tta"].startswith("no measurable") and v["augment"].startswith("hurts")
    one_seed = C.summarize_ablation(frame[frame["seed"] == 0])
    assert math.isnan(one_seed.loc["bn", "std"])
    noise = C.noise_level(one_seed, n_test=2000)
    assert noise["bn"] == pytest.approx(2 * math.sqrt(2 * 0.8 * 0.2 / 2000))


def test_smoothed_targets_give_the_label_smoothing_loss(device):
    g = torch.Generator().manual_seed(5)
    logits = (3 * torch.randn(40, 10, generator=g)).to(device)
    y = torch.randint(0, 10, (40,), generator=g).to(device)
    q = C.smoothed_targets(y, 10, 0.2)
    torch.testing.assert_close(q.sum(1), torch.ones(40, device=device))
    torch.testing.assert_close(F.cross_entropy(logits, q), F.cross_entropy(logits, y, label_smoothing=0.2))
    x = torch.rand(64, 1, 6, 6).to(device)
    batches = C.epoch_batches(x, y.repeat(2)[:64], 16, torch.zeros(1, device=device), torch.ones(1, device=device),
                              generator=torch.Generator(device=device).manual_seed(0), smoothing=0.2, num_classes=10)
    assert all(len(b) == 3 for b in batches)
    torch.testing.assert_close(batches[1][2], -C.smoothed_targets(batches[1][1], 10, 0.2) / 16)


def test_forward_loss_with_loss_weights_is_torch_label_smoothing_value_and_gradient(device):
    """forward_loss against the epoch's loss weights w = -q/B (Σ w·log softmax, no per-step sign or mean) has the
    value and the gradient of F.cross_entropy(label_smoothing=ε); without weights it is that call itself."""
    g = torch.Generator().manual_seed(6)
    net = torch.nn.Linear(12, 10).to(device)
    x, y = torch.randn(16, 12, generator=g).to(device), torch.randint(0, 10, (16,), generator=g).to(device)
    w = C.loss_weights(y, 10, 0.2, 16)
    grads = []
    for extra in ((w,), ()):
        net.zero_grad()
        loss, right = C.forward_loss(net, x, y, 0.2, False, *extra)
        loss.backward()
        grads.append((loss.detach(), net.weight.grad.clone(), right))
    net.zero_grad()
    theirs = F.cross_entropy(net(x), y, label_smoothing=0.2)
    theirs.backward()
    for loss, grad, right in grads:
        torch.testing.assert_close(loss, theirs.detach())
        torch.testing.assert_close(grad, net.weight.grad)
        assert int(right) == int((net(x).argmax(1) == y).sum())


def test_flops_per_step_scale_with_the_batch_and_the_epoch_clock_times(digits):
    """FlopCounterMode's count of one training step is linear in the batch size and at least the first
    conv's 2·MAC; the clock's host share never exceeds its wall time and needs no GPU."""
    one, two = (C.flops_per_step(TINY.but(batch_size=b), digits) for b in (32, 64))
    assert two == 2 * one
    stem_macs = 32 * 8 * 8 * (2 * 9) * 9   # N·H·W·out·(in·k²) of the 3x3 whitening stem, forward only
    assert one > 2 * stem_macs
    with C.EpochClock(torch.device("cpu")) as clock:
        torch.randn(200, 200) @ torch.randn(200, 200)
    record = clock.record()
    assert 0 < record["epoch_host_seconds"] <= record["epoch_wall_seconds"] and "epoch_gpu_seconds" not in record


def _benchmark(name):
    """A module of benchmarks/ imported by path (the folder is no package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dawnbench_time_needs_the_mean_and_every_seed_at_the_target():
    """DAWNBench: the fixed budget's mean training time, only when the mean final accuracy and every seed
    reach the target; a diverged seed reaches nothing."""
    tta = _benchmark("time_to_accuracy")
    hist = lambda acc: [{"epoch": 1, "train_seconds": 1.0, "test_acc": acc[0], "epoch_wall_seconds": 1.0,  # noqa: E731
                         "epoch_host_seconds": 0.5}, {"epoch": 2, "train_seconds": 2.0, "test_acc": acc[1],
                                                      "epoch_wall_seconds": 1.0, "epoch_host_seconds": 0.5}]
    times = {"prep_seconds": 0.1, "compile_seconds": 0.0}
    runs = [{"history": hist((0.92, 0.941)), "train_seconds": 2.0, "final_accuracy": 0.941, **times},
            {"history": hist((0.90, 0.950)), "train_seconds": 4.0, "final_accuracy": 0.950, **times}]
    assert tta.dawnbench_seconds(runs, 0.94) == 3.0
    assert math.isnan(tta.dawnbench_seconds(runs, 0.945)), "one seed below the target"
    summary = tta.summarize(runs, [0.94, 0.91], flops_per_epoch=2e12)
    assert summary["reached_0.94"] == 2 and summary["time_to_0.94"] == 3.0 and summary["host_wall_ratio"] == 0.5
    assert summary["first_epoch_time_to_0.91"] == 1.5 and summary["tflops"] == 2.0 and summary["diverged"] is None
    runs[1]["diverged"] = 2
    assert math.isnan(tta.dawnbench_seconds(runs, 0.94)) and tta.summarize(runs, [0.94])["diverged"] == "seed 1: diverged at epoch 2"


def test_batch_norm_keeps_running_statistics_without_a_step_counter():
    """The capstone's batch norm updates its running mean/var with momentum 0.1 as nn.BatchNorm2d does,
    without the num_batches_tracked add_ (one op per layer per step)."""
    ours, ref = C._batch_norm(3), nn.BatchNorm2d(3)
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert "num_batches_tracked" not in ours.state_dict() and int(ref.num_batches_tracked) == 1


# --------------------------------------------------------------------------------- candidate tricks


def test_ema_weights_equal_the_closed_form():
    """After T steps the average is d^T·θ_0 + Σ_t (1 − d)·d^(T−t)·θ_t, for the parameters and the batch-norm
    statistics alike."""
    d, steps = 0.8, 4
    net = _small_model(0)
    average = copy.deepcopy(net)
    state = C.ema_state(average, net, d)
    assert len(state[0]) == len(state[1]) == 8, "conv, BN and linear weights and biases, BN running mean and var"
    opt, _ = C.make_optimizer(net, C.Recipe(), steps)
    x, y = torch.randn(steps, 8, 1, 6, 6), torch.randint(0, 5, (steps, 8))
    thetas = [[t.clone() for t in state[1]]]
    for i in range(steps):
        C.train_epoch(net, [(x[i], y[i])], opt, [0.1], 0.0, ema=state)
        thetas.append([t.clone() for t in state[1]])
    for j, avg in enumerate(state[0]):
        expected = d ** steps * thetas[0][j] + sum((1 - d) * d ** (steps - t) * thetas[t][j] for t in range(1, steps + 1))
        torch.testing.assert_close(avg, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(state[0][0], state[1][0]), "the average is not the last weights"
    assert not any(p.requires_grad for p in average.parameters())


def test_ema_is_what_the_run_evaluates_and_decay_zero_is_the_plain_run(digits):
    """train_recipe returns the averaged network; with d = 0 the average is the last weights exactly
    (lerp with weight 1 returns its end point), so the run is bit-identical to the switch off."""
    recipe = TINY.without("ensemble").but(epochs=2)
    plain = C.train_recipe(recipe, digits, seed=0)
    zero = C.train_recipe(recipe.but(ema=True, ema_decay=0.0), digits, seed=0)
    assert zero.accuracy == plain.accuracy and zero.evaluations == plain.evaluations
    for p, q in zip(plain.models[0].state_dict().values(), zero.models[0].state_dict().values()):
        assert torch.equal(p, q)
    slow = C.train_recipe(recipe.but(ema=True, ema_decay=0.9), digits, seed=0)
    assert not torch.equal(slow.models[0].head.weight, plain.models[0].head.weight)
    assert slow.history[-1]["train_loss"] == plain.history[-1]["train_loss"], "EMA does not change the training"


def test_alternating_flips_flip_each_image_on_alternate_epochs(device):
    n = 96
    g = torch.Generator(device=device).manual_seed(0)
    base = C.alternating_flip_base(n, g, device)
    assert 0.3 < base.float().mean() < 0.7
    flipped = []
    for epoch in range(4):
        d = C.draw_epoch(n, 32, 2, True, g, device, flip_base=base, epoch=epoch)
        per_image = torch.empty(n, dtype=torch.bool, device=device)
        per_image[d["order"]] = d["flip"]
        flipped.append(per_image)
        assert not torch.equal(d["order"], torch.arange(n, device=device)), "still shuffled"
    assert torch.equal(flipped[0], base)
    for before, after in zip(flipped, flipped[1:]):
        assert torch.equal(after, ~before), "every image flips on every other epoch"
    x = torch.rand(n, 1, 5, 5, device=device)
    zero, one = torch.zeros(1, device=device), torch.ones(1, device=device)
    (xb, yb), *_ = C.epoch_batches(x, torch.arange(n, device=device), 32, zero, one, padding=0, generator=g,
                                   flip_base=base, epoch=1)
    expected = torch.where(~base[yb, None, None, None], x[yb].flip(-1), x[yb])
    assert torch.equal(xb, expected), "epoch 1 (0-based) flips exactly the images epoch 0 left alone"


def test_whitening_bias_trains_for_n_epochs_and_its_weights_never(digits, monkeypatch):
    recipe = TINY.without("ensemble").but(whiten_bias_epochs=1)
    net = C.build_net(recipe, digits.x_train, 10, mean=torch.zeros(1), std=torch.ones(1))
    assert not net.stem.weight.requires_grad and net.stem.bias.requires_grad
    opt, _ = C.make_optimizer(net, recipe, 10)
    assert [len(g["params"]) for g in opt.param_groups] == [len(list(net.parameters())) - 2, 1]
    assert len(C.make_optimizer(net, recipe.but(whiten_bias_epochs=0), 10)[0].param_groups) == 1
    stems, train_epoch = [], C.train_epoch

    def spy(model, *args, **kwargs):
        if not stems:
            stems.append((model.stem.weight.clone(), model.stem.bias.clone()))
        out = train_epoch(model, *args, **kwargs)
        stems.append((model.stem.weight.clone(), model.stem.bias.clone()))
        return out
    monkeypatch.setattr(C, "train_epoch", spy)
    C.train_recipe(recipe, digits, seed=0)
    assert len(stems) == 1 + recipe.epochs
    assert all(torch.equal(w, stems[0][0]) for w, _ in stems), "the whitening weights never change"
    assert not torch.equal(stems[1][1], stems[0][1]), "the bias trains in epoch 1"
    assert torch.equal(stems[2][1], stems[1][1]) and torch.equal(stems[3][1], stems[1][1]), "then it is frozen"


def test_multiview_tta_views_and_their_average(device):
    model = _small_model(0).to(device).eval()
    x = torch.randn(10, 1, 6, 6, device=device)
    with torch.no_grad():
        plain = model(x).softmax(1)
    torch.testing.assert_close(C.predict_probs([model], x, views=1), plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(C.predict_probs([model], x, views=2), C.tta_probs(model, x), rtol=0, atol=0)
    v = C.tta_view_images(x, 6)
    assert torch.equal(v[1], x.flip(-1)) and torch.equal(v[3], v[2].flip(-1)) and torch.equal(v[5], v[4].flip(-1))
    assert torch.equal(v[2][..., 1:, 1:], x[..., :-1, :-1]), "one pixel down and right"
    assert torch.equal(v[4][..., :-1, :-1], x[..., 1:, 1:]), "one pixel up and left"
    assert torch.equal(v[2][..., 0, 1:], x[..., 1, :-1]), "reflect padding, as airbench"
    with torch.no_grad():
        expected = torch.stack([model(view).softmax(1) for view in v]).mean(0)
    torch.testing.assert_close(C.predict_probs([model], x, views=6), expected, rtol=1e-5, atol=1e-6)
    assert len(C.tta_view_images(x, 4)) == 4
    with pytest.raises(ValueError, match="1 to 6"):
        C.tta_view_images(x, 7)


def test_every_candidate_on_trains_and_the_ablation_adds_them_one_at_a_time(digits):
    recipe = TINY.without("ensemble").but(epochs=1)
    every = C.train_recipe(recipe.but(epochs=3, **ALL_ON), digits, seed=0)
    assert every.diverged is None and every.accuracy > 0.3, f"digits after 3 epochs: {every.accuracy:.3f}"
    assert every.history[-1]["train_loss"] < every.history[0]["train_loss"]
    frame = C.ablation(recipe, digits, seeds=[0], tricks=(), candidates=("ema", "multiview_tta"))
    assert list(frame["removed"]) == [C.FULL, "added ema", "added multiview_tta"]
    acc = dict(zip(frame["removed"], frame["accuracy"]))
    full = C.train_recipe(recipe, digits, seed=0)
    assert acc[C.FULL] == full.accuracy
    assert acc["added ema"] == C.train_recipe(recipe.but(ema=True), digits, seed=0).accuracy
    six = C.evaluate_members(full.models, C.normalize(digits.x_test, *C.channel_stats(digits.x_train)), digits.y_test,
                             recipe.but(tta_views=6))
    assert acc["added multiview_tta"] == pytest.approx(six[True, False], abs=1e-6)
    assert six[False, False] == full.evaluations[False, False], "no TTA: the views do not matter"
    with pytest.raises(ValueError, match="unknown candidate"):
        C.ablation(recipe, digits, seeds=[0], tricks=(), candidates=("lookahead",))


def test_verdicts_of_added_tricks_read_the_other_way():
    rows = [(C.FULL, [0.90, 0.91, 0.92]), ("added ema", [0.95, 0.96, 0.97]), ("added alternating_flips", [0.80, 0.81, 0.82]),
            ("added multiview_tta", [0.909, 0.912, 0.918])]
    frame = pd.DataFrame([{"removed": r, "seed": s, "accuracy": a, "train_seconds": 1.0}
                          for r, accs in rows for s, a in enumerate(accs)])
    v = C.verdicts(C.summarize_ablation(frame), n_test=10_000)
    assert v["added ema"].startswith("helps: adding it gains 5.00")
    assert v["added alternating_flips"].startswith("hurts here: adding it costs 10.00")
    assert v["added multiview_tta"].startswith("no measurable")


def test_internal_paths_match_the_references_they_replace():
    """The default pieces compute what they did when the pipeline had unmarked copies of them: augment_batch's
    gathers are chapter 01's hflip then crop, normalized, bit for bit; the initialization is 03's init_module_;
    the schedule, read off torch's LinearLR → CosineAnnealingLR, is 04's warm-up cosine within 1e-6 relative
    and equal as the float32 rates the optimizer applies (so training is unchanged, bit for bit, on a CPU)."""
    from course_lib import augment, init

    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 9, 7, generator=g)
    flip = torch.rand(40, generator=g) < 0.5
    top, left = torch.randint(0, 7, (40,), generator=g), torch.randint(0, 7, (40,), generator=g)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    assert torch.equal(C.augment_batch(x, flip, top, left, mean, std, 3),
                       C.normalize(augment.crop(augment.hflip(x, flip), top, left, (9, 7), 3), mean, std))
    recipe = C.Recipe()
    for he in (True, False):
        a, b = C.CapstoneNet(1, 10, recipe), C.CapstoneNet(1, 10, recipe)
        init.init_module_(a, "kaiming_normal" if he else "small", generator=torch.Generator().manual_seed(3))
        C._init_weights(b, he, torch.Generator().manual_seed(3))
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    for warmup in (0.0, 0.2, 0.5):
        for steps in (1, 2, 7, 100, 1170):
            r = recipe.but(warmup=warmup)
            got = C.lr_schedule(r, steps)
            want = [r.lr * schedules.warmup_cosine_factor(t, int(r.warmup * steps), steps, start_factor=0.1) for t in range(steps)]
            assert len(got) == steps and all(isinstance(v, float) for v in got)
            assert got == pytest.approx(want, rel=1e-6, abs=0)
            assert torch.equal(torch.tensor(got, dtype=torch.float32), torch.tensor(want, dtype=torch.float32))
    logits = torch.randn(2, 3, 5, 4, generator=g)
    assert torch.allclose(logits.flatten(0, 1).softmax(-1).mean(0), ensemble.average_probs(logits.flatten(0, 1)))


def test_build_net_stem_is_the_given_whitening_filters(digits):
    """build_net copies whitening_filters of the normalized sample into the stem, bit for bit: this module's by
    default, or the function it is given."""
    mean, std = C.channel_stats(digits.x_train)
    sample = C.normalize(digits.x_train[:TINY.whiten_images], mean, std)
    net = C.build_net(TINY, digits.x_train, 10, mean=mean, std=std)
    weight, bias = C.whitening_filters(sample, TINY.patch_size, TINY.whiten_eps)
    assert torch.equal(net.stem.weight, weight) and torch.equal(net.stem.bias, bias)
    calls = []
    mine = lambda images, size, eps: calls.append((images, size, eps)) or (-weight, -bias)  # noqa: E731
    other = C.build_net(TINY, digits.x_train, 10, mean=mean, std=std, whitening_filters=mine)
    assert len(calls) == 1 and torch.equal(calls[0][0], sample) and calls[0][1:] == (TINY.patch_size, TINY.whiten_eps)
    assert torch.equal(other.stem.weight, -weight) and torch.equal(other.stem.bias, -bias)


def _spy(fn, calls, name):
    """``fn``, counting its calls in ``calls[name]``."""
    def spy(*args):
        calls[name] = calls.get(name, 0) + 1
        return fn(*args)
    return spy


def test_the_pipeline_runs_on_the_parts_it_is_given(digits):
    """train_recipe, split_accuracy and ablation call the given Parts, never the references in their place: spies
    around the references are called and give the default run bit for bit; a blank part's error comes through."""
    recipe = TINY.but(epochs=1, tta_views=3)
    calls = {}
    spies = C.Parts(**{name: _spy(getattr(C.REFERENCE_PARTS, name), calls, name)
                       for name in ("augment_batch", "whitening_filters", "flip_tta_probs")})
    spied = C.train_recipe(recipe, digits, seed=0, parts=spies, eval_each_epoch=True)
    assert calls["augment_batch"] >= recipe.n_members and calls["whitening_filters"] == recipe.n_members
    assert calls["flip_tta_probs"] >= recipe.n_members
    default = C.train_recipe(recipe, digits, seed=0, eval_each_epoch=True)
    assert spied.accuracy == default.accuracy and spied.evaluations == default.evaluations
    assert [h["train_loss"] for h in spied.history] == [h["train_loss"] for h in default.history]
    assert all(torch.equal(p, q) for a, b in zip(spied.models, default.models)
               for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    before = calls["flip_tta_probs"]
    assert C.split_accuracy(spied, digits, "test", spies) == pytest.approx(spied.accuracy, abs=1e-6)
    assert calls["flip_tta_probs"] > before

    def blank(*args):
        raise NotImplementedError("not written yet: a student's blank function")
    for name in ("augment_batch", "whitening_filters", "flip_tta_probs"):
        with pytest.raises(NotImplementedError, match="not written yet"):
            C.train_recipe(recipe, digits, seed=0, parts=replace(C.REFERENCE_PARTS, **{name: blank}))
    calls.clear()
    frame = C.ablation(recipe, digits, seeds=[0], tricks=("augment", "tta"), candidates=("multiview_tta",), parts=spies)
    assert len(frame) == 4 and set(calls) == {"augment_batch", "whitening_filters", "flip_tta_probs"}


def test_member_probs_pairs_views_through_flip_tta_probs(device):
    """An odd number of views: the pairs through flip_tta_probs, the last view alone, the mean of all views."""
    models = [_small_model(s).to(device) for s in (3, 4)]
    x = torch.randn(7, 1, 6, 6, device=device)
    views = C.tta_view_images(x, 3)
    got = C.member_probs(models, x, views=3, batch_size=4)
    assert got.shape == (2, 7, 5) and all(m.training for m in models), "each model's mode is restored"
    with torch.no_grad():
        expected = torch.stack([torch.stack([m.eval()(v).softmax(1) for v in views]).mean(0) for m in models])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    halves = C.member_probs(models, x, lambda m, v: torch.full((len(v), 5), 0.5, device=device), views=2)
    assert torch.equal(halves, torch.full((2, 7, 5), 0.5, device=device)), "the given function's pairs, not the reference's"
