"""Fine-tuning a pretrained network (chapter 04; seeds 000 and 003, "fine-tune on pre-trained models").

- ``freeze`` / ``unfreeze`` switch ``requires_grad`` by parameter name or dotted prefix.
- ``param_groups`` gives ``torch.optim`` one group per prefix, each with its own learning rate
  (a small one for pretrained layers, a larger one for a new head).
- Weights cannot be downloaded on every machine, so ``pretrain_source`` trains the course's own source
  model (for example on Fashion-MNIST classes 0-4) and ``class_subset`` cuts the target tasks.
  ``pretrained_torchvision`` loads torchvision's weights when they can be had, and otherwise fails
  with one line that names this offline alternative.
- ``transfer`` builds one of the four strategies of the seeds' table on top of a source model.

The seeds' table (seed 000; seed 003 says the same except for the last case):

=====================  ===========================================  ==========================================
                       similar domain                               different domain
=====================  ===========================================  ==========================================
small target data      linear classifier on the top features        the hard case: a linear classifier on
                                                                    *earlier* features (seed 000); do not use
                                                                    the pretrained network (seed 003)
large target data      fine-tune the top layers, small lr           fine-tune many / all layers, small lr
=====================  ===========================================  ==========================================
"""
from __future__ import annotations

import contextlib
import copy
import io

import torch
from torch import nn

from . import data as course_data
from . import models, train

STRATEGIES = ("linear probe", "fine-tune top", "fine-tune all", "from scratch")


class PretrainedWeightsUnavailable(RuntimeError):
    """torchvision's pretrained weights were asked for and cannot be had (no network, no cached file)."""


