import math

import pandas as pd
import pytest
import torch
from torch import nn

from course_lib import data, diagnostics, models, train


def test_mlp_structure_and_options():
    net = models.MLP(784, 10, depth=3, width=32, activation="tanh", norm="batch", init="xavier_normal")
    assert len(net.hidden_layers) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 3
    assert all(m.bias is None for m in net.hidden_layers), "a Linear before BatchNorm needs no bias"
    assert net(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    with pytest.raises(ValueError, match="unknown activation"):
        models.MLP(4, 2, activation="swishy")
    with pytest.raises(ValueError, match="norm"):
        models.MLP(4, 2, norm="layer")


@pytest.mark.parametrize("size", [8, 28, 32])
def test_small_cnn_any_input_size(size, device):
    net = models.SmallCNN(3, 10, widths=(8, 16), depth=2).to(device)
    assert net(torch.randn(4, 3, size, size, device=device)).shape == (4, 10)
    assert models.build_model("cnn", (3, size, size), 10, widths=(8,))(torch.randn(2, 3, size, size)).shape == (2, 10)


def _toy(device, n=512):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return x.to(device), y.to(device)


def test_fit_learns_and_records_a_tidy_history(device):
    x, y = _toy(device)
    torch.manual_seed(0)
    net = models.MLP(2, 2, depth=2, width=32).to(device)
    loader = data.DeviceLoader(x, y, 64, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    hist = train.fit(net, loader, epochs=10, optimizer=opt, scheduler=sched, val_data=(x, y), progress=False)
    steps, epochs = hist.to_frame("step"), hist.to_frame("epoch")
    assert isinstance(steps, pd.DataFrame) and len(steps) == 10 * len(loader) and len(epochs) == 10
    assert list(steps["step"]) == list(range(1, 10 * len(loader) + 1))
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(epochs.columns)
    assert epochs["lr"].tolist()[:6] == pytest.approx([0.1] * 5 + [0.05])
    assert epochs["val_acc"].iloc[-1] > 0.9 > epochs["val_acc"].iloc[0] - 0.3
    assert epochs["train_loss"].iloc[-1] < epochs["train_loss"].iloc[0]


def test_fit_callbacks_can_stop_and_plateau_scheduler_sees_val_loss():
    x, y = _toy("cpu")
    net = models.MLP(2, 2, depth=1, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    class StopAtThree:
        def on_epoch_end(self, state):
            state.stop = state.epoch == 3
            if state.stop:
                state.history.mark("stopped", epoch=state.epoch)

    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    hist = train.fit(net, data.DeviceLoader(x, y, 128), epochs=10, optimizer=opt, scheduler=plateau,
                     val_data=(x, y), callbacks=[StopAtThree()], progress=False)
    assert len(hist.epochs) == 3 and hist.events == [{"event": "stopped", "epoch": 3}]
    with pytest.raises(ValueError, match="val_data"):
        train.fit(net, data.DeviceLoader(x, y, 128), epochs=1, optimizer=opt, scheduler=plateau, progress=False)


def test_fit_is_reproducible_with_seeds():
    x, y = _toy("cpu")
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        net = models.MLP(2, 2, depth=2, width=16)
        h = train.fit(net, data.DeviceLoader(x, y, 32, generator=torch.Generator().manual_seed(3)), epochs=2,
                      progress=False)
        runs.append(h.to_frame("step")["train_loss"].tolist())
    assert runs[0] == runs[1]


def test_progress_bar_is_silent_under_nbgrader(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    x, y = _toy("cpu", 64)
    train.fit(models.MLP(2, 2, depth=1, width=4), data.DeviceLoader(x, y, 16), epochs=1, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_evaluate_restores_training_mode():
    x, y = _toy("cpu", 100)
    net = models.MLP(2, 2, depth=1, width=4, norm="batch")
    loss, acc = train.evaluate(net, x, y, batch_size=7)
    assert net.training and 0 <= acc <= 1 and math.isfinite(loss)
    net.eval()
    assert torch.nn.functional.cross_entropy(net(x), y).item() == pytest.approx(loss, rel=1e-5)


def test_diagnostics_activations_and_gradients(device):
    torch.manual_seed(0)
    net = models.MLP(20, 3, depth=4, width=16, activation="tanh").to(device)
    x, y = torch.randn(32, 20, device=device), torch.randint(0, 3, (32,), device=device)
    acts = diagnostics.activations(net, x)
    assert len(acts) == 4 and all(a.shape == (32, 16) for a in acts)
    assert not any(m._forward_hooks for m in net.modules())
    norms = diagnostics.gradient_norms(net, x, y)
    assert len(norms) == 5 and all(n > 0 for n in norms)
    assert all(p.grad is None for p in net.parameters()), ".grad must be left alone"
    stats = diagnostics.layer_statistics(net, x, y)
    assert list(stats.columns) == ["layer", "act_mean", "act_std", "grad_norm"] and len(stats) == 4


def test_zero_init_gives_no_hidden_gradient_and_symmetric_units():
    net = models.MLP(10, 3, depth=2, width=8, activation="tanh", init="zeros")
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    assert diagnostics.gradient_norms(net, x, y)[:2] == [0.0, 0.0]
    assert diagnostics.distinct_units(net.hidden_layers[0].weight) == 1
    w = torch.randn(6, 3)
    w[4] = w[2]
    assert diagnostics.distinct_units(w) == 5


def test_device_fixture_compares_equal_to_tensor_devices(device):
    """The fixture is what tensors report (``cuda:0``), so ``t.device == device`` holds on every device."""
    assert torch.empty(0, device=device).device == device and torch.zeros(2).to(device).device == device


def test_fit_stops_a_diverged_run_and_names_the_epoch():
    """A rate of 1e6: the loss overflows in the first epoch; fit stops there and marks it."""
    x, y = _toy("cpu")
    torch.manual_seed(0)
    net = models.MLP(2, 2, depth=2, width=16)
    hist = train.fit(net, data.DeviceLoader(x, y, 64), epochs=5, lr=1e6, progress=False)
    assert hist.diverged == 1 and len(hist.epochs) == 1
    event = hist.events[0]
    assert event["event"] == "diverged" and event["epoch"] == 1 and 1 <= event["step"] <= len(hist.steps)
    assert not math.isfinite(hist.steps[event["step"] - 1]["train_loss"])
    assert all(math.isfinite(s["train_loss"]) for s in hist.steps[:event["step"] - 1])
    kept = train.fit(models.MLP(2, 2, depth=2, width=16), data.DeviceLoader(x, y, 64), epochs=3, lr=1e6,
                     progress=False, stop_on_divergence=False)
    assert kept.diverged == 1 and len(kept.epochs) == 3
    assert train.fit(models.MLP(2, 2, depth=1, width=4), data.DeviceLoader(x, y, 64), epochs=1,
                     progress=False).diverged is None


def test_fit_uses_a_lean_optimizer_with_the_same_update(device):
    """The default SGD is fused where supported; a torch.optim optimizer with foreach unset runs foreach,
    and trains exactly as the for-loop implementation does."""
    x, y = _toy(device)
    assert train.lean_optimizer_options(device) == {"fused": True}
    runs = []
    for foreach in (None, False):
        torch.manual_seed(2)
        net = models.MLP(2, 2, depth=2, width=16).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, foreach=foreach)
        train.fit(net, data.DeviceLoader(x, y, 64, generator=torch.Generator(device=device).manual_seed(0)), epochs=2,
                  optimizer=opt, progress=False)
        assert opt.param_groups[0]["foreach"] is (foreach is None)
        runs.append([p.detach().clone() for p in net.parameters()])
    for p, q in zip(*runs):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
