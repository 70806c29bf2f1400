"""The course's training loop and its history.

``fit`` trains a model on mini-batches and returns a :class:`History`: one record per step and one
per epoch, with train/validation loss and accuracy and the learning rate. It shows a tqdm bar, which
stays silent under nbgrader's autograde (stderr output would cost a test cell its points).

Per-step metrics are kept on the device and copied to the host once per epoch, so the step loop
never waits for the GPU (no ``.item()`` per step). That copy is also where a non-finite loss is seen:
the run then ends as *diverged*, with the epoch named (``History.diverged``).

The step is lean: the default optimizer is fused SGD where the device supports it (else foreach), a
``torch.optim`` optimizer that leaves ``foreach`` unset is switched to its foreach implementation (one
multi-tensor op per update term instead of a loop of ops per parameter), and the step's accuracy is
kept as a count of correct predictions (:func:`lean_optimizer_options`, ``benchmarks/step_overhead.py``).
"""
from __future__ import annotations

import math
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

    @property
    def diverged(self) -> int | None:
        """The epoch at whose end the training loss was first seen non-finite (training stopped), else None."""
        return next((e["epoch"] for e in self.events if e["event"] == "diverged"), None)


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


def lean_optimizer_options(device) -> dict:
    """``{"fused": True}`` where ``torch.optim``'s fused kernels support ``device`` (one kernel updates every
    parameter), else ``{"foreach": True}`` (one multi-tensor op per update term)."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices
    return {"fused": True} if torch.device(device).type in _get_fused_kernels_supported_devices() else {"foreach": True}


def _lean(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Switch a ``torch.optim`` optimizer whose groups leave ``foreach`` unset (``None``) and are not fused
    to its foreach implementation: the same update rule, with one multi-tensor op per term instead of
    one op per parameter per term. Optimizers without a ``foreach`` option are left alone."""
    for group in optimizer.param_groups:
        if "foreach" in group and group["foreach"] is None and not group.get("fused") \
                and not group.get("differentiable"):
            group["foreach"] = True
    return optimizer


def _step_scheduler(scheduler, val_loss: float | None) -> None:
    """Step a torch scheduler; ``ReduceLROnPlateau`` is given the validation loss."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_loss is None:
            raise ValueError("ReduceLROnPlateau needs val_data to watch the validation loss")
        scheduler.step(val_loss)
    else:
        scheduler.step()


def _train_step(model, optimizer, loss_fn, xb, yb):
    """One optimisation step; returns the batch's loss and its count of correct argmaxes as device tensors."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(xb)
    loss = loss_fn(logits, yb)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return loss.detach(), (logits.argmax(1) == yb).sum()


def fit(model: torch.nn.Module, train_loader: Iterable, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 0.1,
        loss_fn: Callable = F.cross_entropy, val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
        scheduler=None, scheduler_interval: str = "epoch", callbacks: Iterable = (),
        progress: bool = True, desc: str = "training", stop_on_divergence: bool = True) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` (an iterable of ``(x, y)`` batches).

    - ``optimizer`` defaults to ``torch.optim.SGD(model.parameters(), lr)``, fused where the device allows
      (:func:`lean_optimizer_options`); a ``torch.optim`` optimizer with ``foreach`` unset runs foreach.
    - ``val_data = (x_val, y_val)`` is evaluated after every epoch.
    - ``scheduler`` is any ``torch.optim.lr_scheduler``; it steps every ``"epoch"`` or every ``"step"``.
    - ``callbacks`` are objects with optional ``on_step_end(state)`` / ``on_epoch_end(state)``
      methods; setting ``state.stop = True`` ends training after the current step or epoch.
    - With ``stop_on_divergence``, an epoch whose training losses are not all finite ends training: the
      history is marked ``"diverged"`` with the epoch and the first bad step (``History.diverged``).
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if optimizer is None:
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=lr, **lean_optimizer_options(params[0].device))
    optimizer = _lean(optimizer)
    history = History()
    state = SimpleNamespace(model=model, optimizer=optimizer, history=history, epoch=0, step=0, stop=False)
    callbacks = list(callbacks)
    total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
    bar = progress_bar(total=total, desc=desc, enabled=progress)
    model.train()
    for epoch in range(1, epochs + 1):
        state.epoch, started, losses, corrects, sizes, lrs = epoch, time.perf_counter(), [], [], [], []
        for xb, yb in train_loader:
            lrs.append(_current_lr(optimizer))
            loss, correct = _train_step(model, optimizer, loss_fn, xb, yb)
            losses.append(loss)
            corrects.append(correct)
            sizes.append(len(yb))
            state.step += 1
            if scheduler is not None and scheduler_interval == "step":
                _step_scheduler(scheduler, None)
            for cb in callbacks:
                getattr(cb, "on_step_end", lambda s: None)(state)
            bar.update(1)
            if state.stop:
                break
        _record_epoch(state, losses, corrects, sizes, lrs, val_data, loss_fn, time.perf_counter() - started,
                      stop_on_divergence)
        bar.set_postfix(loss=f"{history.last('train_loss'):.3f}", refresh=False)
        if scheduler is not None and scheduler_interval == "epoch":
            _step_scheduler(scheduler, history.last("val_loss"))
        for cb in callbacks:
            getattr(cb, "on_epoch_end", lambda s: None)(state)
        if state.stop:
            break
    bar.close()
    return history


def _record_epoch(state, losses, corrects, sizes, lrs, val_data, loss_fn, seconds: float,
                  stop_on_divergence: bool = True) -> None:
    """Copy the epoch's step metrics to the host in one transfer and append the records; a non-finite
    loss marks the history ``"diverged"`` (epoch and first bad step) and, with ``stop_on_divergence``,
    sets ``state.stop``."""
    if not losses:
        return
    loss_list = torch.stack(losses).float().cpu().tolist()
    acc_list = [c / n for c, n in zip(torch.stack(corrects).cpu().tolist(), sizes)]
    first = state.step - len(loss_list) + 1
    bad = next((first + i for i, v in enumerate(loss_list) if not math.isfinite(v)), None)
    if bad is not None and state.history.diverged is None:
        state.history.mark("diverged", epoch=state.epoch, step=bad)
        state.stop = state.stop or stop_on_divergence
    for i, (loss, acc, lr) in enumerate(zip(loss_list, acc_list, lrs)):
        state.history.steps.append({"step": first + i, "epoch": state.epoch, "train_loss": loss,
                                    "train_acc": acc, "lr": lr})
    record = {"epoch": state.epoch, "step": state.step,
              "train_loss": sum(loss_list) / len(loss_list), "train_acc": sum(acc_list) / len(acc_list),
              "val_loss": None, "val_acc": None, "lr": lrs[-1], "seconds": seconds}
    if val_data is not None:
        record["val_loss"], record["val_acc"] = evaluate(state.model, *val_data, loss_fn=loss_fn)
    state.history.epochs.append(record)
