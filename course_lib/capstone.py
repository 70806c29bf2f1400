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

The fast path computes the same thing as a plain loop, only faster: the data stay on the device
(:class:`course_lib.data.DeviceLoader`), augmentation is one batched operation per batch, the step loop
never synchronises with the host (metrics are summed on the device and read once per epoch), and on
CUDA it runs ``channels_last`` under bf16 autocast; ``Recipe(compile=True)`` adds ``torch.compile``,
with its compile time reported on its own.

Sources: Keller Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single A100" (airbench: the
device-resident loader, patch whitening, label smoothing 0.2, Nesterov SGD with warm-up and decay,
flip TTA); Szegedy et al. (2016), "Rethinking the Inception Architecture", section 7 (label smoothing);
He et al. (2015), "Delving Deep into Rectifiers" (He init); Ioffe & Szegedy (2015) (batch norm);
Coleman et al. (2017), DAWNBench (time to accuracy).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import augment, ensemble, init, preprocess, runtime, schedules
from .data import Dataset, DeviceLoader

TRICKS = ("augment", "whiten", "he_init", "bn", "schedule", "label_smoothing", "tta", "ensemble")
EVAL_TRICKS = ("tta", "ensemble")  # removing these needs no retraining: the same networks, evaluated differently
FULL = "none (full recipe)"

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

    def label(self) -> str:
        """The tricks that are off, for tables: ``"full recipe"`` or ``"without bn, tta"``."""
        off = [t for t in TRICKS if not getattr(self, t)]
        return "full recipe" if not off else "without " + ", ".join(off)


#: The recipe of ``benchmarks/time_to_accuracy.py`` (one network, the whole training set).
BENCHMARK_RECIPE = Recipe(epochs=3, batch_size=256, lr=0.2, widths=(32, 64, 128), ensemble=False)

#: The chapter's two configurations (``runtime.pick(quick=..., full=...)``), shared with the benchmark's
#: ``--ablation``: the training/test subset sizes (``None``: the whole split), the seeds and the recipe.
PROFILES = {
    "quick": dict(n_train=2000, n_test=2000, seeds=[0],
                  recipe=Recipe(epochs=3, batch_size=64, lr=0.2, widths=(16, 32, 64), members=2, whiten_images=512)),
    "full": dict(n_train=None, n_test=None, seeds=[0, 1, 2, 3, 4],
                 recipe=Recipe(epochs=10, batch_size=256, lr=0.2, widths=(64, 128, 256), convs_per_block=2, members=2)),
}

# -------------------------------------------------------------------------------- data and augmentation


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std ``(C,)`` of images ``(N, C, H, W)``: fit on the training split only (ch. 02)."""
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x − mean_c) / std_c`` per channel ``c``."""
    return (images - mean[:, None, None]) / std[:, None, None]


def augment_batch(images: Tensor, flip: Tensor, top: Tensor, left: Tensor, mean: Tensor, std: Tensor,
                  padding: int) -> Tensor:
    """Flip, then translate, then normalize: ``normalize(crop(hflip(x, flip), top, left, padding))``.

    The zero padding of the crop is black (0) in pixel space, which is Fashion-MNIST's background;
    normalizing first would pad with the *mean* (0 after normalization), a grey frame that never
    occurs in a test image. ``top``/``left`` index the padded image (``0 .. 2·padding``).
    """
    shifted = augment.crop(augment.hflip(images, flip), top, left, images.shape[-2:], padding, check=False)
    return normalize(shifted, mean, std)


