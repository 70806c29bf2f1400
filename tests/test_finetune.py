"""course_lib.finetune: freezing by prefix, parameter groups, the four strategies, the offline message."""
import urllib.error

import pytest
import torch
from torch import nn

from course_lib import data, finetune, models


def _net():
    torch.manual_seed(0)
    return models.SmallCNN(1, 5, widths=(4, 8, 8), norm="batch")


def test_freeze_and_unfreeze_by_prefix():
    net = _net()
    frozen = finetune.freeze(net, ["features.0", "features.1"])
    assert frozen == ["features.0.weight", "features.1.weight", "features.1.bias"]
    assert "features.0.weight" not in finetune.trainable(net) and "head.2.weight" in finetune.trainable(net)
    finetune.freeze(net)
    assert finetune.trainable(net) == []
    finetune.unfreeze(net, "head")
    assert finetune.trainable(net) == ["head.2.weight", "head.2.bias"]
    with pytest.raises(ValueError, match="features.99"):
        finetune.freeze(net, "features.99")


def test_prefix_is_a_whole_dotted_component():
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    assert finetune.freeze(net, "1") == ["1.weight", "1.bias"]  # not 10.* or 11.*


def test_param_groups_longest_prefix_wins_and_frozen_are_left_out():
    net = _net()
    finetune.freeze(net, "features.0")
    groups = finetune.param_groups(net, {"features": 0.01, "features.4": 0.02, "head": 0.1})
    by_name = {g["name"]: g for g in groups}
    ids = lambda g: {id(p) for p in g["params"]}
    assert ids(by_name["features.4"]) == {id(p) for p in net.features[4].parameters()}
    assert by_name["head"]["lr"] == 0.1 and ids(by_name["head"]) == {id(p) for p in net.head.parameters()}
    assert not ids(by_name["features"]) & {id(p) for p in net.features[0].parameters()}
    all_ids = [i for g in groups for i in ids(g)]
    assert len(all_ids) == len(set(all_ids)) == len(finetune.trainable(net))
    opt = torch.optim.SGD(groups, lr=1.0)
    assert sorted(g["lr"] for g in opt.param_groups) == [0.01, 0.02, 0.1]


def test_param_groups_default_group():
    net = _net()
    groups = finetune.param_groups(net, {"head": 0.1}, default_lr=0.001)
    assert [g["name"] for g in groups] == ["head", "default"] and groups[1]["lr"] == 0.001
    assert len(finetune.param_groups(net, {"head": 0.1})) == 1


def test_class_subset_relabels(device):
    ds = data.load_dataset("digits", device=device, verbose=False)
    sub = finetune.class_subset(ds, [7, 3])
    assert set(sub.y_train.tolist()) == {0, 1} and sub.classes == ["7", "3"]
    assert torch.equal(sub.x_train[sub.y_train == 0], ds.x_train[ds.y_train == 7])
    assert sub.x_train.device == ds.x_train.device


@pytest.mark.parametrize("strategy", finetune.STRATEGIES)
def test_strategies_train_what_they_say(strategy):
    source = _net()
    model, opt = finetune.transfer(source, strategy, num_classes=3, lr=0.1, small_lr_factor=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 3, (16,))
    model.train()
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    heads = {n for n in before if "head" in n}
    if strategy == "linear probe":
        assert changed == heads
        assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers()), "BN statistics must stay frozen"
    elif strategy == "fine-tune top":
        assert heads < changed and not any(n.startswith("features.0") for n in changed)
    else:
        assert changed == set(before)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == ([0.1] if strategy in ("linear probe", "from scratch") else [pytest.approx(0.01), 0.1])
    assert source.head[-1].out_features == 5, "the source model must not be modified"


def test_pretrain_source_learns():
    ds = finetune.class_subset(data.load_dataset("digits", device="cpu", verbose=False), range(5))
    model, hist = finetune.pretrain_source(ds, epochs=3, widths=(8, 16, 16), batch_size=64)
    assert hist.last("val_acc") > 0.6