def _matches(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or lies under it (``"features.0"`` covers ``"features.0.weight"``, not ``"features.01.weight"``)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _select(model: nn.Module, prefixes) -> list[tuple[str, nn.Parameter]]:
    """The named parameters under any of ``prefixes``; ``ValueError`` for a prefix that matches nothing."""
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    named = list(model.named_parameters())
    for prefix in prefixes:
        if not any(_matches(n, prefix) for n, _ in named):
            raise ValueError(f"no parameter of the model is named {prefix!r} or starts with {prefix + '.'!r}; "
                             f"names are e.g. {', '.join(n for n, _ in named[:4])}")
    return [(n, p) for n, p in named if any(_matches(n, prefix) for prefix in prefixes)]


def freeze(model: nn.Module, prefixes=("",)) -> list[str]:
    """Set ``requires_grad = False`` on every parameter named by or under one of ``prefixes``
    (default: all). Returns the names frozen."""
    chosen = _select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(False)
    return [n for n, _ in chosen]


def unfreeze(model: nn.Module, prefixes=("",)) -> list[str]:
    """Set ``requires_grad = True`` on the parameters under ``prefixes`` (default: all); returns their names."""
    chosen = _select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(True)
    return [n for n, _ in chosen]


def trainable(model: nn.Module) -> list[str]:
    """Names of the parameters that will be trained (``requires_grad``)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def param_groups(model: nn.Module, lrs: dict[str, float], default_lr: float | None = None) -> list[dict]:
    """Parameter groups for ``torch.optim``: one per prefix of ``lrs`` with its learning rate.

    Each trainable parameter goes to the group of the *longest* prefix it lies under; those under no
    prefix go to a last group with ``default_lr`` (left out when ``default_lr`` is ``None``). Frozen
    parameters are left out, and so are empty groups. Groups carry a ``"name"`` key (torch keeps it).
    """
    ordered = sorted(lrs, key=len, reverse=True)
    buckets: dict[str, list] = {prefix: [] for prefix in lrs}
    rest = []
    _select(model, list(lrs))  # every prefix must name something
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = next((prefix for prefix in ordered if _matches(name, prefix)), None)
        (buckets[owner] if owner is not None else rest).append(p)
    groups = [{"name": prefix, "params": ps, "lr": lrs[prefix]} for prefix, ps in buckets.items() if ps]
    if rest and default_lr is not None:
        groups.append({"name": "default", "params": rest, "lr": default_lr})
    return groups


# ------------------------------------------------------------------------------ source and targets

def class_subset(ds: course_data.Dataset, classes, n_train: int | None = None, n_test: int | None = None,
                 generator: torch.Generator | None = None) -> course_data.Dataset:
    """The samples of ``classes`` only, relabelled ``0 .. len(classes)-1`` in the given order, then an
    optional random subset of ``n_train`` / ``n_test`` of them."""
    classes = list(classes)
    lookup = torch.full((int(max(ds.y_train.max(), ds.y_test.max())) + 1,), -1, dtype=torch.long, device=ds.device)
    lookup[torch.tensor(classes, device=ds.device)] = torch.arange(len(classes), device=ds.device)
    keep_tr, keep_te = lookup[ds.y_train] >= 0, lookup[ds.y_test] >= 0
    out = course_data.Dataset(ds.name, ds.x_train[keep_tr], lookup[ds.y_train[keep_tr]], ds.x_test[keep_te],
                              lookup[ds.y_test[keep_te]], [ds.classes[c] for c in classes])
    return out.subset(n_train, n_test, generator=generator) if (n_train or n_test) else out


def source_model(input_shape, num_classes: int, widths=(32, 64, 64)) -> models.SmallCNN:
    """The chapter's source network: a :class:`~course_lib.models.SmallCNN` with BN, one 3x3 conv per stage."""
    return models.SmallCNN(input_shape[0], num_classes, widths=widths, depth=1, norm="batch")


def pretrain_source(ds: course_data.Dataset, *, epochs: int = 3, batch_size: int = 128, lr: float = 0.05,
                    widths=(32, 64, 64), seed: int = 0, progress: bool = False) -> tuple[nn.Module, train.History]:
    """Train :func:`source_model` on ``ds`` from scratch (SGD, momentum 0.9): the offline stand-in for a
    downloaded pretrained network. Returns the model and its history."""
    torch.manual_seed(seed)
    model = source_model(ds.input_shape, ds.num_classes, widths).to(ds.device)
    loader = course_data.DeviceLoader(ds.x_train, ds.y_train, batch_size, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    hist = train.fit(model, loader, epochs=epochs, optimizer=opt, val_data=(ds.x_test, ds.y_test),
                     progress=progress, desc="pretraining the source model")
    return model, hist


def replace_head(model: models.SmallCNN, num_classes: int) -> models.SmallCNN:
    """A copy of ``model`` whose last linear layer is new, with ``num_classes`` outputs."""
    model = copy.deepcopy(model)
    old = model.head[-1]
    model.head[-1] = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    return model


def top_prefixes(model: models.SmallCNN, n_stages: int = 1) -> list[str]:
    """The names of the last ``n_stages`` conv stages of a SmallCNN's ``features``, plus ``"head"``."""
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    first = convs[-n_stages] if n_stages else len(model.features)
    return [f"features.{i}" for i in range(first, len(model.features))
            if any(True for _ in model.features[i].parameters())] + ["head"]


def transfer(source: models.SmallCNN, strategy: str, num_classes: int, *, lr: float = 0.05,
             small_lr_factor: float = 0.1, momentum: float = 0.9) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and its optimizer for one of :data:`STRATEGIES`, on a target with ``num_classes`` classes.

    - ``"linear probe"``: everything frozen (BN statistics too, the model stays in eval mode under
      :class:`FrozenBN`), a new linear head trained at ``lr``;
    - ``"fine-tune top"``: the last conv stage and a new head train, the stage at ``lr · small_lr_factor``;
    - ``"fine-tune all"``: everything trains, pretrained layers at ``lr · small_lr_factor``, new head at ``lr``;
    - ``"from scratch"``: a fresh network with the source's architecture, everything at ``lr``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    small = lr * small_lr_factor
    if strategy == "from scratch":
        widths = tuple(m.out_channels for m in source.features if isinstance(m, nn.Conv2d))
        model = models.SmallCNN(source.features[0].in_channels, num_classes, widths=widths, norm="batch")
        model = model.to(source.head[-1].weight.device)
        return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model = replace_head(source, num_classes)
    head = "head"
    if strategy == "linear probe":
        freeze(model)
        unfreeze(model, head)
        model = FrozenBN(model)
        groups = param_groups(model, {"inner.head": lr})
    elif strategy == "fine-tune top":
        freeze(model)
        top = top_prefixes(model, 1)
        unfreeze(model, top)
        groups = param_groups(model, {head: lr, **{p: small for p in top[:-1]}})
    else:
        groups = param_groups(model, {head: lr}, default_lr=small)
    return model, torch.optim.SGD(groups, lr=lr, momentum=momentum)


class FrozenBN(nn.Module):
    """Wraps a model whose batch-norm layers must keep their pretrained statistics: ``train()`` puts
    every BN layer back in eval mode, so a frozen feature extractor stays exactly what it was."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.inner.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x):
        return self.inner(x)


# ------------------------------------------------------------------------ torchvision's weights

def pretrained_torchvision(name: str = "resnet18", weights: str = "DEFAULT") -> nn.Module:
    """torchvision's ``name`` with pretrained ``weights``, when they can be had (network or cache).

    Otherwise raises :class:`PretrainedWeightsUnavailable` with a one-line message that names the offline
    alternative, :func:`pretrain_source`. torchvision's download messages are kept off the output.
    """
    import torchvision

    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            return torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad download a RuntimeError
        reason = " ".join(str(exc).split())[:120]
        raise PretrainedWeightsUnavailable(
            f"torchvision's pretrained weights {name}/{weights} cannot be had on this machine ({type(exc).__name__}: "
            f"{reason}); offline alternative: course_lib.finetune.pretrain_source(dataset) trains a source model here"
        ) from None