class BatchAugment:
    """Draws the flip mask and offsets for a whole batch from ``generator`` and applies :func:`augment_batch`.

    With ``flip=False`` and ``padding=0`` it only normalizes (``mean=0, std=1`` make that the identity).
    """

    def __init__(self, mean, std, padding: int = 2, flip: bool = True, generator: torch.Generator | None = None):
        self.mean, self.std, self.padding, self.flip = mean, std, padding, flip
        self.draw_flip = augment.RandomHFlip(generator=generator)
        self.draw_crop = augment.RandomCrop(1, padding=padding, generator=generator)  # size is set per batch

    def __call__(self, images: Tensor) -> Tensor:
        if not self.flip and not self.padding:
            return normalize(images, self.mean, self.std)
        n = images.shape[0]
        mask = self.draw_flip.sample(images)["mask"] if self.flip else torch.zeros(n, dtype=torch.bool)
        self.draw_crop.size = images.shape[-2:]
        offsets = self.draw_crop.sample(images)
        return augment_batch(images, mask.to(images.device), offsets["top"].to(images.device),
                             offsets["left"].to(images.device), self.mean, self.std, self.padding)


# --------------------------------------------------------------------------------- patch whitening


def image_patches(images: Tensor, size: int) -> Tensor:
    """Every ``size x size`` patch (stride 1, no padding) of every image, flattened: ``(N·L, C·size²)``.

    Entry order is channel, row, column: the order of a conv weight ``(out, C, size, size)`` flattened.
    """
    cols = F.unfold(images, size)                      # (N, C·size², L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def whitening_filters(images: Tensor, size: int = 3, eps: float = 5e-4) -> tuple[Tensor, Tensor]:
    """Patch-whitening weights and bias for a ``Conv2d(C, 2·C·size², size)``, after airbench (Jordan 2024).

    With the patches' mean ``μ`` and covariance ``Σ = U diag(λ) Uᵀ`` (eigenvalues decreasing), filter
    ``k`` is ``u_k / sqrt(λ_k + ε)`` reshaped to ``(C, size, size)``, its bias ``−μ·u_k / sqrt(λ_k + ε)``,
    so the conv computes the PCA-whitened coordinates of every patch (:class:`course_lib.preprocess.Whitening`
    with ``"pca"``: eigenvector filters, not ZCA's centre-surround ones). The filters are followed by their
    negatives, so that a ReLU after the layer keeps both signs. Returns ``(weight (2K, C, size, size),
    bias (2K,))`` with ``K = C·size²``; :func:`build_net` copies both into the stem and freezes them, so
    the bias here is the fixed centring term and is never trained.

    airbench differs in two ways: its filters come from the *uncentred* second moment of the normalized
    patches (``patches.T @ patches / n``), and its whitening conv has a learnable bias, initialised to 0
    and trained for the first ``whiten_bias_epochs`` (3) epochs, then frozen like the weights.
    """
    patches = image_patches(images, size)
    white = preprocess.Whitening("pca", eps).fit(patches)
    weight = white.W.T.reshape(-1, images.shape[1], size, size)
    bias = -(white.mean @ white.W)
    return torch.cat([weight, -weight]), torch.cat([bias, -bias])


# ------------------------------------------------------------------------------------------ the network


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
                layers += [nn.BatchNorm2d(width) if recipe.bn else nn.Identity(), nn.ReLU()]
                channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(F.relu(self.stem(x)))
        return self.head(torch.amax(h, dim=(2, 3)))


def build_net(recipe: Recipe, x_train: Tensor, num_classes: int, *, mean=None, std=None,
              generator: torch.Generator | None = None) -> CapstoneNet:
    """A :class:`CapstoneNet` on ``x_train``'s device, initialised as the recipe says.

    Weights: He normal (``he_init``) or ``0.01·N(0,1)``, biases 0 (:func:`course_lib.init.init_module_`).
    With ``whiten`` the stem gets :func:`whitening_filters` of the first ``whiten_images`` training images
    (normalized with ``mean``/``std``) and is frozen.
    """
    net = CapstoneNet(x_train.shape[1], num_classes, recipe)  # initialised on the CPU: the same weights on any device
    init.init_module_(net, "kaiming_normal" if recipe.he_init else "small", generator=generator)
    net = net.to(x_train.device)
    if recipe.whiten:
        sample = x_train[:recipe.whiten_images]
        if mean is not None:
            sample = normalize(sample, mean, std)
        weight, bias = whitening_filters(sample, recipe.patch_size, recipe.whiten_eps)
        with torch.no_grad():
            net.stem.weight.copy_(weight)
            net.stem.bias.copy_(bias)
        net.stem.requires_grad_(False)
    return net


