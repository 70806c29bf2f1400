"""Batched data augmentation on whatever device the batch lives on (chapter 01).

Every function takes a batch ``images`` of shape ``(N, C, H, W)``, floats in [0, 1], and returns a new
batch on the same device. There is no per-sample Python loop: per-sample parameters are tensors of
shape ``(N,)`` (or ``(N, 3)``) and every operation is one batched tensor operation.

Randomness is kept apart from computation, as in ``torchvision.transforms.v2``:

- the *functional core* (:func:`hflip`, :func:`crop`, :func:`resized_crop`, :func:`rotate_scale`,
  :func:`adjust_hsv`, :func:`fancy_pca`, :func:`gaussian_noise`) takes its random parameters as
  arguments, so two implementations can be compared exactly;
- the *sampling classes* (:class:`RandomHFlip`, :class:`RandomCrop`, :class:`RandomResizedCrop`,
  :class:`RandomRotateScale`, :class:`HSVJitter`, :class:`FancyPCA`, :class:`GaussianNoise`) draw those
  parameters from a ``torch.Generator`` on its device (a CPU one keeps results the same on every device;
  the parameters are then moved to the batch's device), or from torch's default RNG *of the batch's
  device* when no generator is given, and chain with :class:`Compose`;
- :class:`BatchPipeline` is the fast path for training: flip, zero-padded crop, HSV jitter and fancy PCA
  with *all* of a batch's random numbers drawn in one ``torch.rand`` call on the batch's device, applied
  by the same functional core; ``compiled=True`` runs that core through ``torch.compile(fullgraph=True)``,
  which fuses it into a few kernels (on a GPU the pipeline is then bound by memory bandwidth).

Every function that computes an exercise's formula, helpers included, is a ``@reference`` of chapter 01, left
out of the student release; so are the transforms by default. :class:`RandomHFlip`, :class:`RandomCrop`,
:class:`HSVJitter` and :class:`FancyPCA` take the functions that apply (and draw) as arguments
(``RandomCrop(28, padding=3, crop=crop)``, ``HSVJitter(adjust=adjust_hsv, draw=hsv_params)``,
``FancyPCA.fit(x, fit=fit_fancy_pca, shift=fancy_pca)``), so that chapter 01's notebook runs them with the
student's own functions.

Sources: the seeds 000, 002 and 003 ("data augmentation": flips, random crops, rotation with scaling,
noise, the HSV recipe, fancy PCA); Krizhevsky, Sutskever & Hinton (2012), "ImageNet Classification
with Deep Convolutional Neural Networks", section 4.1 (fancy PCA); Szegedy et al. (2015), "Going
Deeper with Convolutions" (random resized crops).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .release import reference
from .runtime import generator_device

# ------------------------------------------------------------------------------------------ helpers


def _check_images(images: Tensor, channels: int | None = None) -> None:
    """Raise ``ValueError`` unless ``images`` is a floating ``(N, C, H, W)`` tensor (with ``channels``)."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected a float batch of shape (N, C, H, W), got {shape}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"expected {channels} channels (N, {channels}, H, W), got shape {tuple(images.shape)}")


def _per_sample(value, images: Tensor, dtype=None) -> Tensor:
    """``value`` (a number, or a tensor of shape ``(N,)``) as a tensor on the batch's device.

    A number stays a 0-d tensor (it broadcasts); a tensor must have one entry per sample.
    """
    t = torch.as_tensor(value, dtype=dtype or images.dtype).to(images.device, non_blocking=True)
    if t.dim() > 0 and t.shape != (images.shape[0],):
        raise ValueError(f"expected one value per sample, shape ({images.shape[0]},), got {tuple(t.shape)}")
    return t


def _as_offsets(value, n: int, name: str) -> Tensor:
    """Integer offsets (a number or ``(N,)``) as an int64 tensor of shape ``(N,)`` (on its own device)."""
    t = torch.as_tensor(value)
    if t.is_floating_point():
        raise ValueError(f"{name} must be integers, got dtype {t.dtype}")
    t = t.long().expand(n) if t.dim() == 0 else t.long()
    if t.shape != (n,):
        raise ValueError(f"{name} must be a number or have shape ({n},), got {tuple(t.shape)}")
    return t


def _pair(size) -> tuple[int, int]:
    """``size`` as ``(height, width)``."""
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _draw_device(generator: torch.Generator | None, images: Tensor) -> torch.device:
    """Where a sampler draws: on ``generator``'s device, or with torch's default RNG of the batch's device
    when ``generator`` is ``None`` (no host-to-device copy of the parameters)."""
    return generator.device if generator is not None else images.device


def _uniform(n: int, low: float, high: float, generator, device=None) -> Tensor:
    """``n`` samples of ``U(low, high)`` drawn from ``generator`` (on ``device`` when ``generator`` is None)."""
    u = torch.rand(n, generator=generator, device=generator_device(generator) if device is None else device)
    return low + (high - low) * u


_CONSTANTS: dict = {}


