"""Imbalanced (long-tailed) data: building it, resampling it, reweighting the loss, and measuring per class.

Seed 003: class imbalance hurts; down-sampling and up-sampling help, so do random crops of the rare
classes' images used as extra samples, and a two-stage fine-tuning: first on the well-populated classes,
then on the rest (Wei et al. 2015, ICCV ChaLearn workshop).

- :func:`long_tail_counts` / :func:`make_long_tailed`: an exponentially long-tailed training split,
  ``n_c = n_max * ratio**(-c / (C - 1))`` (Cui et al. 2019; Cao et al. 2019).
- :func:`class_weights`: inverse frequency (scikit-learn's ``"balanced"``) and the effective number of
  samples ``(1 - beta**n) / (1 - beta)`` (Cui et al. 2019).
- Resampling indices: :func:`balanced_indices` (class-balanced sampling with replacement, what
  ``torch.utils.data.WeightedRandomSampler`` does with :func:`sample_weights`), :func:`oversample_indices`,
  :func:`undersample_indices`; :class:`BalancedLoader` draws a class-balanced epoch on the device.
- :func:`random_crop` (functional; offsets are arguments) and :func:`oversample_with_crops`.
- Metrics: :func:`confusion_matrix`, :func:`per_class_recall`, :func:`balanced_accuracy`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from . import augment
from .data import Dataset, DeviceLoader
from .release import reference
from .runtime import generator_device

# ------------------------------------------------------------------------------------------ building


@reference("09_imbalanced_data", "long_tail_counts")
def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Samples per class of an exponential long tail: ``n_c = floor(n_max * ratio**(-c / (C - 1)))``.

    Class 0 keeps ``n_max``, the last class ``n_max / ratio``; the ratio of the largest to the
    smallest class is ``imbalance_ratio`` (Cui et al. 2019, Cao et al. 2019). Every class keeps >= 1.
    """
    if imbalance_ratio < 1 or num_classes < 1 or n_max < 1:
        raise ValueError(f"need imbalance_ratio >= 1, num_classes >= 1, n_max >= 1; got "
                         f"{imbalance_ratio}, {num_classes}, {n_max}")
    if num_classes == 1:
        return [int(n_max)]
    return [max(int(math.floor(n_max * imbalance_ratio ** (-c / (num_classes - 1)) + 1e-9)), 1)
            for c in range(num_classes)]


def class_counts(y: Tensor, num_classes: int) -> Tensor:
    """How many samples of each class ``y`` holds: (C,) int64 on ``y``'s device."""
    return torch.bincount(y, minlength=num_classes)


def make_long_tailed(dataset: Dataset, imbalance_ratio: float, *, n_max: int | None = None,
                     order=None, generator: torch.Generator | None = None) -> Dataset:
    """A long-tailed copy of ``dataset``: its training split cut to :func:`long_tail_counts` per class.

    ``order`` lists the classes from head to tail (default 0, 1, ..., C-1); ``n_max`` defaults to the
    smallest class's size. The samples kept are drawn without replacement from ``generator``. The test
    split is left balanced, so that accuracy on it weighs every class equally.
    """
    y, num_classes = dataset.y_train, dataset.num_classes
    have = class_counts(y, num_classes).tolist()
    n_max = int(min(have)) if n_max is None else int(n_max)
    order = list(range(num_classes)) if order is None else [int(c) for c in order]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(f"order must be a permutation of the {num_classes} classes, got {order}")
    counts = _tail_profile(n_max, num_classes, imbalance_ratio)
    keep = []
    for rank, cls in enumerate(order):
        if counts[rank] > have[cls]:
            raise ValueError(f"class {cls} has {have[cls]} samples, fewer than the {counts[rank]} asked for")
        members = torch.nonzero(y == cls).flatten()
        pick = _randperm(len(members), generator, y.device)[:counts[rank]]
        keep.append(members[pick])
    index = torch.cat(keep).sort().values
    return Dataset(dataset.name, dataset.x_train[index], y[index], dataset.x_test, dataset.y_test,
                   list(dataset.classes))


