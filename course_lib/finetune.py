"""Fine-tuning a pretrained network (chapter 04; seeds 000 and 003, "fine-tune on pre-trained models").

- ``freeze`` / ``unfreeze`` switch ``requires_grad`` by parameter name or dotted prefix.
- ``param_groups`` gives ``torch.optim`` one group per prefix, each with its own learning rate
  (a small one for pretrained layers, a larger one for a new head).
- Weights cannot be downloaded on every machine, so ``pretrain_source`` trains the course's own source
  model (for example on Fashion-MNIST classes 0-4) and ``class_subset`` cuts the target tasks.
  ``pretrained_torchvision`` loads torchvision's weights when they can be had, and otherwise fails
  with one line that names this offline alternative.
- ``transfer`` builds one of the strategies of the seeds' table on top of a source model;
  ``features_at`` and ``probe_accuracy`` give seed 000's linear classifier on the features of an
  *earlier* layer; ``recompute_bn_statistics`` re-estimates batch norm's running statistics after a
  short training run.

The seeds' table. The two seeds agree on two cells and disagree on the other two:

=====================  ===========================================  ==========================================
                       similar domain                               different domain
=====================  ===========================================  ==========================================
small target data      a linear classifier on the top features      seed 000: a linear classifier (an SVM) on
                       (seed 003: "add a few small layers at the    the features of *earlier* layers;
                       end", the network's parameters unchanged)    seed 003: do not use the pretrained network
large target data      seed 000: fine-tune the *last* (top) layers  fine-tune many / all layers, small lr
                       with a small lr; seed 003: train the *first*
                       few layers with a very small lr
=====================  ===========================================  ==========================================

The large/similar cell is a contradiction, not a nuance. Seed 000: "若自己的数据集较大，可以使用一个较小的学习速率
对预训练模型的最后几个顶层进行调优" (with a larger dataset, fine-tune the last few top layers of the pretrained
model with a small learning rate). Seed 003: "我们需要用很小的学习率去训练网络一开始的几层就可以了，因为后面几层都
已经把特征高度抽象化了" (we only need to train the first few layers of the network with a very small learning
rate, because the later layers have already abstracted the features). Seed 000 is the usual advice (and
Wei's original); the strategies ``"fine-tune top"`` and ``"fine-tune bottom"`` measure both readings.
"""
from __future__ import annotations

import contextlib
import copy
import io

import torch
from torch import nn

from . import data as course_data
from . import models, train
from .release import reference

STRATEGIES = ("linear probe", "fine-tune top", "fine-tune all", "from scratch")
EXTRA_STRATEGIES = ("fine-tune bottom",)
"""Seed 003's reading of the large/similar cell: the *first* conv stage (small lr) and a new head train."""


class PretrainedWeightsUnavailable(RuntimeError):
    """torchvision's pretrained weights were asked for and cannot be had (no network, no cached file)."""


