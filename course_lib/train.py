"""The course's training loop and its history.

``fit`` trains a model on mini-batches and returns a :class:`History`: one record per step and one
per epoch, with train/validation loss and accuracy and the learning rate. It shows a tqdm bar, which
stays silent under nbgrader's autograde (stderr output would cost a test cell its points).

Per-step metrics are kept on the device and copied to the host once per epoch, so the step loop
never waits for the GPU (no ``.item()`` per step).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Iterable

import pandas as pd
import torch
import torch.nn.functional as F

from .progress import progress_bar


@dataclass
class History:
    """What happened during training: ``steps`` and ``epochs`` are lists of flat dicts (tidy records)."""

    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def to_frame(self, level: str = "epoch") -> pd.DataFrame:
        """The records of ``level`` (``"step"`` or ``"epoch"``) as a pandas DataFrame."""
        if level not in ("step", "epoch"):
            raise ValueError(f"level must be 'step' or 'epoch', got {level!r}")
        return pd.DataFrame(self.steps if level == "step" else self.epochs)

    def mark(self, event: str, **info) -> None:
        """Record an event (for example where early stopping stopped)."""
        self.events.append({"event": event, **info})

    def last(self, key: str):
        """The latest epoch's value of ``key``."""
        return self.epochs[-1][key] if self.epochs else None


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048,
             loss_fn: Callable = F.cross_entropy) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss += loss_fn(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = max(len(x), 1)
    return float(loss) / n, float(correct) / n


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _step_scheduler(scheduler, val_loss: float | None) -> None:
    """Step a torch scheduler; ``ReduceLROnPlateau`` is given the validation loss."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_loss is None:
            raise ValueError("ReduceLROnPlateau needs val_data to watch the validation loss")
        scheduler.step(val_loss)
    else:
        scheduler.step()


def _train_step(model, optimizer, loss_fn, xb, yb):
    """One optimisation step; returns the batch's loss and accuracy as device tensors."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(xb)
    loss = loss_fn(logits, yb)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(1) == yb).float().mean()


def fit(model: torch.nn.Module, train_loader: Iterable, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 0.1,
        loss_fn: Callable = F.cross_entropy, val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
        scheduler=None, scheduler_interval: str = "epoch", callbacks: Iterable = (),
        progress: bool = True, desc: str = "training") -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` (an iterable of ``(x, y)`` batches).

    - ``optimizer`` defaults to ``torch.optim.SGD(model.parameters(), lr)``.
    - ``val_data = (x_val, y_val)`` is evaluated after every epoch.
    - ``scheduler`` is any ``torch.optim.lr_scheduler``; it steps every ``"epoch"`` or every ``"step"``.
    - ``callbacks`` are objects with optional ``on_step_end(state)`` / ``on_epoch_end(state)``
      methods; setting ``state.stop = True`` ends training after the current step or epoch.
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    history = History()
    state = SimpleNamespace(model=model, optimizer=optimizer, history=history, epoch=0, step=0, stop=False)
    callbacks = list(callbacks)
    total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
    bar = progress_bar(total=total, desc=desc, enabled=progress)
    model.train()
    for epoch in range(1, epochs + 1):
        state.epoch, started, losses, accs, lrs = epoch, time.perf_counter(), [], [], []
        for xb, yb in train_loader:
            lrs.append(_current_lr(optimizer))
            loss, acc = _train_step(model, optimizer, loss_fn, xb, yb)
            losses.append(loss)
            accs.append(acc)
            state.step += 1
            if scheduler is not None and scheduler_interval == "step":
                _step_scheduler(scheduler, None)
            for cb in callbacks:
                getattr(cb, "on_step_end", lambda s: None)(state)
            bar.update(1)
            if state.stop:
                break
        _record_epoch(state, losses, accs, lrs, val_data, loss_fn, time.perf_counter() - started)
        bar.set_postfix(loss=f"{history.last('train_loss'):.3f}", refresh=False)
        if scheduler is not None and scheduler_interval == "epoch":
            _step_scheduler(scheduler, history.last("val_loss"))
        for cb in callbacks:
            getattr(cb, "on_epoch_end", lambda s: None)(state)
        if state.stop:
            break
    bar.close()
    return history


def _record_epoch(state, losses, accs, lrs, val_data, loss_fn, seconds: float) -> None:
    """Copy the epoch's step metrics to the host in one transfer and append the records."""
    if not losses:
        return
    loss_list = torch.stack(losses).float().cpu().tolist()
    acc_list = torch.stack(accs).float().cpu().tolist()
    first = state.step - len(loss_list) + 1
    for i, (loss, acc, lr) in enumerate(zip(loss_list, acc_list, lrs)):
        state.history.steps.append({"step": first + i, "epoch": state.epoch, "train_loss": loss,
                                    "train_acc": acc, "lr": lr})
    record = {"epoch": state.epoch, "step": state.step,
              "train_loss": sum(loss_list) / len(loss_list), "train_acc": sum(acc_list) / len(acc_list),
              "val_loss": None, "val_acc": None, "lr": lrs[-1], "seconds": seconds}
    if val_data is not None:
        record["val_loss"], record["val_acc"] = evaluate(state.model, *val_data, loss_fn=loss_fn)
    state.history.epochs.append(record)