def _constant(values: tuple, device, dtype) -> Tensor:
    """``torch.tensor(values)`` on ``(device, dtype)``, built once per triple and cached (no host-to-device
    copy per call); inside ``torch.compile`` it is built in the graph, where it is a compile-time constant."""
    if torch.compiler.is_compiling():
        return torch.tensor(values, device=device, dtype=dtype)
    key = (values, torch.device(device), dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, device=device, dtype=dtype)
    return _CONSTANTS[key]


def _to_cached(cache: dict, tensors: tuple, device, dtype) -> tuple:
    """``tensors`` moved to ``(device, dtype)`` once per pair and kept in ``cache`` (fitted statistics such as
    fancy PCA's eigenvectors are then not copied to the device on every batch)."""
    key = (torch.device(device), dtype)
    if key not in cache:
        cache[key] = tuple(t.to(device, dtype) for t in tensors)
    return cache[key]


# ---------------------------------------------------------------------------------- geometric core


@reference("01_augmentation", "hflip")
def hflip(images: Tensor, mask) -> Tensor:
    """Mirror left-right the samples where ``mask`` (bool, shape ``(N,)``) is true: ``x[..., W-1-j]``.

    The flip the seeds list first (000, 003); ``torchvision.transforms.v2.functional.horizontal_flip``
    applied to the selected samples.
    """
    _check_images(images)
    width = images.shape[-1]
    flip = _per_sample(mask, images, dtype=torch.bool).expand(images.shape[0])
    j = torch.arange(width, device=images.device)
    cols = j + flip[:, None] * (width - 1 - 2 * j)  # j, or W-1-j where flipped
    return images.gather(3, cols[:, None, None, :].expand(images.shape))


@reference("01_augmentation", "crop")
def _window_index(top: Tensor, left: Tensor, height: int, width: int, row_len: int, flip=None) -> Tensor:
    """Flat indices ``(top + i) * row_len + (left + j)`` of each sample's window, shape ``(N, h*w)``.

    Where ``flip`` (bool, ``(N,)``) is true the column is mirrored first: ``row_len - 1 - (left + j)``.
    """
    rows = top[:, None] + torch.arange(height, device=top.device)
    cols = left[:, None] + torch.arange(width, device=top.device)
    if flip is not None:
        cols = torch.where(flip[:, None], row_len - 1 - cols, cols)
    return (rows[:, :, None] * row_len + cols[:, None, :]).reshape(len(top), -1)


@reference("01_augmentation", "crop")
def crop(images: Tensor, top, left, size, padding: int = 0, *, check: bool = True, flip=None) -> Tensor:
    """Cut a ``size`` window from each sample after zero-padding every side by ``padding`` pixels.

    ``out[n] = pad(x[n])[:, top[n]:top[n]+h, left[n]:left[n]+w]``; ``top`` and ``left`` index the padded
    image, so they range over ``0 .. H + 2·padding - h``. With ``padding=4`` and a 32x32 window this is the
    classic CIFAR-10 random crop (seeds 000, 003). All windows are gathered in one ``torch.gather``.
    ``check=False`` skips the bounds check, which reads the offsets back to the host (on a GPU, a
    synchronisation); :class:`RandomCrop` skips it, since its offsets are in range by construction.
    ``flip`` (bool, ``(N,)``) mirrors the selected samples first, in the same gather:
    ``crop(x, ..., flip=m) == crop(hflip(x, m), ...)`` (zero padding is symmetric, so mirroring the padded
    image is padding the mirrored one).
    """
    _check_images(images)
    n, c, _, _ = images.shape
    h, w = _pair(size)
    padded = F.pad(images, (padding,) * 4) if padding else images
    top, left = _as_offsets(top, n, "top"), _as_offsets(left, n, "left")
    hp, wp = padded.shape[-2:]
    if check and n and (int(top.min()) < 0 or int(left.min()) < 0 or int(top.max()) > hp - h or int(left.max()) > wp - w):
        raise ValueError(f"crop windows must lie inside the padded {hp}x{wp} image: need 0 <= top <= {hp - h} "
                         f"and 0 <= left <= {wp - w}")
    if flip is not None:
        flip = _per_sample(flip, images, dtype=torch.bool).expand(n)
    index = _window_index(top.to(images.device), left.to(images.device), h, w, wp, flip)
    out = padded.reshape(n, c, hp * wp).gather(2, index[:, None, :].expand(n, c, h * w))
    return out.reshape(n, c, h, w)