# ----------------------------------------------------------------------------------- loss and optimizer


def label_smoothing_loss(logits: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross entropy against the smoothed target ``q = (1 − ε)·onehot(y) + ε/C`` (Szegedy et al. 2016):

    ``mean_n [ (1 − ε)·(−log p_{n,y_n}) + ε·mean_c(−log p_{n,c}) ]``, with ``p = softmax(logits)``.
    Equal to ``F.cross_entropy(logits, target, label_smoothing=ε)``.
    """
    logp = logits.log_softmax(dim=-1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    return ((1 - smoothing) * nll - smoothing * logp.mean(dim=-1)).mean()


def make_optimizer(net: nn.Module, recipe: Recipe, steps: int):
    """Nesterov SGD (``torch.optim.SGD``) and a per-step ``LambdaLR``: warm-up + cosine decay, or constant.

    The schedule is :func:`course_lib.schedules.warmup_cosine_factor` with ``warmup·steps`` warm-up steps
    from 10% of the peak rate (Goyal et al. 2017; airbench warms up and decays linearly).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                          weight_decay=recipe.weight_decay)
    if recipe.schedule:
        factor = partial(schedules.warmup_cosine_factor, warmup=int(recipe.warmup * steps), total=steps,
                         start_factor=0.1)
    else:
        factor = lambda t: 1.0  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ------------------------------------------------------------------------------- the fast step loop


def fast_context(device: torch.device, recipe: Recipe):
    """bf16 autocast on CUDA when ``recipe.amp``; a no-op context elsewhere."""
    if device.type == "cuda" and recipe.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _memory_format(device: torch.device, recipe: Recipe):
    """``channels_last`` on CUDA with ``amp`` (faster convolutions on tensor cores), else contiguous."""
    return torch.channels_last if device.type == "cuda" and recipe.amp else torch.contiguous_format


def train_epoch(model: nn.Module, loader, optimizer, scheduler, smoothing: float, ctx, memory_format) -> tuple[Tensor, Tensor, int]:
    """One pass over ``loader``; returns the summed loss and correct count *as device tensors*, and n.

    Nothing in the loop reads a value back to the host (no ``.item()``, ``float()``, ``bool()``):
    the GPU never waits for Python, and Python never waits for the GPU.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum, correct, n = torch.zeros((), device=device), torch.zeros((), device=device), 0
    for xb, yb in loader:
        xb = xb.contiguous(memory_format=memory_format)
        with ctx:
            logits = model(xb)
        loss = label_smoothing_loss(logits.float(), yb, smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        n += len(yb)
    return loss_sum, correct, n


def view_logits(models, x: Tensor, *, tta: bool = True, batch_size: int = 500, ctx=None,
                memory_format=torch.contiguous_format) -> Tensor:
    """Logits ``(V, K, N, C)`` of the ``K`` members on the ``V`` views of ``x``: itself and, with ``tta``,
    its mirror image (:func:`course_lib.ensemble.predict_logits`, in eval mode), as float32."""
    ctx = ctx if ctx is not None else contextlib.nullcontext()
    views = [x, x.flip(-1)] if tta else [x]
    with ctx:
        out = [ensemble.predict_logits(list(models), v.contiguous(memory_format=memory_format), batch_size)
               for v in views]
    return torch.stack(out).float()


def predict_probs(models, x: Tensor, *, tta: bool = True, **kwargs) -> Tensor:
    """Probabilities ``(N, C)``: the softmax averaged over the members and, with ``tta``, the two flips.

    ``mean_{k, v} softmax(f_k(v(x)))`` with views ``v ∈ {identity, hflip}``
    (:func:`course_lib.ensemble.average_probs` over the member × view logits of :func:`view_logits`).
    """
    logits = view_logits(models, x, tta=tta, **kwargs)
    return ensemble.average_probs(logits.flatten(0, 1))


def tta_probs(model: nn.Module, x: Tensor) -> Tensor:
    """Test-time flip averaging for one network: ``(softmax(f(x)) + softmax(f(hflip(x)))) / 2``, in eval mode."""
    return predict_probs([model], x, tta=True)


def accuracy(probs: Tensor, y: Tensor) -> Tensor:
    """Fraction of rows whose argmax is the label, as a 0-d device tensor."""
    return (probs.argmax(1) == y).float().mean()


# ------------------------------------------------------------------------------------------ training


@dataclass
class Result:
    """One :func:`train_recipe` run: the recipe's accuracy, what each eval-only trick adds, times, models.

    ``evaluations[(tta, ensemble)]`` is the test accuracy of the same networks evaluated with and
    without flip averaging and with all members or only the first. Times are seconds; ``train_seconds``
    covers every member's step loop (synchronised at each epoch's end) and excludes evaluation,
    ``compile_seconds`` the compile warm-up, ``prep_seconds`` statistics and the whitening fit.
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

    def to_record(self) -> dict:
        """A flat dict for a table (no models)."""
        return {"recipe": self.recipe.label(), "seed": self.seed, "accuracy": self.accuracy,
                "train_seconds": self.train_seconds, "compile_seconds": self.compile_seconds,
                "prep_seconds": self.prep_seconds}


