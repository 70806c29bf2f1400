"""The capstone (chapter 10): every trick of the course in one fast training path, and an ablation of each.

The recipe is a :class:`Recipe` of switches and hyperparameters; :func:`train_recipe` trains it on a
:class:`course_lib.data.Dataset` and returns a :class:`Result` (accuracy, times, models);
``recipe.without("bn")`` removes one trick and :func:`ablation` removes each in turn, over seeds.

The tricks, and where the course teaches them:

- ``augment``: a random horizontal flip and a random translation (zero-padded crop), batched on the
  device (chapter 01, :mod:`course_lib.augment`); off: the images as they are.
- ``whiten``: inputs standardized with the training split's mean and std, and the first convolution
  initialised with patch-whitening filters and frozen (chapter 02, :mod:`course_lib.preprocess`; as
  airbench does for CIFAR-10); off: raw pixels in [0, 1] and an ordinary, trained first convolution.
- ``he_init``: He/Kaiming normal weights, zero biases (chapter 03, :mod:`course_lib.init`); off: the
  seeds' small random ``0.01·N(0, 1)``.
- ``bn``: batch norm after every convolution, before the ReLU (chapter 04f); off: conv biases instead.
- ``schedule``: linear warm-up, then cosine decay (chapter 04c, :mod:`course_lib.schedules`); off: the
  peak rate throughout. The optimizer is always Nesterov SGD (``torch.optim.SGD``).
- ``label_smoothing``: cross entropy against ``(1 − ε)·onehot + ε/C`` (Szegedy et al. 2016); off: ε = 0.
- ``tta``: test-time flip averaging, the softmax probabilities of the image and its mirror averaged.
- ``ensemble``: ``members`` networks from different seeds, probabilities averaged (chapter 08).

Four candidate tricks from airbench, each off by default and not yet measured here (:data:`CANDIDATES`;
``ablation(..., candidates=...)`` switches each on alone against the recipe):

- ``ema``: the networks are evaluated with an exponential moving average of their weights,
  ``θ̄_t = d·θ̄_{t−1} + (1 − d)·θ_t`` after every step (Polyak & Juditsky 1992; airbench's lookahead-style
  weight averaging), ``d = ema_decay``;
- ``alternating_flips``: each training image is flipped on alternate epochs, starting from a random
  per-image choice in the first epoch, instead of a fresh coin per epoch (KellerJordan/cifar10-airbench);
- ``whiten_bias_epochs``: with ``whiten``, the whitening stem's bias is trained for the first N epochs
  (its weights stay frozen), then frozen too (airbench: 3 epochs);
- ``tta_views``: the views that TTA averages: 2 is the flip TTA above, 4 and 6 add the flipped and
  unflipped ±1-pixel translations (airbench's multi-view TTA), probabilities averaged.

The fast path computes the same thing as a plain loop, only faster: the data stay on the device, each
epoch is shuffled and augmented in one pass (its random parameters drawn in one call each, on the
device) and cut into batches by slicing, the optimizer is fused Nesterov SGD whose learning rate is
set as a plain number from a precomputed schedule (no per-step scheduler object), the loss is
``F.cross_entropy(label_smoothing=ε)``'s value through the epoch's precomputed :func:`loss_weights`
(three kernels forward, two backward), and the step loop never synchronises with the host (the
losses are written into a device tensor and read once per epoch, which is also where a non-finite
loss ends the run as *diverged*). On CUDA it runs ``channels_last`` under bf16 autocast with
``cudnn.benchmark``; ``Recipe(compile=True)`` adds ``torch.compile`` of the forward pass and loss
(``compile_mode``, by default ``"reduce-overhead"``: CUDA graphs), compiled once per process and
reused by every seed and member, with its compile time reported on its own.

Three of the pipeline's pieces are this chapter's exercises (the augmentation, the whitening filters, the flip
TTA): the pipeline calls them through a :class:`Parts` (this module's references by default), so that the
notebook trains and evaluates with the student's own functions, which the student release needs.

Sources: Keller Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single A100" (airbench,
github.com/KellerJordan/cifar10-airbench: the device-resident loader, patch whitening, label smoothing 0.2,
Nesterov SGD with warm-up and decay, flip TTA, and the candidates: weight averaging, alternating flips,
the trained whitening bias, multi-view TTA); Polyak & Juditsky (1992), "Acceleration of stochastic
approximation by averaging" (weight averaging); Szegedy et al. (2016), "Rethinking the Inception Architecture", section 7 (label smoothing);
He et al. (2015), "Delving Deep into Rectifiers" (He init); Ioffe & Szegedy (2015) (batch norm);
Coleman et al. (2017), DAWNBench (time to accuracy).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import augment, ensemble, preprocess, runtime, train
from .data import Dataset
from .release import reference

TRICKS = ("augment", "whiten", "he_init", "bn", "schedule", "label_smoothing", "tta", "ensemble")
EVAL_TRICKS = ("tta", "ensemble")  # removing these needs no retraining: the same networks, evaluated differently
FULL = "none (full recipe)"
#: The candidate tricks (off in every recipe by default): the fields each switches on, for
#: ``ablation(..., candidates=...)`` and the benchmark's ``--candidates``. Not measured yet.
CANDIDATES = {"ema": {"ema": True}, "alternating_flips": {"alternating_flips": True},
              "whiten_bias": {"whiten_bias_epochs": 3}, "multiview_tta": {"tta_views": 6}}
EVAL_CANDIDATES = ("multiview_tta",)  # read off the recipe's own networks, no retraining
ADDED = "added "                      # the ablation's row label of a candidate switched on

# ------------------------------------------------------------------------------------------ the recipe


@dataclass(frozen=True)
class Recipe:
    """The tricks (booleans, :data:`TRICKS`) and the hyperparameters of one training run.

    ``recipe.without("bn", "tta")`` switches tricks off; ``recipe.but(epochs=2)`` changes hyperparameters.
    """

    augment: bool = True
    whiten: bool = True
    he_init: bool = True
    bn: bool = True
    schedule: bool = True
    label_smoothing: bool = True
    tta: bool = True
    ensemble: bool = True
    # hyperparameters
    epochs: int = 4
    batch_size: int = 256
    lr: float = 0.1                 # peak rate of Nesterov SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.2             # fraction of the steps spent warming up
    smoothing: float = 0.2          # label smoothing ε (airbench's value)
    padding: int = 2                # translation of up to ±padding pixels
    widths: tuple = (32, 64, 128)   # channels of the three conv blocks
    convs_per_block: int = 1
    patch_size: int = 3             # whitening patches are patch_size x patch_size
    whiten_eps: float = 5e-4
    whiten_images: int = 512        # training images whose patches fit the whitening
    members: int = 2                # networks in the ensemble
    amp: bool = True                # bf16 autocast + channels_last, on CUDA only
    compile: bool = False           # torch.compile (pays on a GPU for long runs; off by default)
    compile_mode: str = "reduce-overhead"  # torch.compile's mode on CUDA (CUDA graphs); "default" on a CPU
    # candidate tricks (CANDIDATES), off by default
    ema: bool = False               # evaluate an exponential moving average of the weights
    ema_decay: float = 0.99         # d in θ̄ ← d·θ̄ + (1 − d)·θ, after every step
    alternating_flips: bool = False  # each image flipped on alternate epochs (needs augment)
    whiten_bias_epochs: int = 0     # train the whitening stem's bias for the first N epochs (needs whiten)
    tta_views: int = 2              # views averaged by TTA: 1 none, 2 flip, 4/6 flip and ±1-pixel shifts

    def without(self, *tricks: str) -> "Recipe":
        """A copy with ``tricks`` (names in :data:`TRICKS`) switched off."""
        unknown = [t for t in tricks if t not in TRICKS]
        if unknown:
            raise ValueError(f"unknown trick(s) {unknown}; choose from {', '.join(TRICKS)}")
        return replace(self, **{t: False for t in tricks})

    def but(self, **changes) -> "Recipe":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    @property
    def n_members(self) -> int:
        """Networks trained: ``members`` with the ensemble, else 1."""
        return self.members if self.ensemble else 1

    def tricks(self) -> dict:
        """``{trick: on}`` for every trick."""
        return {t: getattr(self, t) for t in TRICKS}

    def candidates(self) -> dict:
        """``{candidate: on}`` for every name of :data:`CANDIDATES` (``tta_views`` other than 2 counts as on)."""
        return {"ema": self.ema, "alternating_flips": self.alternating_flips,
                "whiten_bias": self.whiten_bias_epochs > 0, "multiview_tta": self.tta_views != 2}

    def label(self) -> str:
        """The tricks that are off and the candidates that are on, for tables: ``"full recipe"``,
        ``"without bn, tta"`` or ``"full recipe + ema"``."""
        off = [t for t in TRICKS if not getattr(self, t)]
        on = [name for name, on in self.candidates().items() if on]
        return ("full recipe" if not off else "without " + ", ".join(off)) + ("".join(f" + {c}" for c in on))


#: The recipe of ``benchmarks/time_to_accuracy.py`` (one network, the whole training set).
BENCHMARK_RECIPE = Recipe(epochs=3, batch_size=256, lr=0.2, widths=(32, 64, 128), ensemble=False)

#: The chapter's two configurations (``runtime.pick(quick=..., full=...)``), shared with the benchmark's
#: ``--ablation``: the training/test subset sizes (``None``: the whole split), the seeds and the recipe.
PROFILES = {
    "quick": dict(n_train=2000, n_test=2000, seeds=[0],
                  recipe=Recipe(epochs=3, batch_size=64, lr=0.2, widths=(16, 32, 64), members=2, whiten_images=512)),
    "full": dict(n_train=None, n_test=None, seeds=[0, 1, 2, 3, 4],
                 recipe=Recipe(epochs=10, batch_size=512, lr=0.4, widths=(64, 128, 256), convs_per_block=2, members=2)),
}

# -------------------------------------------------------------------------------- data and augmentation


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std ``(C,)`` of images ``(N, C, H, W)``: fit on the training split only (ch. 02)."""
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x − mean_c) / std_c`` per channel ``c``."""
    return (images - mean[:, None, None]) / std[:, None, None]


@reference("10_capstone", "augment_batch")
def augment_batch(images: Tensor, flip: Tensor, top: Tensor, left: Tensor, mean: Tensor, std: Tensor,
                  padding: int) -> Tensor:
    """Flip, then translate, then normalize: ``normalize(crop(hflip(x, flip), top, left, padding))``.

    The zero padding of the crop is black (0) in pixel space, which is Fashion-MNIST's background;
    normalizing first would pad with the *mean* (0 after normalization), a grey frame that never
    occurs in a test image. ``top``/``left`` index the padded image (``0 .. 2·padding``).

    The flip and the translation are two gathers from the zero-padded batch: image ``n`` is the window at
    ``(top[n], left[n])`` of its padded copy, read right to left where ``flip[n]`` (zero padding is
    symmetric, so mirroring the padded image is padding the mirrored one).
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top.to(images.device, torch.long)[:, None] + torch.arange(h, device=images.device)     # (N, H)
    cols = left.to(images.device, torch.long)[:, None] + torch.arange(w, device=images.device)    # (N, W)
    cols = torch.where(flip.to(images.device)[:, None], padded.shape[-1] - 1 - cols, cols)
    out = padded.gather(2, rows[:, None, :, None].expand(n, padded.shape[1], h, padded.shape[-1]))
    shifted = out.gather(3, cols[:, None, None, :].expand(n, padded.shape[1], h, w))
    return normalize(shifted, mean, std)