def _bilinear_axis(start: Tensor, length: Tensor, out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights for resizing ``length`` pixels from ``start`` to ``out`` pixels.

    PyTorch's bilinear rule (``align_corners=False``, no antialiasing): output pixel ``i`` reads source
    position ``s = (i + 0.5)·length/out - 0.5``, clamped to ``[0, length - 1]``, between pixels
    ``floor(s)`` and ``floor(s) + 1`` with weight ``s - floor(s)`` on the second.
    """
    scale = (length.float() / out)[:, None]
    src = ((torch.arange(out, device=start.device) + 0.5) * scale - 0.5).clamp_(min=0)
    last = (length - 1)[:, None]
    i0 = torch.minimum(src.floor().long(), last)
    i1 = torch.minimum(i0 + 1, last)
    return start[:, None] + i0, start[:, None] + i1, src - i0


def _lerp_gather(x: Tensor, dim: int, i0: Tensor, i1: Tensor, weight: Tensor) -> Tensor:
    """``(1 - w)·x[i0] + w·x[i1]`` along ``dim`` (2 = rows, 3 = columns) with per-sample indices."""
    n, c, h, w = x.shape
    shape = (n, c, i0.shape[1], w) if dim == 2 else (n, c, h, i0.shape[1])
    view = (n, 1, -1, 1) if dim == 2 else (n, 1, 1, -1)
    a = x.gather(dim, i0.reshape(view).expand(shape))
    b = x.gather(dim, i1.reshape(view).expand(shape))
    return torch.lerp(a, b, weight.to(x.dtype).reshape(view))


def resized_crop(images: Tensor, top, left, height, width, size) -> Tensor:
    """Cut the box ``(top, left, height, width)`` of each sample and resize it to ``size`` (bilinear).

    Equal to ``torchvision.transforms.v2.functional.resized_crop(..., antialias=False)`` per sample,
    computed for the whole batch with separable per-sample bilinear interpolation (two gathers per axis).
    The sampling of boxes (random area and aspect ratio) is :class:`RandomResizedCrop`.
    """
    _check_images(images)
    n, _, H, W = images.shape
    top, left, height, width = (_as_offsets(v, n, name).to(images.device) for v, name in
                                ((top, "top"), (left, "left"), (height, "height"), (width, "width")))
    oh, ow = _pair(size)
    y0, y1, wy = _bilinear_axis(top, height, oh)
    x0, x1, wx = _bilinear_axis(left, width, ow)
    if n and (int(y0.min()) < 0 or int(x0.min()) < 0 or int(y1.max()) >= H or int(x1.max()) >= W):
        raise ValueError(f"crop boxes must lie inside the {H}x{W} image")
    return _lerp_gather(_lerp_gather(images, 2, y0, y1, wy), 3, x0, x1, wx)


def rotate_scale(images: Tensor, angle, scale) -> Tensor:
    """Rotate each sample by ``angle`` degrees (counter-clockwise) and zoom it by ``scale`` about its centre.

    One affine map per sample, ``p_in = R(-angle)·p_out / scale`` in pixel coordinates around the centre,
    applied with ``affine_grid`` + ``grid_sample`` (bilinear, zeros outside). This is "rotation and scaling
    together" of seed 000. With torchvision's functions it is ``rotate(x, angle)`` when ``scale = 1`` and
    ``affine(x, angle=-angle, translate=[0, 0], scale=scale, shear=[0, 0])`` (``affine`` counts clockwise).
    """
    _check_images(images)
    n, _, h, w = images.shape
    rad = _per_sample(angle, images).expand(n) * (math.pi / 180)
    inv = 1 / _per_sample(scale, images).expand(n)
    cos, sin = torch.cos(rad) * inv, torch.sin(rad) * inv
    # pixel-space matrix [[cos, -sin], [sin, cos]] rescaled to affine_grid's [-1, 1] coordinates
    theta = torch.stack([torch.stack([cos, -sin * h / w, torch.zeros_like(cos)], 1),
                         torch.stack([sin * w / h, cos, torch.zeros_like(cos)], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_noise(images: Tensor, noise: Tensor, sigma, clip: bool = True) -> Tensor:
    """Additive Gaussian noise: ``x + sigma·noise`` with ``noise ~ N(0, 1)`` given, clipped to [0, 1].

    ``sigma`` is a number or one value per sample. Seed 002 ("add random noise"); the same as
    ``torchvision.transforms.v2.functional.gaussian_noise`` with the noise drawn outside.
    """
    _check_images(images)
    if noise.shape != images.shape:
        raise ValueError(f"noise must have the batch's shape {tuple(images.shape)}, got {tuple(noise.shape)}")
    out = images + _per_sample(sigma, images).reshape(-1, 1, 1, 1) * noise.to(images.device, images.dtype)
    return out.clamp_(0, 1) if clip else out


# ------------------------------------------------------------------------------------- colour core


@reference("01_augmentation", "rgb_to_hsv")
def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn), per pixel.

    ``V = max(R, G, B)``, ``C = V - min(R, G, B)``, ``S = C / V`` (0 where V = 0), and
    ``H = ((G - B)/C mod 6) / 6`` where V = R, ``((B - R)/C + 2) / 6`` where V = G (and not R),
    ``((R - G)/C + 4) / 6`` otherwise; H = 0 where C = 0. The same convention as torchvision and
    ``skimage.color.rgb2hsv``. Branches are masks (no ``torch.where``, which is slow on the CPU).
    """
    _check_images(images, 3)
    r, g, b = images.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    c = v - torch.minimum(torch.minimum(r, g), b)
    s = (c / v).nan_to_num_(0.0)  # V = 0 implies C = 0: 0/0 becomes 0
    return torch.stack([_hue(r, g, b, v, c), s, v], 1)


@reference("01_augmentation", "rgb_to_hsv")
def _hue(r: Tensor, g: Tensor, b: Tensor, v: Tensor, c: Tensor) -> Tensor:
    """Hue in [0, 1) from the planes R, G, B, their max V and their range C (see :func:`rgb_to_hsv`)."""
    not_r = v != r
    not_g = (v != g) | ~not_r
    not_b = ~(not_r & not_g)
    h = (g - b).masked_fill_(not_r, 0)
    h.add_(torch.add(b - r, c, alpha=2).masked_fill_(not_g, 0))
    h.add_(torch.add(r - g, c, alpha=4).masked_fill_(not_b, 0))
    h.div_(c).nan_to_num_(0.0).div_(6)  # C = 0 (grey): 0/0 becomes hue 0
    return h.add_(h < 0)  # (G - B)/C < 0 wraps around to the end of the turn


@reference("01_augmentation", "hsv_to_rgb")
def _hsv_channels(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """RGB from H, S, V planes ``(N, H, W)``, H in [0, 1): channel ``n ∈ (5, 3, 1)`` is
    ``V - V·S·clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6H) mod 6`` (the six hue sectors, branch-free)."""
    offsets = _constant((5.0, 3.0, 1.0), h.device, h.dtype).reshape(1, 3, 1, 1)
    k = torch.add(offsets, h[:, None], alpha=6)
    k.add_(k >= 6, alpha=-6)  # n + 6H < 12, so one subtraction is the mod
    ramp = torch.minimum(k, torch.rsub(k, 4)).clamp_(0, 1)
    return ramp.mul_((v * s).neg_()[:, None]).add_(v[:, None])


@reference("01_augmentation", "hsv_to_rgb")
def hsv_to_rgb(images: Tensor) -> Tensor:
    """HSV in [0, 1] (hue as a fraction of a turn) back to RGB in [0, 1]; the inverse of :func:`rgb_to_hsv`."""
    _check_images(images, 3)
    h, s, v = images.unbind(1)
    return _hsv_channels(h.remainder(1.0), s, v)


@reference("01_augmentation", "adjust_hsv")
def _jitter(x: Tensor, power: Tensor, mul: Tensor, add: Tensor) -> Tensor:
    """``clamp(x^power · mul + add, 0, 1)`` with per-sample factors of shape ``(N,)`` or ``()``.

    ``x^power`` is computed as ``exp(power · log x)`` (0 stays 0 for the positive powers used here),
    which is several times faster than ``torch.pow`` with a broadcast exponent on the CPU.
    """
    view = (-1, 1, 1)
    out = x.log().mul_(power.reshape(view)).exp_()
    return out.mul_(mul.reshape(view)).add_(add.reshape(view)).clamp_(0, 1)


@reference("01_augmentation", "adjust_hsv")
def adjust_hsv(images: Tensor, s_pow, s_mul, s_add, v_pow, v_mul, v_add, h_add) -> Tensor:
    """The seeds' colour recipe in HSV space, with per-sample factors (numbers or ``(N,)`` tensors).

    ``S' = clamp(S^s_pow · s_mul + s_add, 0, 1)``, ``V' = clamp(V^v_pow · v_mul + v_add, 0, 1)`` and
    ``H' = (H + h_add) mod 1``. Powers must be positive. Seed 000 draws the powers from [0.25, 4], the
    factors from [0.7, 1.4], the offsets from [-0.1, 0.1] and the hue shift from [-0.1, 0.1]
    (see :class:`HSVJitter`). Fused: the hue (:func:`_hue`) and the jitter of S and V (:func:`_jitter`) are
    computed from R, G, B without building the HSV image.
    """
    _check_images(images, 3)
    r, g, b = images.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    c = v - torch.minimum(torch.minimum(r, g), b)
    p = [_per_sample(x, images) for x in (s_pow, s_mul, s_add, v_pow, v_mul, v_add, h_add)]
    h = _hue(r, g, b, v, c).add_(p[6].remainder(1.0).reshape(-1, 1, 1))
    h.add_(h >= 1, alpha=-1)  # h + (h_add mod 1) < 2
    s = _jitter((c / v).nan_to_num_(0.0), *p[0:3])
    return _hsv_channels(h, s, _jitter(v, *p[3:6]))


@reference("01_augmentation", "fit_fancy_pca")
def fit_fancy_pca(images: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues and eigenvectors of the 3x3 covariance of all RGB pixels of ``images``.

    ``Σ = E[(p - μ)(p - μ)ᵀ]`` over every pixel ``p ∈ R³`` of the set (divided by the number of pixels).
    Returns ``(eigvals, eigvecs)``: eigenvalues in decreasing order, ``(3,)``, and the matching unit
    eigenvectors as the *columns* of ``(3, 3)``, each signed so that its largest entry is positive.
    Krizhevsky et al. (2012), section 4.1. Computed in float64 where the device has it.
    """
    _check_images(images, 3)
    dtype = torch.float32 if images.device.type == "mps" else torch.float64
    pixels = images.transpose(0, 1).reshape(3, -1).to(dtype)
    centred = pixels - pixels.mean(1, keepdim=True)
    cov = centred @ centred.T / pixels.shape[1]
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
    signs = torch.sign(eigvecs.gather(0, eigvecs.abs().argmax(0, keepdim=True)))
    return eigvals.to(images.dtype), (eigvecs * signs).to(images.dtype)


@reference("01_augmentation", "fancy_pca")
def fancy_pca(images: Tensor, eigvals: Tensor, eigvecs: Tensor, alphas: Tensor) -> Tensor:
    """AlexNet's colour augmentation: add ``[p1, p2, p3] · [α1 λ1, α2 λ2, α3 λ3]ᵀ`` to every pixel.

    ``p_i`` are the eigenvectors (columns of ``eigvecs``), ``λ_i`` the eigenvalues of the RGB covariance
    (:func:`fit_fancy_pca`), and ``alphas`` ``(N, 3)`` one draw per image (``N(0, 0.1)`` in the paper, a new
    draw each time the image is used). Krizhevsky et al. (2012), section 4.1; seeds 000 and 003.
    The result is not clipped.
    """
    _check_images(images, 3)
    alphas = torch.as_tensor(alphas).to(images.device, images.dtype)
    if alphas.shape != (images.shape[0], 3):
        raise ValueError(f"alphas must have shape ({images.shape[0]}, 3), got {tuple(alphas.shape)}")
    shift = (alphas * eigvals.to(images.device, images.dtype)) @ eigvecs.to(images.device, images.dtype).T
    return images + shift[:, :, None, None]


# --------------------------------------------------------------------------------- sampling classes


class RandomTransform:
    """Base class: ``sample(images)`` draws the parameters (a dict), ``apply(images, **params)`` uses them.

    Parameters are drawn from ``generator`` on the generator's device, and the functional core moves them
    to the batch's device; with ``generator=None`` they are drawn by torch's default RNG of the batch's
    device, where they are used. ``t(images)`` does both.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def sample(self, images: Tensor) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, images: Tensor, **params) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, images: Tensor) -> Tensor:
        return self.apply(images, **self.sample(images))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator" and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomHFlip(RandomTransform):
    """Flip each sample left-right with probability ``p``.

    ``flip(images, mask)`` (your ``hflip``; by default :func:`hflip`, which the student release leaves out) flips
    the selected samples; the mask is moved to the batch's device first.
    """

    def __init__(self, p: float = 0.5, generator=None, flip=None):
        super().__init__(generator)
        self.p, self.flip = p, flip

    def sample(self, images):
        n = images.shape[0]
        return {"mask": torch.rand(n, generator=self.generator, device=_draw_device(self.generator, images)) < self.p}

    def apply(self, images, mask):
        return (self.flip or hflip)(images, mask.to(images.device))


class RandomCrop(RandomTransform):
    """Zero-pad by ``padding`` and cut a ``size`` window at a uniformly random position (every position equally likely).

    The window is cut by ``crop(images, top, left, size, padding)``: course_lib's :func:`crop` by default, or the
    function given (your ``crop``), which gets ``top`` and ``left`` on the batch's device.
    """

    def __init__(self, size, padding: int = 0, generator=None, crop=None):
        super().__init__(generator)
        self.size, self.padding, self.crop = size, padding, crop

    def sample(self, images):
        n, _, h, w = images.shape
        ch, cw = _pair(self.size)
        dev = _draw_device(self.generator, images)
        top = torch.randint(0, h + 2 * self.padding - ch + 1, (n,), generator=self.generator, device=dev)
        left = torch.randint(0, w + 2 * self.padding - cw + 1, (n,), generator=self.generator, device=dev)
        return {"top": top, "left": left}

    def apply(self, images, top, left):
        if self.crop is not None:
            return self.crop(images, top.to(images.device), left.to(images.device), self.size, self.padding)
        return crop(images, top, left, self.size, self.padding, check=False)


class RandomResizedCrop(RandomTransform):
    """A box with a random fraction ``scale`` of the area and aspect ratio ``ratio`` (log-uniform), resized to ``size``.

    torchvision's ``RandomResizedCrop`` rule, batched: 10 candidate boxes per sample, the first that fits
    is used, and a centre crop with the ratio clamped to ``ratio`` where none fits.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=None):
        super().__init__(generator)
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)

    def sample(self, images, tries: int = 10):
        n, _, H, W = images.shape
        g, dev = self.generator, _draw_device(self.generator, images)
        area = H * W * _uniform(n * tries, *self.scale, g, dev).reshape(n, tries)
        log_r = _uniform(n * tries, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev).reshape(n, tries)
        w = torch.sqrt(area * log_r.exp()).round().long()
        h = torch.sqrt(area / log_r.exp()).round().long()
        ok = (w > 0) & (h > 0) & (w <= W) & (h <= H)
        first = torch.where(ok.any(1), ok.long().argmax(1), torch.full((n,), -1, device=dev))
        fb_h, fb_w = self._fallback(H, W)
        pick = first.clamp(min=0)[:, None]
        h = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.full((n,), fb_h, device=dev))
        w = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.full((n,), fb_w, device=dev))
        top = (torch.rand(n, generator=g, device=dev) * (H - h + 1)).long().clamp(max=H - h)
        left = (torch.rand(n, generator=g, device=dev) * (W - w + 1)).long().clamp(max=W - w)
        top = torch.where(first >= 0, top, (H - h) // 2)
        left = torch.where(first >= 0, left, (W - w) // 2)
        return {"top": top, "left": left, "height": h, "width": w}

    def _fallback(self, H: int, W: int) -> tuple[int, int]:
        """torchvision's fallback box: the whole image, with its aspect ratio clamped to ``ratio``."""
        r = W / H
        if r < min(self.ratio):
            return int(round(W / min(self.ratio))), W
        if r > max(self.ratio):
            return H, int(round(H * max(self.ratio)))
        return H, W

    def apply(self, images, top, left, height, width):
        return resized_crop(images, top, left, height, width, self.size)


class RandomRotateScale(RandomTransform):
    """Rotate by ``U(-degrees, degrees)`` and zoom by ``U(*scale)``, both per sample (seed 000)."""

    def __init__(self, degrees: float = 15.0, scale=(0.9, 1.1), generator=None):
        super().__init__(generator)
        self.degrees, self.scale = degrees, tuple(scale)

    def sample(self, images):
        n, dev = images.shape[0], _draw_device(self.generator, images)
        return {"angle": _uniform(n, -self.degrees, self.degrees, self.generator, dev),
                "scale": _uniform(n, *self.scale, self.generator, dev)}

    def apply(self, images, angle, scale):
        return rotate_scale(images, angle, scale)


HSV_RANGES = dict(power=(0.25, 4.0), factor=(0.7, 1.4), offset=(-0.1, 0.1), hue=(-0.1, 0.1))
"""Seed 000's ranges of the HSV recipe: power, factor and offset for S and V, and the hue shift."""


@reference("01_augmentation", "hsv_params")
def hsv_params(n: int, per_batch: bool = False, generator: torch.Generator | None = None, *,
               power=HSV_RANGES["power"], factor=HSV_RANGES["factor"], offset=HSV_RANGES["offset"],
               hue=HSV_RANGES["hue"], device=None) -> dict:
    """Random factors of :func:`adjust_hsv` for ``n`` images: a dict of seven ``(n,)`` tensors.

    ``s_pow``, ``v_pow`` are log-uniform on ``power`` (``exp(U(log a, log b))``, so that ``p`` and ``1/p``
    are equally likely), ``s_mul``, ``v_mul`` uniform on ``factor``, ``s_add``, ``v_add`` uniform on
    ``offset`` and ``h_add`` uniform on ``hue``; S and V are drawn independently. With ``per_batch`` one
    set of factors is drawn and shared by all ``n`` images, "the same for a whole batch" (seed 000);
    otherwise every image gets its own. All of them come from one ``torch.rand((7, k))`` call on
    ``generator``'s device (on ``device``, the CPU by default, when ``generator`` is ``None``); on the CPU
    that is the same stream as seven calls of ``torch.rand(k)``.
    """
    k = 1 if per_batch else n
    dev = generator_device(generator) if generator is not None or device is None else torch.device(device)
    u = torch.rand(7, k, generator=generator, device=dev)
    ranges = dict(power=power, factor=factor, offset=offset, hue=hue)
    return {key: v.expand(n) for key, v in _hsv_from_uniform(u, ranges).items()}


HSV_KEYS = ("s_pow", "v_pow", "s_mul", "v_mul", "s_add", "v_add", "h_add")
"""The factors of :func:`adjust_hsv` in the order :func:`hsv_params` draws them."""


@reference("01_augmentation", "hsv_params")
def _hsv_from_uniform(u: Tensor, ranges: dict) -> dict:
    """The seven HSV factors from uniforms ``u`` of shape ``(7, k)``, rows in :data:`HSV_KEYS` order.

    Row ``i`` becomes ``low_i + (high_i - low_i) · u_i`` on its range (for the powers, on ``[log a, log b]``,
    then ``exp``); the (7, 1) columns of lows and spans are cached per device.
    """
    log_p = (math.log(ranges["power"][0]), math.log(ranges["power"][1]))
    bounds = [log_p, log_p, ranges["factor"], ranges["factor"], ranges["offset"], ranges["offset"], ranges["hue"]]
    low = _constant(tuple((float(a),) for a, _ in bounds), u.device, u.dtype)
    span = _constant(tuple((float(b) - float(a),) for a, b in bounds), u.device, u.dtype)
    values = low + span * u
    values[:2].exp_()
    return dict(zip(HSV_KEYS, values.unbind(0)))


class HSVJitter(RandomTransform):
    """The seeds' HSV recipe with random factors, drawn independently for S and V (:func:`hsv_params`).

    Defaults are seed 000's ranges (:data:`HSV_RANGES`): power in [0.25, 4] (drawn log-uniformly, so that
    a power and its inverse are equally likely), factor in [0.7, 1.4], offset in [-0.1, 0.1], hue shift in
    [-0.1, 0.1]. Every image of a batch gets its own factors; ``per_batch=True`` draws one set of factors
    per call, shared by the whole batch, which the seed also allows.

    The factors are drawn by :func:`hsv_params` and applied by :func:`adjust_hsv` unless other functions are
    given: ``draw(n, per_batch, generator)`` (your ``hsv_params``, which has the seed's ranges built in, so the
    ranges cannot be given with it) and ``adjust(images, **factors)`` (your ``adjust_hsv``). What ``draw``
    returns is moved to the batch's device.
    """

    def __init__(self, power=HSV_RANGES["power"], factor=HSV_RANGES["factor"], offset=HSV_RANGES["offset"],
                 hue=HSV_RANGES["hue"], per_batch: bool = False, generator=None, *, adjust=None, draw=None):
        super().__init__(generator)
        self.power, self.factor, self.offset, self.hue = tuple(power), tuple(factor), tuple(offset), tuple(hue)
        if draw is not None and (self.power, self.factor, self.offset, self.hue) != tuple(HSV_RANGES.values()):
            raise ValueError("HSVJitter: draw() has its own ranges; give either draw or power/factor/offset/hue")
        self.per_batch, self.adjust, self.draw = per_batch, adjust, draw

    def sample(self, images):
        n = images.shape[0]
        if self.draw is not None:
            return {k: v.to(images.device) for k, v in self.draw(n, self.per_batch, self.generator).items()}
        return hsv_params(n, self.per_batch, self.generator, power=self.power, factor=self.factor,
                          offset=self.offset, hue=self.hue, device=images.device)

    def apply(self, images, **params):
        return (adjust_hsv if self.adjust is None else self.adjust)(images, **params)


class FancyPCA(RandomTransform):
    """Fancy PCA with ``alphas ~ N(0, std)``, a fresh draw per image per call, clipped to [0, 1] if ``clip``.

    Build it from a training set with ``FancyPCA.fit(x_train)`` (Krizhevsky et al. 2012, std 0.1). The shift
    is added by :func:`fancy_pca`, or by ``shift(images, eigvals, eigvecs, alphas)`` if given (your
    ``fancy_pca``), which gets everything on the batch's device.
    """

    def __init__(self, eigvals: Tensor, eigvecs: Tensor, std: float = 0.1, clip: bool = True, generator=None,
                 *, shift=None):
        super().__init__(generator)
        self.eigvals, self.eigvecs, self.std, self.clip, self.shift = eigvals, eigvecs, std, clip, shift
        self._cache: dict = {}

    @classmethod
    def fit(cls, images: Tensor, *, fit=None, **kwargs) -> "FancyPCA":
        """A FancyPCA whose eigenvectors are fitted on ``images`` by ``fit`` (:func:`fit_fancy_pca` by default,
        or yours); ``kwargs`` go to the constructor."""
        return cls(*(fit_fancy_pca if fit is None else fit)(images), **kwargs)

    def sample(self, images):
        n = images.shape[0]
        dev = _draw_device(self.generator, images)
        return {"alphas": self.std * torch.randn(n, 3, generator=self.generator, device=dev)}

    def apply(self, images, alphas):
        eigen = _to_cached(self._cache, (self.eigvals, self.eigvecs), images.device, images.dtype)
        alphas = torch.as_tensor(alphas).to(images.device, images.dtype)
        out = (fancy_pca if self.shift is None else self.shift)(images, *eigen, alphas)
        return out.clamp_(0, 1) if self.clip else out


class GaussianNoise(RandomTransform):
    """Add ``sigma · N(0, 1)`` noise and clip to [0, 1]. The noise is image-sized, so it is drawn on the
    batch's device (from ``generator`` if it lives there, else from the global RNG of that device)."""

    def __init__(self, sigma: float = 0.05, generator=None):
        super().__init__(generator)
        self.sigma = sigma

    def sample(self, images):
        g = self.generator if self.generator is not None and self.generator.device == images.device else None
        if g is None and self.generator is not None:
            seed = int(torch.randint(2**62, (1,), generator=self.generator, device=self.generator.device))
            g = torch.Generator(device=images.device).manual_seed(seed)
        return {"noise": torch.randn(images.shape, generator=g, device=images.device, dtype=images.dtype)}

    def apply(self, images, noise):
        return gaussian_noise(images, noise, self.sigma)


def flip_crop_colour(images: Tensor, mask, top, left, size, padding: int = 0, hsv: dict | None = None,
                     eigen: tuple | None = None, alphas=None, clip: bool = True) -> Tensor:
    """The chapter's whole recipe with given parameters: ``fancy_pca(adjust_hsv(crop(hflip(x))))``.

    ``crop(x, top, left, size, padding, flip=mask)`` (one gather), then :func:`adjust_hsv` with the seven
    factors of ``hsv`` (skipped when ``None``), then :func:`fancy_pca` with ``eigen = (eigvals, eigvecs)`` and
    ``alphas`` (skipped when ``None``), clamped to [0, 1] if ``clip``. No host synchronisation and no Python
    branch on tensor values, so ``torch.compile(fullgraph=True)`` fuses it (:class:`BatchPipeline`).
    """
    out = crop(images, top, left, size, padding, check=False, flip=mask)
    if hsv is not None:
        out = adjust_hsv(out, **hsv)
    if eigen is not None:
        out = fancy_pca(out, *eigen, alphas)
        out = out.clamp_(0, 1) if clip else out
    return out


def _normal_from_uniform(u: Tensor) -> Tensor:
    """Standard normals from pairs of uniforms (Box & Muller 1958): ``sqrt(-2 ln(1 - u1)) · cos(2π u2)``.

    ``u`` has shape ``(..., 2m)``; the result ``(..., m)``. ``1 - u1`` lies in (0, 1] because ``torch.rand``
    is in [0, 1); float32 uniforms cap ``|z|`` near 5.8.
    """
    u1, u2 = u[..., 0::2], u[..., 1::2]
    return torch.rsub(u1, 1).log_().mul_(-2).sqrt_().mul_(torch.cos(u2 * (2 * math.pi)))


class BatchPipeline:
    """Flip, zero-padded crop, HSV jitter and fancy PCA for whole batches, all drawn in one call on the device.

    :meth:`sample` draws one ``torch.rand(N, 16)`` (float32, float64 for float64 images) on the batch's
    device, from ``generator`` if given (a generator on another device costs one copy of that tensor):

    - column 0: flip where ``u < flip_p``;
    - columns 1, 2: crop offsets ``floor(u · (H + 2·padding - h + 1))``, each offset equally likely;
    - columns 3-9: the HSV factors by :func:`hsv_params`' rules (row 0's for all with ``per_batch_hsv``);
    - columns 10-15: three ``N(0, 1)`` per image by Box-Muller, times ``pca_std``: fancy PCA's alphas.

    :meth:`apply` is :func:`flip_crop_colour`. ``size`` defaults to the image size; ``hsv=None`` or
    ``eigen=None`` leave that step out; ``flip=False`` never flips. ``compiled=True`` runs :meth:`apply`
    through ``torch.compile(fullgraph=True, dynamic=False)`` (compiled on the first batch of each shape);
    the sampling stays one eager kernel. Sources as for the separate transforms: seeds 000, 002, 003 and
    Krizhevsky et al. (2012); airbench (Jordan 2024) for augmenting whole batches on the GPU.
    """

    COLUMNS = 16

    def __init__(self, size=None, padding: int = 0, *, flip: bool = True, flip_p: float = 0.5,
                 hsv: dict | None = HSV_RANGES, per_batch_hsv: bool = False, eigen: tuple | None = None,
                 pca_std: float = 0.1, clip: bool = True, generator: torch.Generator | None = None,
                 compiled: bool = False):
        self.size, self.padding, self.flip_p = size, int(padding), (flip_p if flip else 0.0)
        self.hsv = None if hsv is None else {**HSV_RANGES, **hsv}
        self.per_batch_hsv, self.eigen, self.pca_std, self.clip = per_batch_hsv, eigen, pca_std, clip
        self.generator, self.compiled = generator, compiled
        self._cache: dict = {}
        self._apply = torch.compile(flip_crop_colour, fullgraph=True, dynamic=False) if compiled else flip_crop_colour

    def _window(self, images: Tensor) -> tuple[int, int]:
        return _pair(self.size) if self.size is not None else tuple(images.shape[-2:])

    def sample(self, images: Tensor) -> dict:
        """All random parameters of the batch from one ``torch.rand(N, 16)`` (see the class docstring)."""
        n, _, H, W = images.shape
        h, w = self._window(images)
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        u = torch.rand(n, self.COLUMNS, generator=self.generator, device=_draw_device(self.generator, images),
                       dtype=dtype).to(images.device, non_blocking=True)
        span_h, span_w = H + 2 * self.padding - h, W + 2 * self.padding - w
        params = {"mask": u[:, 0] < self.flip_p,
                  "top": (u[:, 1] * (span_h + 1)).long().clamp_(max=span_h),
                  "left": (u[:, 2] * (span_w + 1)).long().clamp_(max=span_w), "hsv": None, "alphas": None}
        if self.hsv is not None:
            rows = u[:1, 3:10] if self.per_batch_hsv else u[:, 3:10]
            params["hsv"] = {k: v.expand(n) for k, v in _hsv_from_uniform(rows.T, self.hsv).items()}
        if self.eigen is not None:
            params["alphas"] = _normal_from_uniform(u[:, 10:16]).mul_(self.pca_std)
        return params

    def apply(self, images: Tensor, mask, top, left, hsv=None, alphas=None) -> Tensor:
        """:func:`flip_crop_colour` with this pipeline's size, padding and eigenvectors (cached per device)."""
        eigen = None if self.eigen is None else _to_cached(self._cache, self.eigen, images.device, images.dtype)
        return self._apply(images, mask, top, left, self._window(images), self.padding, hsv, eigen,
                           alphas if eigen is not None else None, self.clip)

    def __call__(self, images: Tensor) -> Tensor:
        return self.apply(images, **self.sample(images))

    def __repr__(self) -> str:
        return (f"BatchPipeline(size={self.size}, padding={self.padding}, flip_p={self.flip_p}, hsv={self.hsv}, "
                f"per_batch_hsv={self.per_batch_hsv}, fancy_pca={self.eigen is not None}, compiled={self.compiled})")


class Compose:
    """Apply ``transforms`` one after the other to the whole batch."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, images: Tensor) -> Tensor:
        for t in self.transforms:
            images = t(images)
        return images

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"