def _tail_profile(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """:func:`long_tail_counts`' values, laid out with ``torch.logspace`` (base ``ratio``, exponents 0 to −1)."""
    if imbalance_ratio < 1 or num_classes < 1 or n_max < 1:
        raise ValueError(f"need imbalance_ratio >= 1, num_classes >= 1, n_max >= 1; got "
                         f"{imbalance_ratio}, {num_classes}, {n_max}")
    if num_classes == 1:
        return [int(n_max)]
    profile = torch.logspace(0, -1, num_classes, base=float(imbalance_ratio), dtype=torch.float64) * n_max
    return [max(int(math.floor(float(v) + 1e-9)), 1) for v in profile]


def _randperm(n: int, generator, device) -> Tensor:
    gen_device = generator_device(generator)
    return torch.randperm(n, generator=generator, device=gen_device).to(device)


# ----------------------------------------------------------------------------------------- weights


@reference("09_imbalanced_data", "class_weights")
def class_weights(counts, kind: str = "inverse", beta: float = 0.999) -> Tensor:
    """Per-class loss weights (C,) float32 from the class counts.

    - ``"inverse"``: ``w_c = N / (C * n_c)``, scikit-learn's ``compute_class_weight("balanced")``;
      the weighted classes then count equally and the mean weight per sample stays 1.
    - ``"effective"`` (Cui et al. 2019): the effective number of samples ``E_c = (1 - beta**n_c) / (1 - beta)``,
      ``w_c = 1 / E_c`` normalised to sum to C. ``beta -> 0`` gives equal weights, ``beta -> 1``
      inverse frequency.
    Use them as ``F.cross_entropy(logits, y, weight=w)``.
    """
    n = torch.as_tensor(counts, dtype=torch.float64)
    if (n <= 0).any():
        raise ValueError("every class needs at least one sample to get a weight")
    c = len(n)
    if kind == "inverse":
        w = n.sum() / (c * n)
    elif kind == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        effective = (1.0 - beta ** n) / (1.0 - beta)
        w = 1.0 / effective
        w = w * c / w.sum()
    else:
        raise ValueError(f"kind must be 'inverse' or 'effective', got {kind!r}")
    device = counts.device if isinstance(counts, Tensor) else None
    return w.to(device=device, dtype=torch.float32)


@reference("09_imbalanced_data", "sample_weights")
def sample_weights(y: Tensor, num_classes: int) -> Tensor:
    """Per-sample weights ``1 / n_{y_i}``: sampling with them picks every class with probability 1/C
    (the weights to give ``torch.utils.data.WeightedRandomSampler``)."""
    counts = class_counts(y, num_classes).double()
    return (1.0 / counts[y]).float()


# --------------------------------------------------------------------------------------- resampling


def balanced_indices(y: Tensor, num_classes: int, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """``num_samples`` indices drawn with replacement, each class equally likely (class-balanced sampling)."""
    gen_device = generator_device(generator)
    weights = (1.0 / class_counts(y, num_classes).double())[y].float().to(gen_device)   # 1 / n_{y_i}
    return torch.multinomial(weights, num_samples, replacement=True, generator=generator).to(y.device)


def oversample_extra(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """The repeats of random over-sampling: for each class, indices of its samples drawn with replacement,
    as many as it lacks to match the largest class (class by class, not shuffled)."""
    counts = class_counts(y, num_classes)
    target = int(counts.max())
    parts = [torch.zeros(0, dtype=torch.int64, device=y.device)]
    for cls in range(num_classes):
        members = torch.nonzero(y == cls).flatten()
        extra = target - len(members)
        if extra > 0 and len(members):
            parts.append(members[_randint(len(members), extra, generator, y.device)])
    return torch.cat(parts)


def oversample_indices(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """Random over-sampling: every sample once plus :func:`oversample_extra`, so that every class has as
    many samples as the largest. Returns a shuffled index tensor."""
    index = torch.cat([torch.arange(len(y), device=y.device), oversample_extra(y, num_classes, generator)])
    return index[_randperm(len(index), generator, y.device)]


def undersample_indices(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """Random under-sampling: as many samples of each class as the smallest (present) class has, drawn
    without replacement. Returns a shuffled index tensor."""
    counts = class_counts(y, num_classes)
    target = int(counts[counts > 0].min())
    parts = []
    for cls in range(num_classes):
        members = torch.nonzero(y == cls).flatten()
        parts.append(members[_randperm(len(members), generator, y.device)[:target]])
    index = torch.cat(parts)
    return index[_randperm(len(index), generator, y.device)]


def _randint(high: int, n: int, generator, device) -> Tensor:
    gen_device = generator_device(generator)
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


class BalancedLoader(DeviceLoader):
    """Mini-batches of a class-balanced epoch: a :class:`~course_lib.data.DeviceLoader` whose order, at
    each ``iter()``, is ``len(x)`` indices drawn with :func:`balanced_indices` (every class equally likely)."""

    def __init__(self, x: Tensor, y: Tensor, num_classes: int, batch_size: int, *,
                 generator: torch.Generator | None = None, transform: Callable | None = None):
        super().__init__(x, y, batch_size, generator=generator, transform=transform)
        self.num_classes = num_classes

    def order(self) -> Tensor:
        return balanced_indices(self.y, self.num_classes, len(self.y), self.generator)


# ------------------------------------------------------------------------------------- random crops


def crop_offsets(n: int, padding: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """(n, 2) int64 offsets ``(top, left)``, uniform in ``[0, 2 * padding]``: the random part of a crop."""
    gen_device = generator_device(generator)
    off = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=gen_device)
    return off.to(device) if device is not None else off


@reference("09_imbalanced_data", "random_crop")
def random_crop(x: Tensor, offsets: Tensor, padding: int) -> Tensor:
    """Pad ``x`` (N, C, H, W) with ``padding`` zeros on every side and cut an H x W window per image
    at ``offsets[i] = (top, left)`` of the padded image (0 <= top, left <= 2 * padding).

    Offsets ``(padding, padding)`` give the image back unchanged. Same result as
    ``torchvision.transforms.v2.functional.crop(F.pad(x, [p] * 4), top, left, H, W)`` image by image;
    it is :func:`course_lib.augment.crop` with the window of the image's own size.
    """
    offsets = offsets.to(x.device)
    return augment.crop(x, offsets[:, 0], offsets[:, 1], tuple(x.shape[-2:]), padding)


def oversample_with_crops(x: Tensor, y: Tensor, num_classes: int, *, padding: int = 3,
                          generator: torch.Generator | None = None,
                          crop: Callable[[Tensor, Tensor, int], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Over-sample the rare classes with randomly cropped copies (seed 003): each class is filled up to
    the largest class's count with ``crop(x, offsets, padding)`` of randomly chosen members, offsets from
    :func:`crop_offsets`; originals are kept. Returns the new ``(x, y)`` (originals first, then the crops).

    ``crop`` is the student's ``random_crop`` (exercise 6 of chapter 09) in the notebook; by default
    :func:`random_crop`, which the student release leaves out."""
    crop = random_crop if crop is None else crop
    extra = oversample_extra(y, num_classes, generator)
    offsets = crop_offsets(len(extra), padding, generator, x.device)
    crops = crop(x[extra], offsets, padding)
    return torch.cat([x, crops]), torch.cat([y, y[extra]])


# ------------------------------------------------------------------------------------------ metrics


@reference("09_imbalanced_data", "confusion_matrix")
def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts: entry ``[i, j]`` is how many samples of true class i were predicted j."""
    flat = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@reference("09_imbalanced_data", "balanced_accuracy")
def per_class_recall(cm: Tensor) -> Tensor:
    """Recall of each class from a confusion matrix: ``cm[c, c] / sum_j cm[c, j]`` (NaN for an absent class)."""
    cm = cm.double()
    return cm.diagonal() / cm.sum(dim=1)


@reference("09_imbalanced_data", "balanced_accuracy")
def balanced_accuracy(y_true: Tensor, y_pred: Tensor, num_classes: int) -> float:
    """Mean of the per-class recalls over the classes present in ``y_true`` (scikit-learn's
    ``balanced_accuracy_score``). Plain accuracy weighs classes by their frequency; this weighs them equally."""
    recall = per_class_recall(confusion_matrix(y_true, y_pred, num_classes))
    return float(recall[~recall.isnan()].mean())


def head_tail_split(counts, n_head: int) -> tuple[list[int], list[int]]:
    """The ``n_head`` most populated classes (the head) and the rest (the tail), each sorted by class id.
    Seed 003's two-stage fine-tuning trains on the head first, then fine-tunes on the tail."""
    counts = torch.as_tensor(counts)
    order = torch.argsort(counts, descending=True, stable=True).tolist()
    return sorted(order[:n_head]), sorted(order[n_head:])
