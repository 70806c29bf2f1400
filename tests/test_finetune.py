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