def draw_epoch(n: int, batch_size: int, padding: int, flip: bool, generator: torch.Generator,
               device, flip_base: Tensor | None = None, epoch: int = 0) -> dict:
    """One epoch's random parameters, each drawn in one call on ``device``: the order of the
    ``(n // batch_size)·batch_size`` images used, their flip mask and crop offsets ``0 .. 2·padding``.

    With ``flip_base`` (a flip per image, drawn once: :func:`alternating_flip_base`) the flips are not
    drawn but alternate: image ``i`` is flipped in epoch ``e`` (0-based) iff ``flip_base[i] XOR (e odd)``."""
    keep = n // batch_size * batch_size
    order = torch.randperm(n, generator=generator, device=device)[:keep]
    if flip and flip_base is not None:
        mask = flip_base[order] ^ bool(epoch % 2)
    else:
        mask = (torch.rand(keep, generator=generator, device=device) < 0.5) if flip else None
    offsets = torch.randint(0, 2 * padding + 1, (2, keep), generator=generator, device=device) if padding else None
    return {"order": order, "flip": mask, "offsets": offsets}


def alternating_flip_base(n: int, generator: torch.Generator, device) -> Tensor:
    """The first epoch's flips of airbench's alternating flips (KellerJordan/cifar10-airbench): one coin per
    image, ``(n,)`` bool, drawn once per run; :func:`draw_epoch` inverts it on every odd epoch, so each
    image is seen mirrored exactly every other epoch rather than on a fresh coin."""
    return torch.rand(n, generator=generator, device=device) < 0.5