def _compile_warmup(net: nn.Module, recipe: Recipe, x: Tensor, y: Tensor, ctx, memory_format) -> nn.Module:
    """``torch.compile(net)``, run on two training steps and one evaluation so that compiling happens here,
    then every weight, buffer and BN statistic restored: training afterwards computes the same thing."""
    compiled = torch.compile(net)
    state = copy.deepcopy(net.state_dict())
    opt, sched = make_optimizer(net, recipe, 2)
    xb, yb = x[:recipe.batch_size], y[:recipe.batch_size]
    train_epoch(compiled, [(xb, yb), (xb, yb)], opt, sched, recipe.smoothing * recipe.label_smoothing, ctx, memory_format)
    predict_probs([compiled], x[:recipe.batch_size], tta=False, ctx=ctx, memory_format=memory_format)
    net.load_state_dict(state)
    return compiled


def train_member(recipe: Recipe, ds: Dataset, seed: int, *, mean, std, eval_each_epoch: bool = False) -> dict:
    """Train one network of ``recipe`` on ``ds`` with ``seed``; returns its model, history and times."""
    device = ds.x_train.device
    ctx, fmt = fast_context(device, recipe), _memory_format(device, recipe)
    generator = runtime.seed_everything(seed)           # initial weights: drawn on the CPU, the same on any device
    draws = torch.Generator(device=device).manual_seed(seed)  # batch order and augmentation, drawn where the data are
    started = time.perf_counter()
    net = build_net(recipe, ds.x_train, ds.num_classes, mean=mean, std=std, generator=generator).to(memory_format=fmt)
    runtime.synchronize(device)
    prep = time.perf_counter() - started
    model, compile_s = net, 0.0
    if recipe.compile:
        started = time.perf_counter()
        model = _compile_warmup(net, recipe, normalize(ds.x_train, mean, std), ds.y_train, ctx, fmt)
        runtime.synchronize(device)
        compile_s = time.perf_counter() - started
    transform = BatchAugment(mean, std, recipe.padding if recipe.augment else 0, flip=recipe.augment, generator=draws)
    loader = DeviceLoader(ds.x_train, ds.y_train, recipe.batch_size, shuffle=True, generator=draws,
                          transform=transform, drop_last=True)
    opt, sched = make_optimizer(net, recipe, recipe.epochs * len(loader))
    smoothing = recipe.smoothing if recipe.label_smoothing else 0.0
    history, seconds = [], 0.0
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        loss_sum, correct, n = train_epoch(model, loader, opt, sched, smoothing, ctx, fmt)
        runtime.synchronize(device)
        seconds += time.perf_counter() - started
        record = {"seed": seed, "epoch": epoch, "train_seconds": seconds,
                  "train_loss": float(loss_sum) / n, "train_acc": float(correct) / n}  # one read per epoch
        if eval_each_epoch:
            x_test = normalize(ds.x_test, mean, std)
            record["test_acc"] = float(accuracy(predict_probs([model], x_test, tta=recipe.tta, ctx=ctx,
                                                              memory_format=fmt), ds.y_test))
        history.append(record)
    return {"model": model, "history": history, "train_seconds": seconds, "compile_seconds": compile_s,
            "prep_seconds": prep}