@reference("04_training", "freeze", "param_groups")
def _matches(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or lies under it (``"features.0"`` covers ``"features.0.weight"``, not ``"features.01.weight"``)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


@reference("04_training", "freeze")
def _select(model: nn.Module, prefixes) -> list[tuple[str, nn.Parameter]]:
    """The named parameters under any of ``prefixes``; ``ValueError`` for a prefix that matches nothing."""
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    named = list(model.named_parameters())
    for prefix in prefixes:
        if not any(_matches(n, prefix) for n, _ in named):
            raise ValueError(f"no parameter of the model is named {prefix!r} or starts with {prefix + '.'!r}; "
                             f"names are e.g. {', '.join(n for n, _ in named[:4])}")
    return [(n, p) for n, p in named if any(_matches(n, prefix) for prefix in prefixes)]


@reference("04_training", "freeze")
def freeze(model: nn.Module, prefixes=("",)) -> list[str]:
    """Set ``requires_grad = False`` on every parameter named by or under one of ``prefixes``
    (default: all). Returns the names frozen."""
    chosen = _select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(False)
    return [n for n, _ in chosen]


@reference("04_training", "freeze")
def unfreeze(model: nn.Module, prefixes=("",)) -> list[str]:
    """Set ``requires_grad = True`` on the parameters under ``prefixes`` (default: all); returns their names."""
    chosen = _select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(True)
    return [n for n, _ in chosen]


def trainable(model: nn.Module) -> list[str]:
    """Names of the parameters that will be trained (``requires_grad``)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


@reference("04_training", "param_groups")
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


def bottom_prefixes(model: models.SmallCNN, n_stages: int = 1) -> list[str]:
    """The names of the first ``n_stages`` conv stages of a SmallCNN's ``features`` (the modules with
    parameters before the next stage's convolution)."""
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    last = convs[n_stages] if n_stages < len(convs) else len(model.features)
    return [f"features.{i}" for i in range(last) if any(True for _ in model.features[i].parameters())]


def transfer(source: models.SmallCNN, strategy: str, num_classes: int, *, lr: float = 0.05,
             small_lr_factor: float = 0.1, momentum: float = 0.9) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and its optimizer for one of :data:`STRATEGIES`, on a target with ``num_classes`` classes.

    - ``"linear probe"``: everything frozen (BN statistics too, the model stays in eval mode under
      :class:`FrozenBN`), a new linear head trained at ``lr``;
    - ``"fine-tune top"``: the last conv stage and a new head train, the stage at ``lr · small_lr_factor``;
    - ``"fine-tune all"``: everything trains, pretrained layers at ``lr · small_lr_factor``, new head at ``lr``;
    - ``"from scratch"``: a fresh network with the source's architecture, everything at ``lr``;
    - ``"fine-tune bottom"`` (:data:`EXTRA_STRATEGIES`, seed 003's large/similar advice): the first conv
      stage trains at ``lr · small_lr_factor`` and a new head at ``lr``, the rest is frozen.
    """
    if strategy not in STRATEGIES + EXTRA_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES + EXTRA_STRATEGIES)}")
    small = lr * small_lr_factor
    if strategy == "from scratch":
        widths = tuple(m.out_channels for m in source.features if isinstance(m, nn.Conv2d))
        model = models.SmallCNN(source.features[0].in_channels, num_classes, widths=widths, norm="batch")
        model = model.to(source.head[-1].weight.device)
        return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model = replace_head(source, num_classes)
    # the parts that train are whole submodules (model.get_submodule), one parameter group each: the new head
    # first at lr, then the pretrained parts at the small rate
    group = lambda name, module, rate: {"name": name, "params": list(module.parameters()), "lr": rate}
    if strategy == "fine-tune all":
        in_head = {id(p) for p in model.head.parameters()}
        groups = [group("head", model.head, lr),
                  {"name": "default", "params": [p for p in model.parameters() if p.requires_grad and id(p) not in in_head],
                   "lr": small}]
        return model, torch.optim.SGD(groups, lr=lr, momentum=momentum)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    if strategy == "linear probe":
        groups = [group("inner.head", model.head, lr)]
        model = FrozenBN(model)
    else:
        pretrained = top_prefixes(model, 1)[:-1] if strategy == "fine-tune top" else bottom_prefixes(model, 1)
        for name in pretrained:
            model.get_submodule(name).requires_grad_(True)
        groups = [group("head", model.head, lr)] + [group(name, model.get_submodule(name), small) for name in pretrained]
    return model, torch.optim.SGD(groups, lr=lr, momentum=momentum)


# ------------------------------------------------------------------------ earlier layers, BN statistics

def stage_ends(model: models.SmallCNN) -> list[int]:
    """For each conv stage of a SmallCNN, the number of modules of ``model.features`` up to and including
    its pooling layer: the ``layer`` values of :func:`features_at` that read a stage's output."""
    return [i + 1 for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]


@reference("04_training", "features_at")
def features_at(model: nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The output of the first ``layer`` modules of ``model.features`` for inputs ``x``, flattened to
    ``(N, -1)``; ``layer = 0`` is the input itself, ``layer = len(model.features)`` the last feature maps.

    The features seed 000 puts a linear classifier on when the target data is small and from a different
    domain ("在网络较为靠前的特征层就使用svm分类器"). Computed in eval mode (batch norm uses its running
    statistics, so a sample's features do not depend on its batch mates) and without gradients; the
    model is left in the mode it was in. ``ValueError`` if ``layer`` is not in ``[0, len(model.features)]``.
    """
    n = len(model.features)
    if not 0 <= layer <= n:
        raise ValueError(f"layer must be in [0, {n}] (the number of modules of model.features to apply), got {layer}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = x
            for module in list(model.features)[:layer]:
                h = module(h)
    finally:
        model.train(was_training)
    return h.flatten(1)


def top_features(model: models.SmallCNN, x: torch.Tensor) -> torch.Tensor:
    """The "top features" of seed 000's table: the input of the last linear layer of ``model.head``
    (for a SmallCNN, the globally average-pooled last feature maps), in eval mode and without gradients;
    the model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.head[:-1](model.features(x)).flatten(1)
    finally:
        model.train(was_training)


def probe_accuracy(train_features: torch.Tensor, y_train: torch.Tensor, test_features: torch.Tensor,
                   y_test: torch.Tensor, num_classes: int, *, epochs: int, batch_size: int, lr: float = 0.05,
                   momentum: float = 0.9, seed: int = 0) -> tuple[float, int]:
    """Train a linear classifier (``nn.Linear``, cross-entropy, SGD with momentum) on fixed features and
    return ``(test accuracy, number of its parameters)``.

    On the top features this is the ``"linear probe"`` strategy (same optimizer, same data order); on the
    features of an earlier layer (:func:`features_at`) it is seed 000's advice for small data from a
    different domain. Seed 000 says an SVM; a softmax classifier is the same kind of linear model, and
    using the head of the other strategies keeps the comparison to the features alone.
    """
    torch.manual_seed(seed)
    head = nn.Linear(train_features.shape[1], num_classes).to(train_features.device)
    loader = course_data.DeviceLoader(train_features, y_train, batch_size, generator=torch.Generator().manual_seed(seed))
    train.fit(head, loader, epochs=epochs, optimizer=torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum),
              progress=False)
    return train.evaluate(head, test_features, y_test)[1], sum(p.numel() for p in head.parameters())


def recompute_bn_statistics(model: nn.Module, batches) -> nn.Module:
    """Re-estimate the running mean and variance of every batch-norm layer of ``model`` at its final
    weights, as the plain average over ``batches`` (``(x, y)`` pairs or inputs), with
    ``torch.optim.swa_utils.update_bn``.

    After a short run at a high learning rate the running averages (momentum 0.1: mostly the last ~10
    steps) lag behind weights that kept moving, and eval-mode accuracy can fall far below train-mode
    accuracy. A :class:`FrozenBN` model is returned unchanged: its statistics are the source's by design.
    """
    if isinstance(model, FrozenBN) or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    torch.optim.swa_utils.update_bn(batches, model)
    return model


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