def test_unavailable_torchvision_weights_fail_in_one_line(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(finetune.PretrainedWeightsUnavailable) as info:
        finetune.pretrained_torchvision("resnet18")
    message = str(info.value)
    assert "\n" not in message and "pretrain_source" in message and "resnet18" in message
    with pytest.raises(ValueError):  # an unknown name is the user's mistake, not a missing download
        finetune.pretrained_torchvision("no_such_net")


def test_fine_tune_bottom_trains_the_first_stage_and_the_head_only():
    source = _net()
    model, opt = finetune.transfer(source, "fine-tune bottom", num_classes=3, lr=0.1, small_lr_factor=0.1)
    assert finetune.bottom_prefixes(model) == ["features.0", "features.1"]
    assert finetune.trainable(model) == ["features.0.weight", "features.1.weight", "features.1.bias",
                                         "head.2.weight", "head.2.bias"]
    assert sorted({g["lr"] for g in opt.param_groups}) == [pytest.approx(0.01), 0.1]
    with pytest.raises(ValueError, match="fine-tune bottom"):
        finetune.transfer(source, "fine-tune middle", num_classes=3)


def _warm(net, shape, seed=0):
    """Give the BN layers running statistics that differ from the batch statistics of any test input."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, *shape, generator=g) * 2 + 1)
    return net


def test_features_at_is_the_prefix_of_features_in_eval_mode(device):
    net = _warm(_net(), (1, 12, 12)).to(device)
    x = torch.randn(5, 1, 12, 12, device=device)
    assert finetune.stage_ends(net) == [4, 8, 12]
    torch.testing.assert_close(finetune.features_at(net, x, 0), x.flatten(1))
    for layer in finetune.stage_ends(net):
        net.train()
        got = finetune.features_at(net, x, layer)
        assert net.training, "the model's mode must be restored"
        net.eval()
        with torch.no_grad():
            expected = net.features[:layer](x).flatten(1)
        torch.testing.assert_close(got, expected)
        assert got.device == x.device and not got.requires_grad
    net.eval()
    torch.testing.assert_close(finetune.features_at(net, x, len(net.features)), net.features(x).flatten(1).detach())
    assert not net.training
    for bad in (-1, len(net.features) + 1):
        with pytest.raises(ValueError):
            finetune.features_at(net, x, bad)


def test_probe_accuracy_on_top_features_is_the_linear_probe_strategy():
    # the same head, optimizer and data order as transfer(..., "linear probe"): the same test accuracy
    source = _warm(_net(), (1, 12, 12))
    ds = finetune.class_subset(data.load_dataset("digits", device="cpu", verbose=False), range(3))
    top = lambda x: finetune.top_features(source, x)
    source.train()
    torch.testing.assert_close(top(ds.x_test), source.eval().head[:-1](source.features(ds.x_test)).detach())
    acc, n = finetune.probe_accuracy(top(ds.x_train), ds.y_train, top(ds.x_test), ds.y_test, 3, epochs=2, batch_size=32)
    torch.manual_seed(0)
    model, opt = finetune.transfer(source, "linear probe", 3, lr=0.05)
    loader = data.DeviceLoader(ds.x_train, ds.y_train, 32, generator=torch.Generator().manual_seed(0))
    from course_lib import train
    train.fit(model, loader, epochs=2, optimizer=opt, progress=False)
    assert acc == pytest.approx(train.evaluate(model, ds.x_test, ds.y_test)[1], abs=2 / len(ds.y_test))
    assert n == 8 * 3 + 3


def test_recompute_bn_statistics_uses_the_final_weights_and_spares_frozen_bn():
    net = _warm(_net(), (1, 12, 12))
    x = torch.randn(64, 1, 12, 12) * 3 - 1
    finetune.recompute_bn_statistics(net, [(x[:32], None), (x[32:], None)])
    with torch.no_grad():
        first = net.features[0](x)
    torch.testing.assert_close(net.features[1].running_mean, first.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    probe, _ = finetune.transfer(_warm(_net(), (1, 12, 12)), "linear probe", 3)
    before = {n: b.clone() for n, b in probe.named_buffers()}
    finetune.recompute_bn_statistics(probe, [x])
    assert all(torch.equal(b, before[n]) for n, b in probe.named_buffers())