def evaluate_members(models, x_test: Tensor, y_test: Tensor, recipe: Recipe) -> dict:
    """Test accuracy for every ``(tta, ensemble)`` combination: ``{(bool, bool): float}``.

    ``ensemble=False`` uses the first member alone. ``x_test`` must already be normalized as in training.
    Each member sees each view once; the four combinations average different slices of those logits.
    """
    device = x_test.device
    logits = view_logits(models, x_test, tta=True, ctx=fast_context(device, recipe),
                         memory_format=_memory_format(device, recipe))          # (2, K, N, C)
    out = {}
    for tta in (True, False):
        for ens in (True, False):
            chosen = logits[:2 if tta else 1, :len(models) if ens else 1]
            out[tta, ens] = float(accuracy(ensemble.average_probs(chosen.flatten(0, 1)), y_test))
    return out


def input_stats(recipe: Recipe, x_train: Tensor) -> tuple[Tensor, Tensor]:
    """The ``(mean, std)`` a recipe normalizes its inputs with: the training split's per channel with
    ``whiten``, else 0 and 1 (raw pixels)."""
    if recipe.whiten:
        return channel_stats(x_train)
    channels = x_train.shape[1]
    return torch.zeros(channels, device=x_train.device), torch.ones(channels, device=x_train.device)


