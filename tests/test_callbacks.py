"""course_lib.callbacks.EarlyStopping: the rule, and its behaviour inside course_lib.train.fit."""
import pytest
import torch

from course_lib import callbacks, data, train


def _keras_like(values, patience, min_delta):
    """An independent statement of the rule: stop when the best value is `patience` epochs old."""
    for stop in range(len(values)):
        seen = values[:stop + 1]
        best, best_i = seen[0], 0
        for i, v in enumerate(seen[1:], 1):
            if v < best - min_delta:
                best, best_i = v, i
        if stop - best_i >= patience:
            return best_i, stop
    best, best_i = values[0], 0
    for i, v in enumerate(values[1:], 1):
        if v < best - min_delta:
            best, best_i = v, i
    return best_i, None


def test_early_stopping_point_on_hand_made_sequences():
    assert callbacks.early_stopping_point([5, 4, 3, 3.5, 3.2, 3.1], patience=3) == (2, 5)
    assert callbacks.early_stopping_point([5, 4, 3, 3.5, 2.9, 3.1], patience=3) == (4, None)
    assert callbacks.early_stopping_point([5, 4.95, 4.9, 4.85], patience=2, min_delta=0.1) == (0, 2)
    assert callbacks.early_stopping_point([1, 2, 3, 4], patience=1, mode="max") == (3, None)
    with pytest.raises(ValueError):
        callbacks.early_stopping_point([1.0], patience=0)


def test_early_stopping_point_on_random_sequences():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(1, 25, (1,), generator=g))
        values = (torch.rand(n, generator=g) - torch.linspace(0, 0.5, n)).tolist()
        patience = int(torch.randint(1, 5, (1,), generator=g))
        min_delta = float(torch.rand(1, generator=g)) * 0.1
        assert callbacks.early_stopping_point(values, patience, min_delta) == _keras_like(values, patience, min_delta)


def _overfitting_run(device, callbacks_, epochs=40):
    ds = data.load_dataset("digits", device=device)
    g = torch.Generator().manual_seed(0)
    x, y = ds.x_train[:60].flatten(1), ds.y_train[:60]
    noisy = torch.where(torch.rand(60, generator=g).to(device) < 0.4, torch.randint(0, 10, (60,), generator=g).to(device), y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(device)
    loader = data.DeviceLoader(x, noisy, 20, generator=torch.Generator().manual_seed(0))
    hist = train.fit(model, loader, epochs=epochs, optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
                     val_data=(ds.x_test.flatten(1), ds.y_test), callbacks=callbacks_, progress=False)
    return model, hist, (ds.x_test.flatten(1), ds.y_test)


def test_early_stopping_in_fit_stops_restores_and_marks(device):
    stopper = callbacks.EarlyStopping(patience=3, min_delta=1e-3)
    model, hist, val = _overfitting_run(device, [stopper])
    frame = hist.to_frame()
    best_i, stop_i = callbacks.early_stopping_point(frame["val_loss"].tolist(), 3, 1e-3)
    assert stop_i is not None, "the run was meant to overfit"
    assert len(frame) == stop_i + 1 < 40, "fit must end at the epoch the rule says"
    assert stopper.best_epoch == best_i + 1 and stopper.stopped_epoch == stop_i + 1
    assert hist.events == [{"event": "early_stop", "epoch": stop_i + 1, "best_epoch": best_i + 1,
                            "best": frame["val_loss"][best_i], "monitor": "val_loss", "restored": True}]
    # the model holds the best epoch's weights: its validation loss is the best one recorded
    assert train.evaluate(model, *val)[0] == pytest.approx(frame["val_loss"][best_i], rel=1e-5)
    assert train.evaluate(model, *val)[0] < frame["val_loss"].iloc[-1]
    assert all(t.device == device for t in stopper.best_state.values())


def test_early_stopping_without_restore_and_monitor_errors(device):
    stopper = callbacks.EarlyStopping(patience=2, restore_best=False, monitor="val_acc", mode="max")
    model, hist, val = _overfitting_run(device, [stopper], epochs=60)
    assert hist.events and hist.events[0]["restored"] is False
    assert train.evaluate(model, *val)[1] == pytest.approx(hist.last("val_acc"))
    with pytest.raises(ValueError, match="val_loss"):
        callbacks.EarlyStopping().on_epoch_end(type("S", (), {"history": train.History()})())
    with pytest.raises(ValueError):
        callbacks.EarlyStopping(patience=0)
    with pytest.raises(ValueError):
        callbacks.EarlyStopping(mode="sideways")


def test_stop_after_runs_exactly_that_many_steps(device):
    ds = data.load_dataset("digits", device=device)
    x, y = ds.x_train[:100].flatten(1), ds.y_train[:100]
    model = torch.nn.Linear(64, 10).to(device)
    loader = data.DeviceLoader(x, y, 16, generator=torch.Generator().manual_seed(0))  # 7 steps an epoch
    hist = train.fit(model, loader, epochs=5, lr=0.1, callbacks=[callbacks.StopAfter(10)], progress=False)
    assert len(hist.to_frame("step")) == 10
    with pytest.raises(ValueError):
        callbacks.StopAfter(0)