def smoothed_targets(y: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """The label-smoothed target distribution ``q = (1 − ε)·onehot(y) + ε/C`` (Szegedy et al. 2016), float32
    ``(N, C)``: ``F.cross_entropy(logits, q)`` equals ``F.cross_entropy(logits, y, label_smoothing=ε)``."""
    return F.one_hot(y, num_classes).float() * (1 - smoothing) + smoothing / num_classes


def loss_weights(y: Tensor, num_classes: int, smoothing: float, batch_size: int) -> Tensor:
    """``w = −q / B``, ``q`` the :func:`smoothed_targets` and ``B`` the batch size: the step's loss is then
    ``Σ w·log softmax(z)`` (:func:`forward_loss`), which equals ``F.cross_entropy(z, q)`` (the mean over the
    batch of ``−Σ_c q_c log p_c``) with the sign and the division computed once per epoch, not at every
    step forward and backward (four kernels fewer per step, issue 21)."""
    return smoothed_targets(y, num_classes, smoothing).mul_(-1.0 / batch_size)


def epoch_batches(x: Tensor, y: Tensor, batch_size: int, mean: Tensor, std: Tensor, *, padding: int = 2,
                  flip: bool = True, generator: torch.Generator, memory_format=torch.contiguous_format,
                  chunk: int = 8192, smoothing: float = 0.0, num_classes: int | None = None,
                  flip_base: Tensor | None = None, epoch: int = 0, augment_batch=augment_batch) -> list[tuple]:
    """One epoch of shuffled, augmented, normalized batches ``(xb, yb)``, cut from one tensor by slicing.

    The parameters come from :func:`draw_epoch` (one call each); :func:`augment_batch` is applied to
    ``chunk`` images at a time (bounding the gather indices' memory), so a training step does no
    augmentation work and no indexing, only slices. With ``flip=False`` and ``padding=0`` the
    images are only normalized. Every batch is full (the last partial batch is dropped). With
    ``smoothing`` > 0 each batch is ``(xb, yb, wb)``, ``wb`` the :func:`loss_weights` of the epoch
    computed once, so the step's loss is ``Σ wb·log softmax(logits)`` (:func:`forward_loss`): a quarter of
    the ops of ``label_smoothing=ε``, which rebuilds the smoothing term at every step. ``flip_base`` and ``epoch``
    (0-based) make the flips alternate (:func:`draw_epoch`). ``augment_batch`` is the function applied (by default
    this module's :func:`augment_batch`; a notebook passes its own, with the same signature).
    """
    d = draw_epoch(len(x), batch_size, padding, flip, generator, x.device, flip_base, epoch)
    order, parts = d["order"], []
    for i in range(0, len(order), chunk):
        images = x[order[i:i + chunk]]
        if flip or padding:
            n = len(images)
            mask = d["flip"][i:i + chunk] if flip else torch.zeros(n, dtype=torch.bool, device=x.device)
            top, left = (d["offsets"][:, i:i + chunk] if padding else torch.zeros(2, n, dtype=torch.long, device=x.device))
            images = augment_batch(images, mask, top, left, mean, std, padding)
        else:
            images = normalize(images, mean, std)
        parts.append(images)
    xs = torch.cat(parts).contiguous(memory_format=memory_format) if parts else x[:0]
    ys = y[order]
    if smoothing:
        ws = loss_weights(ys, num_classes or int(y.max()) + 1, smoothing, batch_size)
        return [(xs[i:i + batch_size], ys[i:i + batch_size], ws[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    return [(xs[i:i + batch_size], ys[i:i + batch_size]) for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------- patch whitening


@reference("10_capstone", "whitening_filters")
def image_patches(images: Tensor, size: int) -> Tensor:
    """Every ``size x size`` patch (stride 1, no padding) of every image, flattened: ``(N·L, C·size²)``.

    Entry order is channel, row, column: the order of a conv weight ``(out, C, size, size)`` flattened.
    """
    cols = F.unfold(images, size)                      # (N, C·size², L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


@reference("10_capstone", "whitening_filters")
def whitening_filters(images: Tensor, size: int = 3, eps: float = 5e-4) -> tuple[Tensor, Tensor]:
    """Patch-whitening weights and bias for a ``Conv2d(C, 2·C·size², size)``, after airbench (Jordan 2024).

    With the patches' mean ``μ`` and covariance ``Σ = U diag(λ) Uᵀ`` (eigenvalues decreasing), filter
    ``k`` is ``u_k / sqrt(λ_k + ε)`` reshaped to ``(C, size, size)``, its bias ``−μ·u_k / sqrt(λ_k + ε)``,
    so the conv computes the PCA-whitened coordinates of every patch (:class:`course_lib.preprocess.Whitening`
    with ``"pca"``: eigenvector filters, not ZCA's centre-surround ones). The filters are followed by their
    negatives, so that a ReLU after the layer keeps both signs. Returns ``(weight (2K, C, size, size),
    bias (2K,))`` with ``K = C·size²``; :func:`build_net` copies both into the stem and freezes them, so
    the bias here is the fixed centring term, trained only with ``Recipe.whiten_bias_epochs`` > 0 (for
    that many epochs, starting from this centring term rather than airbench's 0).

    airbench differs in two ways: its filters come from the *uncentred* second moment of the normalized
    patches (``patches.T @ patches / n``), and its whitening conv has a learnable bias, initialised to 0
    and trained for the first ``whiten_bias_epochs`` (3) epochs, then frozen like the weights.
    """
    patches = image_patches(images, size)
    white = preprocess.Whitening("pca", eps).fit(patches)
    weight = white.W.T.reshape(-1, images.shape[1], size, size)
    bias = -(white.mean @ white.W)
    return torch.cat([weight, -weight]), torch.cat([bias, -bias])


def _init_weights(net: nn.Module, he: bool, generator: torch.Generator | None) -> None:
    """He normal (``torch.nn.init.kaiming_normal_``, ReLU gain) or ``0.01·N(0, 1)`` for every Linear and Conv2d
    weight, biases 0 (chapter 03's schemes, drawn with ``torch.nn.init``)."""
    for layer in net.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            if he:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            else:
                nn.init.normal_(layer.weight, 0.0, 0.01, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


# ------------------------------------------------------------------------------------------ the network


def _batch_norm(width: int) -> nn.BatchNorm2d:
    """``nn.BatchNorm2d(width)`` without its ``num_batches_tracked`` counter, which only a ``momentum=None``
    (cumulative average) batch norm reads, and which otherwise costs one ``add_`` per layer per step."""
    bn = nn.BatchNorm2d(width)
    bn.num_batches_tracked = None
    return bn


class CapstoneNet(nn.Module):
    """``stem → [conv3x3 (×convs_per_block) → maxpool 2 → BN → ReLU] per width → global max pool → linear``.

    The stem is a ``Conv2d(C, 2·C·p², p, padding=p//2)`` followed by a ReLU: patch whitening when the
    recipe whitens, an ordinary convolution otherwise. The block order conv → pool → BN → ReLU is
    airbench's (BN before the nonlinearity, chapter 04f); without BN the convs get biases.
    """

    def __init__(self, in_channels: int, num_classes: int, recipe: Recipe):
        super().__init__()
        p = recipe.patch_size
        self.stem = nn.Conv2d(in_channels, 2 * in_channels * p * p, p, padding=p // 2)
        layers, channels = [], self.stem.out_channels
        for width in recipe.widths:
            for i in range(recipe.convs_per_block):
                layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not recipe.bn))
                if i == 0:
                    layers.append(nn.MaxPool2d(2))
                layers += [_batch_norm(width) if recipe.bn else nn.Identity(), nn.ReLU()]
                channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, classes)``. The global max pool is ``adaptive_max_pool2d(h, 1)``, whose gradient
        goes to the saved argmax index. ``torch.amax``'s gradient, ``grad·(h == max)/count(h == max)``,
        rests on an equality test: a compiled backward that recomputes ``h`` in a fused kernel under bf16
        autocast (torch 2.11, CUDA) found no equal element, and the gradient became ``inf·0 = NaN``."""
        h = self.body(F.relu(self.stem(x)))
        return self.head(F.adaptive_max_pool2d(h, 1).flatten(1))


def build_net(recipe: Recipe, x_train: Tensor, num_classes: int, *, mean=None, std=None,
              generator: torch.Generator | None = None, whitening_filters=whitening_filters) -> CapstoneNet:
    """A :class:`CapstoneNet` on ``x_train``'s device, initialised as the recipe says.

    Weights: He normal (``he_init``) or ``0.01·N(0,1)``, biases 0 (``torch.nn.init``, as chapter 03's ``init_module_``).
    With ``whiten`` the stem gets :func:`whitening_filters` of the first ``whiten_images`` training images
    (normalized with ``mean``/``std``) and is frozen; with ``whiten_bias_epochs`` > 0 its bias stays
    trainable (:func:`make_optimizer` gives it its own group, which :func:`freeze_whiten_bias` stops).
    ``whitening_filters(images, size, eps)`` fits the stem: this module's by default, or a notebook's own.
    """
    net = CapstoneNet(x_train.shape[1], num_classes, recipe)  # initialised on the CPU: the same weights on any device
    _init_weights(net, recipe.he_init, generator)
    net = net.to(x_train.device)
    if recipe.whiten:
        sample = x_train[:recipe.whiten_images]
        if mean is not None:
            sample = normalize(sample, mean, std)
        weight, bias = whitening_filters(sample, recipe.patch_size, recipe.whiten_eps)
        with torch.no_grad():
            net.stem.weight.copy_(weight)
            net.stem.bias.copy_(bias)
        net.stem.weight.requires_grad_(False)
        net.stem.bias.requires_grad_(recipe.whiten_bias_epochs > 0)
    return net


# ----------------------------------------------------------------------------------- loss and optimizer


@reference("10_capstone", "smoothed_cross_entropy")
def label_smoothing_loss(logits: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross entropy against the smoothed target ``q = (1 − ε)·onehot(y) + ε/C`` (Szegedy et al. 2016):

    ``mean_n [ (1 − ε)·(−log p_{n,y_n}) + ε·mean_c(−log p_{n,c}) ]``, with ``p = softmax(logits)``.
    Equal to ``F.cross_entropy(logits, target, label_smoothing=ε)``.
    """
    logp = logits.log_softmax(dim=-1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    return ((1 - smoothing) * nll - smoothing * logp.mean(dim=-1)).mean()


def lr_schedule(recipe: Recipe, steps: int) -> list[float]:
    """The learning rate of every step, as plain numbers, read off torch's schedulers stepped on a throw-away
    optimizer: ``LinearLR`` from 10% of ``lr`` to ``lr`` over the ``int(warmup·steps)`` warm-up steps, then
    ``CosineAnnealingLR`` from ``lr`` to 0 over the rest (``SequentialLR``); ``lr`` throughout without
    ``schedule``. The same rates as chapter 04's :func:`course_lib.schedules.warmup_cosine_factor` with
    ``start_factor=0.1`` (Goyal et al. 2017; Loshchilov & Hutter 2017; airbench warms up and decays linearly)."""
    if not recipe.schedule:
        return [recipe.lr] * steps
    warmup = int(recipe.warmup * steps)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps - warmup, 1))
    sched = cosine if warmup == 0 else torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=warmup), cosine], milestones=[warmup])
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()                        # no gradients: changes nothing, but keeps the scheduler's order check quiet
        sched.step()
    return rates


def make_optimizer(net: nn.Module, recipe: Recipe, steps: int) -> tuple[torch.optim.SGD, list[float]]:
    """Nesterov SGD (``torch.optim.SGD``, fused where the device supports it, else foreach:
    :func:`course_lib.train.lean_optimizer_options`) and the per-step rates of :func:`lr_schedule`.

    The caller sets the rate to ``rates[t]`` before step ``t`` (:func:`set_rates`): a Python float, so no
    scheduler object runs and no tensor op is launched for it. A trainable whitening bias
    (``whiten_bias_epochs``) gets a group of its own, ``{"name": "whiten_bias", "lr_scale": 1.0}``.
    """
    bias = net.stem.bias if recipe.whiten and recipe.whiten_bias_epochs > 0 and isinstance(net, CapstoneNet) else None
    params = [p for p in net.parameters() if p.requires_grad and p is not bias]
    groups = [{"params": params}] + ([{"params": [bias], "name": "whiten_bias", "lr_scale": 1.0}] if bias is not None else [])
    rates = lr_schedule(recipe, steps)
    opt = torch.optim.SGD(groups, lr=rates[0] if rates else recipe.lr, momentum=recipe.momentum, nesterov=True,
                          weight_decay=recipe.weight_decay, **train.lean_optimizer_options(params[0].device))
    return opt, rates


def set_rates(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's rate ``lr·lr_scale`` (``lr`` where a group has no ``lr_scale``), a plain number: no
    scheduler object, no tensor op."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def freeze_whiten_bias(optimizer: torch.optim.Optimizer, epoch: int, recipe: Recipe) -> None:
    """Before ``epoch`` (1-based): the whitening bias's ``lr_scale`` is 1 for ``epoch ≤ whiten_bias_epochs``,
    then 0 (airbench trains it for its first 3 epochs). A zero rate leaves it exactly unchanged
    (``p − 0·v = p``) while it keeps ``requires_grad``: switching that off would change the graph, and a
    compiled step would recompile inside the timed loop."""
    for group in optimizer.param_groups:
        if group.get("name") == "whiten_bias":
            group["lr_scale"] = 1.0 if epoch <= recipe.whiten_bias_epochs else 0.0


# ------------------------------------------------------------------------------- the fast step loop


def fast_context(device: torch.device, recipe: Recipe):
    """bf16 autocast on CUDA when ``recipe.amp``; a no-op context elsewhere."""
    if device.type == "cuda" and recipe.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _memory_format(device: torch.device, recipe: Recipe):
    """``channels_last`` on CUDA with ``amp`` (faster convolutions on tensor cores), else contiguous."""
    return torch.channels_last if device.type == "cuda" and recipe.amp else torch.contiguous_format


def forward_loss(model: nn.Module, xb: Tensor, yb: Tensor, smoothing: float, amp: bool,
                 weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The label-smoothed loss (in float32) and the count of correct argmaxes, with ``f`` under bf16 autocast
    when ``amp``: ``Σ w·log softmax(f(x))`` with the precomputed :func:`loss_weights` ``w = −q/B`` when
    given, which is ``F.cross_entropy(f(x), q)``, else ``F.cross_entropy(f(x), y, label_smoothing=ε)`` (the
    same value). This is what :func:`compiled_forward_loss` compiles; the backward pass and the optimizer
    step run outside it."""
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(xb)
    if weights is not None:
        loss = (F.log_softmax(logits.float(), dim=1) * weights).sum()
    else:
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=smoothing)
    return loss, (logits.argmax(1) == yb).sum()


_COMPILED: dict = {}


def compiled_forward_loss(mode: str = "default"):
    """``torch.compile(forward_loss, mode=mode)``, built once per mode and process and shared by every run:
    dynamo guards on the network's structure and the input shapes, not on the module object, so a new
    seed or member with the same structure reuses the compiled code (:func:`train_recipe`'s warm-up
    compiles only the first time)."""
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(forward_loss, mode=None if mode == "default" else mode)
    return _COMPILED[mode]


def ema_state(average: nn.Module, live: nn.Module, decay: float) -> tuple[list, list, float]:
    """``(averaged tensors, live tensors, 1 − decay)`` for :func:`ema_update`: every floating-point entry of the
    two state dicts (parameters and batch-norm statistics, as airbench's weight averaging), in the same order.
    ``average`` starts as a copy of ``live`` (θ̄_0 = θ_0) and gets no gradients."""
    average.requires_grad_(False)
    pick = lambda m: [t for t in m.state_dict().values() if t.is_floating_point()]  # noqa: E731
    return pick(average), pick(live), 1.0 - decay


def ema_update(state: tuple[list, list, float]) -> None:
    """``θ̄ ← d·θ̄ + (1 − d)·θ`` for every tensor, in one multi-tensor ``lerp_`` (``θ̄ + (1 − d)·(θ − θ̄)``):
    after ``T`` steps ``θ̄_T = d^T·θ_0 + Σ_{t=1..T} (1 − d)·d^{T−t}·θ_t`` (Polyak & Juditsky 1992's average,
    exponentially weighted). No host read."""
    averages, live, weight = state
    with torch.no_grad():
        torch._foreach_lerp_(averages, live, weight)


def train_epoch(model: nn.Module, batches, optimizer, rates, smoothing: float, amp: bool = False,
                step_fn=forward_loss, mark_step: bool = False, ema: tuple | None = None) -> tuple[Tensor, Tensor]:
    """One pass over ``batches`` (``(xb, yb)`` or ``(xb, yb, loss weights)``); returns every step's loss ``(B,)`` and the count of correct predictions,
    *as device tensors*.

    Step ``t`` sets the rate ``rates[t]`` as a plain number, computes ``step_fn`` (:func:`forward_loss` or
    its compiled form), backpropagates from a preallocated ``∂loss/∂loss = 1`` (no ``ones_like`` per
    step), takes the (fused) optimizer step and writes its loss into a
    preallocated tensor. Nothing reads a value back to the host (no ``.item()``, ``float()``, ``bool()``):
    the GPU never waits for Python, and Python never waits for the GPU. ``mark_step`` tells CUDA graphs
    (``reduce-overhead``) that a new step begins. With ``ema`` (:func:`ema_state`) each step ends with
    :func:`ema_update`.
    """
    model.train()
    device = next(model.parameters()).device
    losses = torch.empty(len(batches), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    one = torch.ones((), device=device)
    for i, (xb, yb, *weights) in enumerate(batches):
        set_rates(optimizer, rates[i])
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        loss, right = step_fn(model, xb, yb, smoothing, amp, *weights)
        loss.backward(one)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema_update(ema)
        with torch.no_grad():
            losses[i] = loss
            correct += right
    return losses, correct


def tta_view_images(x: Tensor, n: int = 2) -> list[Tensor]:
    """The first ``n`` (1 to 6) test-time views of ``x``: ``x``, ``hflip(x)``, then airbench's translations
    by one pixel (KellerJordan/cifar10-airbench, ``infer_mirror_translate``): ``s₊ = reflect-pad(x, 1)``
    cropped at ``(0, 0)`` (content moved down and right) and ``hflip(s₊)``, then ``s₋`` cropped at ``(2, 2)``
    (up and left) and ``hflip(s₋)``."""
    if not 1 <= n <= 6:
        raise ValueError(f"tta_views must be 1 to 6, got {n}")
    views = [x, x.flip(-1)]
    if n > 2:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        for shifted in (padded[..., :h, :w], padded[..., 2:, 2:]):
            views += [shifted, shifted.flip(-1)]
    return views[:n]


@reference("10_capstone", "flip_tta_probs")
def tta_probs(model: nn.Module, x: Tensor) -> Tensor:
    """Test-time flip averaging for one network: ``(softmax(f(x)) + softmax(f(hflip(x)))) / 2``, in eval mode
    (:func:`course_lib.ensemble.predict_logits`, in batches of 500, which restores the model's mode)."""
    logits = torch.stack([ensemble.predict_logits([model], v, 500)[0] for v in (x, x.flip(-1))]).float()
    return logits.softmax(dim=-1).mean(dim=0)


def member_probs(models, x: Tensor, flip_tta_probs=tta_probs, *, views: int = 2, batch_size: int = 500, ctx=None,
                 memory_format=torch.contiguous_format) -> Tensor:
    """Probabilities ``(K, N, C)``: member ``k``'s softmax averaged over the first ``views`` views of
    :func:`tta_view_images` (``views=1``: ``x`` alone), float32, in batches of ``batch_size``.

    The views come in pairs, a view and its mirror image, and each pair's average is
    ``flip_tta_probs(model, view)`` (this module's :func:`tta_probs` by default, or a notebook's own), which
    counts as two views: ``p̄_k = (2·Σ_pairs flip_tta_probs(f_k, v) + Σ_single softmax(f_k(v))) / views``,
    a lone view (``views`` odd) through :func:`course_lib.ensemble.predict_logits` (eval mode).
    """
    ctx = ctx if ctx is not None else contextlib.nullcontext()
    bases = [v.contiguous(memory_format=memory_format)                   # x, then the shifted views: each with its mirror
             for v in tta_view_images(x, views)[::2]]                    # built once, shared by every member
    out = []
    with ctx:
        for model in models:
            total = 0.0
            for j, v in enumerate(bases):
                if 2 * j + 1 < views:
                    total = total + 2 * torch.cat([flip_tta_probs(model, v[i:i + batch_size]).float()
                                                   for i in range(0, len(v), batch_size)])
                else:
                    total = total + ensemble.predict_logits([model], v, batch_size)[0].float().softmax(dim=-1)
            out.append(total / views)
    return torch.stack(out)


def predict_probs(models, x: Tensor, *, tta: bool = True, views: int = 2, flip_tta_probs=tta_probs, **kwargs) -> Tensor:
    """Probabilities ``(N, C)``: the softmax averaged over the members and, with ``tta``, the first ``views``
    views (2: ``x`` and its mirror image): the mean over members of :func:`member_probs`."""
    return member_probs(models, x, flip_tta_probs, views=views if tta else 1, **kwargs).mean(dim=0)


def accuracy(probs: Tensor, y: Tensor) -> Tensor:
    """Fraction of rows whose argmax is the label, as a 0-d device tensor."""
    return (probs.argmax(1) == y).float().mean()


# ------------------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class Parts:
    """The pieces of the pipeline that are this chapter's exercises, as functions with the exercises'
    signatures: :func:`epoch_batches` calls ``augment_batch(images, flip, top, left, mean, std, padding)``,
    :func:`build_net` ``whitening_filters(images, size, eps)``, and every evaluation (:func:`member_probs`)
    ``flip_tta_probs(model, x)``. The defaults are this module's references; a notebook passes its own,
    ``capstone.train_recipe(recipe, ds, seed, parts=capstone.Parts(augment_batch, whitening_filters,
    flip_tta_probs))``, and so runs the pipeline without them (the student release leaves them out). The loss
    has the value of ``F.cross_entropy(label_smoothing=ε)``, torch's own form of the exercise
    ``smoothed_cross_entropy`` (:func:`forward_loss`)."""

    augment_batch: object = augment_batch
    whitening_filters: object = whitening_filters
    flip_tta_probs: object = tta_probs


REFERENCE_PARTS = Parts()


@dataclass
class Result:
    """One :func:`train_recipe` run: the recipe's accuracy, what each eval-only trick adds, times, models.

    ``evaluations[(tta, ensemble)]`` is the test accuracy of the same networks evaluated with and
    without flip averaging and with all members or only the first. Times are seconds; ``train_seconds``
    covers every member's step loop (synchronised at each epoch's end) and excludes evaluation,
    ``compile_seconds`` the compile warm-up, ``prep_seconds`` statistics and the whitening fit.
    ``diverged`` is the epoch at whose end a member's loss was not finite (training stopped there), else None.
    """

    recipe: Recipe
    seed: int
    accuracy: float
    evaluations: dict
    train_seconds: float
    compile_seconds: float
    prep_seconds: float
    history: list = field(default_factory=list)
    models: list = field(default_factory=list, repr=False)
    diverged: int | None = None

    @property
    def status(self) -> str:
        """``"trained"``, or ``"diverged at epoch E"``."""
        return "trained" if self.diverged is None else f"diverged at epoch {self.diverged}"

    def to_record(self) -> dict:
        """A flat dict for a table (no models)."""
        return {"recipe": self.recipe.label(), "seed": self.seed, "accuracy": self.accuracy,
                "train_seconds": self.train_seconds, "compile_seconds": self.compile_seconds,
                "prep_seconds": self.prep_seconds, "status": self.status}


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device):
    """``torch.backends.cudnn.benchmark = True`` on CUDA for the block (fixed shapes: the fastest
    convolution algorithm is picked once per shape), restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def step_function(recipe: Recipe, device: torch.device):
    """``(step_fn, mark_step)`` for :func:`train_epoch`: :func:`forward_loss`, or with ``compile`` its shared
    compiled form (:func:`compiled_forward_loss`; ``recipe.compile_mode`` on CUDA, inductor's default
    elsewhere), and whether CUDA graphs need a step mark."""
    if not recipe.compile:
        return forward_loss, False
    mode = recipe.compile_mode if device.type == "cuda" else "default"
    return compiled_forward_loss(mode), device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")


def _compile_warmup(net: nn.Module, recipe: Recipe, batch: tuple, step_fn, mark_step: bool) -> None:
    """Three training steps of a *copy* of ``net`` through ``step_fn``, so that compiling (and CUDA-graph
    recording) happens here and not in the timed loop. ``net`` itself is never touched: training
    afterwards computes what it would have computed without the warm-up."""
    scratch = copy.deepcopy(net)
    opt, _ = make_optimizer(scratch, recipe, 3)
    smoothing = recipe.smoothing if recipe.label_smoothing else 0.0
    train_epoch(scratch, [batch] * 3, opt, [recipe.lr] * 3, smoothing, _amp(batch[0].device, recipe), step_fn, mark_step)


def _amp(device: torch.device, recipe: Recipe) -> bool:
    """bf16 autocast in the training step: on CUDA with ``recipe.amp``."""
    return device.type == "cuda" and recipe.amp


class EpochClock:
    """Wall seconds of a block, the host's share of them, and on CUDA the GPU's (CUDA events).

    ``host`` is the time until the Python loop has queued its last op, ``wall`` the time until the device
    has finished it (after a synchronisation), ``gpu`` the CUDA-event time between the block's first and
    last queued op. ``host / wall`` near 1 means the device waited for Python (launch-bound); well below
    1, Python ran ahead and waited for the device (compute-bound).
    """

    def __init__(self, device: torch.device):
        self.device, self.host, self.wall, self.gpu = device, 0.0, 0.0, None
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device.type == "cuda" else None

    def __enter__(self):
        self._started = time.perf_counter()
        if self._events:
            self._events[0].record()
        return self

    def __exit__(self, *exc):
        self.host = time.perf_counter() - self._started
        if self._events:
            self._events[1].record()
        runtime.synchronize(self.device)
        self.wall = time.perf_counter() - self._started
        if self._events:
            self.gpu = self._events[0].elapsed_time(self._events[1]) / 1000
        return False

    def record(self) -> dict:
        """``{"epoch_wall_seconds", "epoch_host_seconds"[, "epoch_gpu_seconds"]}`` for a history record."""
        out = {"epoch_wall_seconds": self.wall, "epoch_host_seconds": self.host}
        return out if self.gpu is None else {**out, "epoch_gpu_seconds": self.gpu}


def train_member(recipe: Recipe, ds: Dataset, seed: int, *, mean, std, eval_each_epoch: bool = False,
                 parts: Parts = REFERENCE_PARTS) -> dict:
    """Train one network of ``recipe`` on ``ds`` with ``seed``; returns its model, history, times and
    ``diverged`` (the epoch whose losses were not all finite; training stops there, else None).

    With ``ema`` the model returned (and evaluated) is the weights' moving average (:func:`ema_update`);
    with ``alternating_flips`` the flips of epoch 1 are drawn once (:func:`alternating_flip_base`) and
    alternate; with ``whiten_bias_epochs`` the stem's bias is trained for those epochs only. ``parts``
    (:class:`Parts`) are the augmentation, whitening and TTA functions it calls."""
    device = ds.x_train.device
    fmt, amp = _memory_format(device, recipe), _amp(device, recipe)
    generator = runtime.seed_everything(seed)           # initial weights: drawn on the CPU, the same on any device
    draws = torch.Generator(device=device).manual_seed(seed)  # batch order and augmentation, drawn where the data are
    started = time.perf_counter()
    net = build_net(recipe, ds.x_train, ds.num_classes, mean=mean, std=std, generator=generator,
                    whitening_filters=parts.whitening_filters).to(memory_format=fmt)
    runtime.synchronize(device)
    prep = time.perf_counter() - started
    step_fn, mark_step = step_function(recipe, device)
    compile_s = 0.0
    if recipe.compile:
        started = time.perf_counter()
        x0 = normalize(ds.x_train[:recipe.batch_size], mean, std).contiguous(memory_format=fmt)
        y0 = ds.y_train[:recipe.batch_size]
        smooth = recipe.smoothing if recipe.label_smoothing else 0.0
        batch = (x0, y0, loss_weights(y0, ds.num_classes, smooth, recipe.batch_size)) if smooth else (x0, y0)
        _compile_warmup(net, recipe, batch, step_fn, mark_step)
        runtime.synchronize(device)
        compile_s = time.perf_counter() - started
    per_epoch = len(ds.x_train) // recipe.batch_size
    opt, rates = make_optimizer(net, recipe, recipe.epochs * per_epoch)
    smoothing = recipe.smoothing if recipe.label_smoothing else 0.0
    padding = recipe.padding if recipe.augment else 0
    average = copy.deepcopy(net) if recipe.ema else net
    ema = ema_state(average, net, recipe.ema_decay) if recipe.ema else None
    flip_base = (alternating_flip_base(len(ds.x_train), draws, device)
                 if recipe.alternating_flips and recipe.augment else None)
    history, seconds, diverged = [], 0.0, None
    for epoch in range(1, recipe.epochs + 1):
        freeze_whiten_bias(opt, epoch, recipe)
        with EpochClock(device) as clock:
            batches = epoch_batches(ds.x_train, ds.y_train, recipe.batch_size, mean, std, padding=padding,
                                    flip=recipe.augment, generator=draws, memory_format=fmt, smoothing=smoothing,
                                    num_classes=ds.num_classes, flip_base=flip_base, epoch=epoch - 1,
                                    augment_batch=parts.augment_batch)
            losses, correct = train_epoch(net, batches, opt, rates[(epoch - 1) * per_epoch:], smoothing, amp,
                                          step_fn, mark_step, ema)
        seconds += clock.wall
        n = per_epoch * recipe.batch_size
        loss = float(losses.double().mean())                  # one read per epoch
        record = {"seed": seed, "epoch": epoch, "train_seconds": seconds,
                  "train_loss": loss, "train_acc": float(correct) / n, **clock.record()}
        if eval_each_epoch:
            x_test = normalize(ds.x_test, mean, std)
            record["test_acc"] = float(accuracy(predict_probs([average], x_test, tta=recipe.tta, views=recipe.tta_views,
                                                              flip_tta_probs=parts.flip_tta_probs,
                                                              ctx=fast_context(device, recipe), memory_format=fmt), ds.y_test))
        history.append(record)
        if not math.isfinite(loss):
            diverged = epoch
            break
    return {"model": average, "history": history, "train_seconds": seconds, "compile_seconds": compile_s,
            "prep_seconds": prep, "diverged": diverged}


def flops_per_step(recipe: Recipe, ds: Dataset) -> int:
    """FLOPs of one training step's forward and backward pass (``torch.utils.flop_counter.FlopCounterMode``:
    matmuls and convolutions, 2 per multiply-add) for ``recipe``'s network at its batch size."""
    from torch.utils.flop_counter import FlopCounterMode
    mean, std = input_stats(recipe, ds.x_train)
    net = build_net(recipe, ds.x_train, ds.num_classes, mean=mean, std=std)
    xb, yb = ds.x_train[:recipe.batch_size], ds.y_train[:recipe.batch_size]
    with FlopCounterMode(display=False) as counter:
        forward_loss(net, xb, yb, 0.0, False)[0].backward()
    return counter.get_total_flops()


def evaluate_members(models, x_test: Tensor, y_test: Tensor, recipe: Recipe, parts: Parts = REFERENCE_PARTS) -> dict:
    """Test accuracy for every ``(tta, ensemble)`` combination: ``{(bool, bool): float}``.

    ``ensemble=False`` uses the first member alone; ``tta`` averages ``recipe.tta_views`` views
    (:func:`member_probs` with ``parts.flip_tta_probs``), without it ``x_test`` alone. ``x_test`` must already
    be normalized as in training. The four combinations average different slices of the members' probabilities.
    """
    device = x_test.device
    kwargs = dict(ctx=fast_context(device, recipe), memory_format=_memory_format(device, recipe))
    probs = {tta: member_probs(models, x_test, parts.flip_tta_probs, views=recipe.tta_views if tta else 1, **kwargs)
             for tta in (True, False)}                                          # each (K, N, C)
    return {(tta, ens): float(accuracy(probs[tta][:len(models) if ens else 1].mean(dim=0), y_test))
            for tta in (True, False) for ens in (True, False)}


def input_stats(recipe: Recipe, x_train: Tensor) -> tuple[Tensor, Tensor]:
    """The ``(mean, std)`` a recipe normalizes its inputs with: the training split's per channel with
    ``whiten``, else 0 and 1 (raw pixels)."""
    if recipe.whiten:
        return channel_stats(x_train)
    channels = x_train.shape[1]
    return torch.zeros(channels, device=x_train.device), torch.ones(channels, device=x_train.device)


def split_accuracy(result: Result, ds: Dataset, split: str = "train", parts: Parts = REFERENCE_PARTS) -> float:
    """Accuracy of a trained recipe's networks on ``ds``'s ``"train"`` or ``"test"`` split, un-augmented and
    evaluated as the recipe evaluates (its TTA and ensemble switches, TTA by ``parts.flip_tta_probs``).
    Training accuracy against test accuracy is the train/test gap: how much the networks overfit."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    recipe, device = result.recipe, x.device
    mean, std = input_stats(recipe, ds.x_train)
    models = result.models if recipe.ensemble else result.models[:1]
    probs = predict_probs(models, normalize(x, mean, std), tta=recipe.tta, views=recipe.tta_views,
                          flip_tta_probs=parts.flip_tta_probs, ctx=fast_context(device, recipe),
                          memory_format=_memory_format(device, recipe))
    return float(accuracy(probs, y))


def smoothed_loss_floor(smoothing: float, num_classes: int) -> float:
    """The lowest value of the label-smoothed cross entropy: the entropy of the target
    ``q = (1 − ε)·onehot + ε/C``, ``−(a·ln a + (C − 1)·b·ln b)`` with ``a = 1 − ε + ε/C``, ``b = ε/C``."""
    a, b = 1 - smoothing + smoothing / num_classes, smoothing / num_classes
    return -(a * math.log(a) + ((num_classes - 1) * b * math.log(b) if b > 0 else 0.0))


def train_recipe(recipe: Recipe, ds: Dataset, seed: int = 0, *, eval_each_epoch: bool = False,
                 parts: Parts = REFERENCE_PARTS) -> Result:
    """Train ``recipe.n_members`` networks on ``ds`` (seeds ``seed, seed + 1000, ...``) and test them.

    The statistics (mean/std) come from the training split only; with ``whiten`` off the inputs are
    raw pixels. ``eval_each_epoch`` adds each member's test accuracy after every epoch to the history
    (outside the timed loop), which :func:`time_to_accuracy` reads. A member whose loss is not finite at
    an epoch's end ends the run there: ``Result.diverged`` names the epoch and no further member is trained.
    ``parts`` (:class:`Parts`): the augmentation, whitening and TTA functions used, this module's by default.
    """
    started = time.perf_counter()
    mean, std = input_stats(recipe, ds.x_train)
    x_test = normalize(ds.x_test, mean, std)
    stats_s = time.perf_counter() - started
    runs = []
    with _cudnn_benchmark(ds.x_train.device):
        for k in range(recipe.n_members):
            runs.append(train_member(recipe, ds, seed + 1000 * k, mean=mean, std=std, eval_each_epoch=eval_each_epoch,
                                     parts=parts))
            if runs[-1]["diverged"] is not None:
                break
    models = [r["model"] for r in runs]
    evaluations = evaluate_members(models, x_test, ds.y_test, recipe, parts)
    return Result(recipe, seed, evaluations[recipe.tta, recipe.ensemble], evaluations,
                  sum(r["train_seconds"] for r in runs), sum(r["compile_seconds"] for r in runs),
                  stats_s + sum(r["prep_seconds"] for r in runs),
                  [dict(member=k, **h) for k, r in enumerate(runs) for h in r["history"]], models,
                  next((r["diverged"] for r in runs if r["diverged"] is not None), None))


def time_to_accuracy(history: list[dict], target: float) -> float:
    """Training seconds at the first epoch whose test accuracy reaches ``target`` (DAWNBench's metric), or NaN."""
    for record in history:
        if record.get("test_acc", -1.0) >= target:
            return record["train_seconds"]
    return math.nan


# ------------------------------------------------------------------------------------------ ablation


def ablation(recipe: Recipe, ds: Dataset, seeds, tricks=TRICKS, *, candidates=(), baseline: dict | None = None,
             progress=None, parts: Parts = REFERENCE_PARTS) -> pd.DataFrame:
    """Remove one trick at a time from ``recipe``, then switch on one candidate at a time; one row per
    (removed or added trick, seed), tidy.

    Columns ``removed`` (:data:`FULL` for the full recipe), ``seed``, ``accuracy``, ``train_seconds``.
    Training tricks are retrained without the trick; the eval-only tricks (:data:`EVAL_TRICKS`) are read
    off the full recipe's own networks (the same training, evaluated without flips, or with one member,
    whose training time is then one member's share). ``candidates`` (names of :data:`CANDIDATES`, none by
    default) add rows ``"added <name>"``: ``recipe.but(**CANDIDATES[name])`` retrained, or for the eval-only
    ``multiview_tta`` the full recipe's networks evaluated with its views. ``baseline`` maps seeds to
    :class:`Result` s of ``recipe`` already trained on ``ds`` (they are reused); ``progress(row)`` is called
    after each row. Every run trains and evaluates with ``parts`` (:class:`Parts`).
    """
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise ValueError(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    rows, baseline = [], dict(baseline or {})
    for seed in seeds:
        full = baseline[seed] if seed in baseline else train_recipe(recipe, ds, seed, parts=parts)
        if full.recipe != recipe:
            raise ValueError(f"the baseline for seed {seed} was trained with a different recipe")
        rows.append(_row(FULL, full, full.accuracy, full.train_seconds))
        for trick in tricks:
            if trick in EVAL_TRICKS:
                key = (recipe.tta and trick != "tta", recipe.ensemble and trick != "ensemble")
                share = full.train_seconds / recipe.n_members if trick == "ensemble" else full.train_seconds
                rows.append(_row(trick, full, full.evaluations[key], share))
            else:
                r = train_recipe(recipe.without(trick), ds, seed, parts=parts)
                rows.append(_row(trick, r, r.accuracy, r.train_seconds))
            if progress is not None:
                progress(rows[-1])
        for name in candidates:
            rows.append(_candidate_row(name, full, ds, parts))
            if progress is not None:
                progress(rows[-1])
    return pd.DataFrame(rows)


def _candidate_row(name: str, full: Result, ds: Dataset, parts: Parts = REFERENCE_PARTS) -> dict:
    """The ablation row of candidate ``name`` switched on in ``full.recipe`` (:data:`CANDIDATES`): retrained
    with the same seed, or (:data:`EVAL_CANDIDATES`) ``full``'s own networks evaluated with it."""
    recipe = full.recipe.but(**CANDIDATES[name])
    if name in EVAL_CANDIDATES:
        acc = split_accuracy(replace(full, recipe=recipe), ds, "test", parts)
        return _row(ADDED + name, full, acc, full.train_seconds)
    r = train_recipe(recipe, ds, full.seed, parts=parts)
    return _row(ADDED + name, r, r.accuracy, r.train_seconds)


def _row(removed: str, result: Result, acc: float, seconds: float) -> dict:
    """One ablation record; ``final_train_loss`` is the members' mean last-epoch loss (NaN or ~ln C: diverged)."""
    last = [h["train_loss"] for h in result.history if h["epoch"] == result.recipe.epochs]
    return {"removed": removed, "seed": result.seed, "accuracy": acc, "train_seconds": seconds,
            "final_train_loss": sum(last) / len(last) if last else math.nan}


def summarize_ablation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per removed trick: mean and std (ddof=1; NaN with one seed) of the accuracy, seeds, the change
    ``delta`` = mean − the full recipe's mean, and the mean training seconds and final training loss
    (where recorded); the full recipe first."""
    g = frame.groupby("removed", sort=False)
    table = pd.DataFrame({"mean": g["accuracy"].mean(), "std": g["accuracy"].std(), "seeds": g["accuracy"].size(),
                          "train_seconds": g["train_seconds"].mean()})
    table["delta"] = table["mean"] - table.loc[FULL, "mean"]
    columns = ["mean", "std", "seeds", "delta", "train_seconds"]
    if "final_train_loss" in frame:
        table["final_train_loss"] = g["final_train_loss"].mean()
        columns.append("final_train_loss")
    order = [FULL] + [t for t in table.index if t != FULL]
    return table.loc[order, columns]


def noise_level(summary: pd.DataFrame, n_test: int) -> pd.Series:
    """Two standard errors of each ``delta``: ``2·sqrt(se_seeds² + 2·p(1 − p)/n_test)``.

    ``se_seeds² = s_trick²/n + s_full²/n`` from the spread over seeds (0 with one seed) and the second
    term is the binomial noise of two accuracies on ``n_test`` test images. A rough two-sigma rule.
    """
    full = summary.loc[FULL]
    var_seeds = (summary["std"].fillna(0) ** 2 / summary["seeds"] + (0 if math.isnan(full["std"]) else full["std"] ** 2) / full["seeds"])
    p = summary["mean"].clip(0, 1)
    return 2 * (var_seeds + 2 * p * (1 - p) / max(n_test, 1)) ** 0.5


def verdicts(summary: pd.DataFrame, n_test: int) -> pd.Series:
    """One sentence per trick, computed from the measured ``delta`` and :func:`noise_level`:
    it *helps* (removing it costs more than the noise), *hurts* (removing it gains more), or has
    *no measurable effect* in this run. A candidate's row (``"added <name>"``) reads the other way:
    it helps when adding it gains more than the noise."""
    noise = noise_level(summary, n_test)
    out = {}
    for trick, row in summary.drop(index=FULL).iterrows():
        d, t = 100 * row["delta"], 100 * noise[trick]
        if trick.startswith(ADDED):
            out[trick] = (f"helps: adding it gains {d:.2f} points (noise ±{t:.2f})" if d > t else
                          f"hurts here: adding it costs {-d:.2f} points (noise ±{t:.2f})" if d < -t else
                          f"no measurable effect in this run: {d:+.2f} points is within the noise (±{t:.2f})")
        elif d < -t:
            out[trick] = f"helps: removing it costs {-d:.2f} points (noise ±{t:.2f})"
        elif d > t:
            out[trick] = f"hurts here: removing it gains {d:.2f} points (noise ±{t:.2f})"
        else:
            out[trick] = f"no measurable effect in this run: {d:+.2f} points is within the noise (±{t:.2f})"
    return pd.Series(out, name="verdict")


def recipe_table(recipe: Recipe) -> pd.DataFrame:
    """The recipe's fields as a two-column table (for printing)."""
    return pd.DataFrame({"value": [str(v) for v in asdict(recipe).values()]}, index=[f.name for f in fields(recipe)])