def split_accuracy(result: Result, ds: Dataset, split: str = "train") -> float:
    """Accuracy of a trained recipe's networks on ``ds``'s ``"train"`` or ``"test"`` split, un-augmented and
    evaluated as the recipe evaluates (its TTA and ensemble switches). Training accuracy against test
    accuracy is the train/test gap: how much the networks overfit."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    recipe, device = result.recipe, x.device
    mean, std = input_stats(recipe, ds.x_train)
    models = result.models if recipe.ensemble else result.models[:1]
    probs = predict_probs(models, normalize(x, mean, std), tta=recipe.tta, ctx=fast_context(device, recipe),
                          memory_format=_memory_format(device, recipe))
    return float(accuracy(probs, y))


def smoothed_loss_floor(smoothing: float, num_classes: int) -> float:
    """The lowest value of the label-smoothed cross entropy: the entropy of the target
    ``q = (1 − ε)·onehot + ε/C``, ``−(a·ln a + (C − 1)·b·ln b)`` with ``a = 1 − ε + ε/C``, ``b = ε/C``."""
    a, b = 1 - smoothing + smoothing / num_classes, smoothing / num_classes
    return -(a * math.log(a) + ((num_classes - 1) * b * math.log(b) if b > 0 else 0.0))


def train_recipe(recipe: Recipe, ds: Dataset, seed: int = 0, *, eval_each_epoch: bool = False) -> Result:
    """Train ``recipe.n_members`` networks on ``ds`` (seeds ``seed, seed + 1000, ...``) and test them.

    The statistics (mean/std) come from the training split only; with ``whiten`` off the inputs are
    raw pixels. ``eval_each_epoch`` adds each member's test accuracy after every epoch to the history
    (outside the timed loop), which :func:`time_to_accuracy` reads.
    """
    started = time.perf_counter()
    mean, std = input_stats(recipe, ds.x_train)
    x_test = normalize(ds.x_test, mean, std)
    stats_s = time.perf_counter() - started
    runs = [train_member(recipe, ds, seed + 1000 * k, mean=mean, std=std, eval_each_epoch=eval_each_epoch)
            for k in range(recipe.n_members)]
    models = [r["model"] for r in runs]
    evaluations = evaluate_members(models, x_test, ds.y_test, recipe)
    return Result(recipe, seed, evaluations[recipe.tta, recipe.ensemble], evaluations,
                  sum(r["train_seconds"] for r in runs), sum(r["compile_seconds"] for r in runs),
                  stats_s + sum(r["prep_seconds"] for r in runs),
                  [dict(member=k, **h) for k, r in enumerate(runs) for h in r["history"]], models)


def time_to_accuracy(history: list[dict], target: float) -> float:
    """Training seconds at the first epoch whose test accuracy reaches ``target`` (DAWNBench's metric), or NaN."""
    for record in history:
        if record.get("test_acc", -1.0) >= target:
            return record["train_seconds"]
    return math.nan


# ------------------------------------------------------------------------------------------ ablation


def ablation(recipe: Recipe, ds: Dataset, seeds, tricks=TRICKS, *, baseline: dict | None = None,
             progress=None) -> pd.DataFrame:
    """Remove one trick at a time from ``recipe``; one row per (removed trick, seed), tidy.

    Columns ``removed`` (:data:`FULL` for the full recipe), ``seed``, ``accuracy``, ``train_seconds``.
    Training tricks are retrained without the trick; the eval-only tricks (:data:`EVAL_TRICKS`) are read
    off the full recipe's own networks (the same training, evaluated without flips, or with one member,
    whose training time is then one member's share). ``baseline`` maps seeds to :class:`Result` s of
    ``recipe`` already trained on ``ds`` (they are reused); ``progress(row)`` is called after each row.
    """
    rows, baseline = [], dict(baseline or {})
    for seed in seeds:
        full = baseline[seed] if seed in baseline else train_recipe(recipe, ds, seed)
        if full.recipe != recipe:
            raise ValueError(f"the baseline for seed {seed} was trained with a different recipe")
        rows.append(_row(FULL, full, full.accuracy, full.train_seconds))
        for trick in tricks:
            if trick in EVAL_TRICKS:
                key = (recipe.tta and trick != "tta", recipe.ensemble and trick != "ensemble")
                share = full.train_seconds / recipe.n_members if trick == "ensemble" else full.train_seconds
                rows.append(_row(trick, full, full.evaluations[key], share))
            else:
                r = train_recipe(recipe.without(trick), ds, seed)
                rows.append(_row(trick, r, r.accuracy, r.train_seconds))
            if progress is not None:
                progress(rows[-1])
    return pd.DataFrame(rows)


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
    *no measurable effect* in this run."""
    noise = noise_level(summary, n_test)
    out = {}
    for trick, row in summary.drop(index=FULL).iterrows():
        d, t = 100 * row["delta"], 100 * noise[trick]
        if d < -t:
            out[trick] = f"helps: removing it costs {-d:.2f} points (noise ±{t:.2f})"
        elif d > t:
            out[trick] = f"hurts here: removing it gains {d:.2f} points (noise ±{t:.2f})"
        else:
            out[trick] = f"no measurable effect in this run: {d:+.2f} points is within the noise (±{t:.2f})"
    return pd.Series(out, name="verdict")


def recipe_table(recipe: Recipe) -> pd.DataFrame:
    """The recipe's fields as a two-column table (for printing)."""
    return pd.DataFrame({"value": [str(v) for v in asdict(recipe).values()]}, index=[f.name for f in fields(recipe)])
