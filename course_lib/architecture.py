"""Sizes and architecture tricks (chapter 04; seeds 000, 002, 003).

- Output-size arithmetic of convolutions and pooling, ``conv_output_size``: a 3x3 convolution with
  stride 1 and zero padding 1 keeps the size, ``(32 - 3 + 2·1)/1 + 1 = 32`` (seed 000).
- ``count_params`` and closed-form weight counts of the tricks of seed 002, section 2.1.4:
  two stacked 3x3 for one 5x5 (18/25, Inception v2), 1x7 + 7x1 for 7x7 (Inception v3), 1x1
  bottlenecks (Network in Network, Inception v1), depthwise-separable convolutions (MobileNet,
  about 1/9 at 3x3) and global average pooling instead of fully connected layers (Inception v1).
- The building blocks as real modules, a small CNN built each way (``trick_cnn``), and deep plain
  and residual networks (``DeepNet``; He et al. 2016) for the vanishing-gradient experiment.

Two statements of the seeds are corrected where the course teaches them (notebook 04e):

- seed 002 says VGGNet introduced 1x1 convolutions; they come from Network in Network (Lin, Chen & Yan,
  2013), which Inception v1 then used, as seed 002 itself says in its section 2.2.3;
- seeds 000 and 003 ask for input sizes that are "powers of two" and list 224 and 384 among them
  (``224 = 7·2^5``, ``384 = 3·2^7``). What matters is that the size is divisible by 2 as many times as
  the network has stride-2 stages, so that every 2x2 pool halves it without a remainder
  (:func:`halvings`): 224 halves cleanly five times, 28 only twice.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import init as init_schemes
from .release import reference


@reference("04_training", "conv_output_size")
def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    With ``d = 1`` this is the seeds' ``(n - k + 2p)/s + 1``. Raises ``ValueError`` if nothing is left.
    """
    if min(n, kernel, stride, dilation) < 1 or padding < 0:
        raise ValueError(f"need n, kernel, stride, dilation >= 1 and padding >= 0; got n={n}, kernel={kernel}, "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    out = (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"a kernel of {kernel} (dilation {dilation}) does not fit an input of {n} with padding {padding}")
    return out


def halvings(n: int) -> int:
    """How many times ``n`` can be halved without a remainder (the exponent of 2 in ``n``): the number of
    2x2 poolings (stride 2) that lose no row or column. ``halvings(224) == 5``, ``halvings(28) == 2``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    count = 0
    while n % 2 == 0:
        n //= 2
        count += 1
    return count


@reference("04_training", "count_params")
def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (each shared tensor once); ``trainable_only`` counts
    only those with ``requires_grad``."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


@reference("04_training", "formulas")
def conv_params(c_in: int, c_out: int, kernel, groups: int = 1, bias: bool = True) -> int:
    """Parameters of ``nn.Conv2d(c_in, c_out, kernel, groups=groups, bias=bias)``:
    ``c_out · (c_in / groups) · kh · kw (+ c_out)``."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide c_in={c_in} and c_out={c_out}")
    return c_out * (c_in // groups) * kh * kw + (c_out if bias else 0)


def receptive_field(kernels, strides=None) -> int:
    """Receptive field of a stack of convolutions: ``1 + sum_l (k_l - 1) · prod_{j<l} s_j``.

    Two stacked 3x3 (stride 1) see 5x5, three see 7x7.
    """
    strides = strides or [1] * len(kernels)
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field


# ------------------------------------------------------------------------ the tricks as modules

def conv_block(c_in: int, c_out: int, kernel, padding=None, bias: bool = False) -> nn.Sequential:
    """``Conv2d → ReLU``, zero-padded to keep the size (``padding = k // 2`` per axis by default)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (kh // 2, kw // 2) if padding is None else padding
    return nn.Sequential(nn.Conv2d(c_in, c_out, (kh, kw), padding=padding, bias=bias), nn.ReLU())


def single(c_in: int, c_out: int, kernel: int = 5, bias: bool = False) -> nn.Sequential:
    """One ``k x k`` convolution (the baseline every trick is compared with)."""
    return conv_block(c_in, c_out, kernel, bias=bias)


def stacked_3x3(c_in: int, c_out: int, n: int = 2, bias: bool = False) -> nn.Sequential:
    """``n`` stacked 3x3 convolutions, receptive field ``2n + 1``: two replace a 5x5 with 18/25 of its
    weights (at ``c_in = c_out``) and one more nonlinearity (Inception v2, seed 002)."""
    return nn.Sequential(*[conv_block(c_in if i == 0 else c_out, c_out, 3, bias=bias) for i in range(n)])


def factorized(c_in: int, c_out: int, k: int = 7, bias: bool = False) -> nn.Sequential:
    """A ``1 x k`` then a ``k x 1`` convolution: the receptive field of ``k x k`` with ``2/k`` of its
    weights at ``c_in = c_out`` (Inception v3, seed 002)."""
    return nn.Sequential(conv_block(c_in, c_out, (1, k), bias=bias), conv_block(c_out, c_out, (k, 1), bias=bias))


def bottleneck(c_in: int, c_mid: int, c_out: int, k: int = 3, bias: bool = False) -> nn.Sequential:
    """``1x1`` down to ``c_mid`` channels, ``k x k`` there, ``1x1`` up to ``c_out`` (Network in Network,
    Inception v1, ResNet's bottleneck): ``c_in·c_mid + c_mid²·k² + c_mid·c_out`` weights."""
    return nn.Sequential(conv_block(c_in, c_mid, 1, bias=bias), conv_block(c_mid, c_mid, k, bias=bias),
                         conv_block(c_mid, c_out, 1, bias=bias))


@reference("04_training", "depthwise_separable")
def depthwise_separable(c_in: int, c_out: int, k: int = 3, bias: bool = False) -> nn.Sequential:
    """A ``k x k`` depthwise convolution (``groups = c_in``, one filter per channel) then a ``1x1``
    pointwise one (MobileNet, seed 002): ``c_in·k² + c_in·c_out`` weights against ``c_in·c_out·k²``,
    a ratio ``1/c_out + 1/k²``, about 1/9 at 3x3 with many channels."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=bias), nn.ReLU(),
                         conv_block(c_in, c_out, 1, bias=bias))


def fc_head(channels: int, height: int, width: int, num_classes: int, hidden: int | None = None) -> nn.Sequential:
    """Flatten the ``(channels, height, width)`` feature maps into fully connected layers (AlexNet/VGG)."""
    features = channels * height * width
    if hidden is None:
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def gap_head(channels: int, num_classes: int) -> nn.Sequential:
    """Global average pooling, then one linear layer (Inception v1, NiN): ``channels·classes + classes``
    parameters whatever the size of the feature maps."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


TRICKS = {
    "5x5 + FC head": dict(block=lambda ci, co: single(ci, co, 5), head="fc"),
    "two 3x3 + FC head": dict(block=lambda ci, co: stacked_3x3(ci, co, 2), head="fc"),
    "1x5 + 5x1 + FC head": dict(block=lambda ci, co: factorized(ci, co, 5), head="fc"),
    "depthwise-sep. 5x5 + FC head": dict(block=lambda ci, co: depthwise_separable(ci, co, 5), head="fc"),
    "two 3x3 + GAP head": dict(block=lambda ci, co: stacked_3x3(ci, co, 2), head="gap"),
}


def trick_cnn(trick: str, in_channels: int = 1, num_classes: int = 10, widths=(32, 64),
              image_size: int = 28, hidden: int = 128, block=None) -> nn.Sequential:
    """A small CNN for one entry of :data:`TRICKS`: a plain 3x3 stem, then per stage the trick's block
    followed by a 2x2 max pool, then the trick's head (an FC layer of ``hidden`` units, or GAP).

    ``block``, a function ``(c_in, c_out) -> nn.Module``, replaces the trick's block (notebook 04e passes
    the student's own depthwise-separable block)."""
    if trick not in TRICKS:
        raise ValueError(f"unknown trick {trick!r}; choose one of {', '.join(TRICKS)}")
    spec = TRICKS[trick]
    make_block = spec["block"] if block is None else block
    layers: list[nn.Module] = [conv_block(in_channels, widths[0], 3)]
    size, channels = image_size, widths[0]
    for width in widths:
        layers += [make_block(channels, width), nn.MaxPool2d(2)]
        size, channels = size // 2, width  # a 2x2 max pool with stride 2 floors the halving
    head = fc_head(channels, size, size, num_classes, hidden) if spec["head"] == "fc" else gap_head(channels, num_classes)
    return nn.Sequential(*layers, head)


# ------------------------------------------------------------------------ residual connections

@reference("04_training", "residual_block")
class Residual(nn.Module):
    """``y = x + body(x)``: the identity shortcut of He et al. (2016), seed 002 section 2.4.2.

    The gradient reaching ``x`` is ``dy + body'(x)ᵀ dy``: the ``dy`` term passes every block unchanged,
    so it cannot vanish however deep the network is.
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _body(width: int, conv: bool, norm: str | None = None) -> nn.Sequential:
    """Pre-activation body ``ReLU → W → ReLU → W`` (He et al. 2016b), dense or 3x3 convolutional;
    with ``norm="batch"`` a BatchNorm before each ReLU: ``BN → ReLU → W → BN → ReLU → W``."""
    layer = (lambda: nn.Conv2d(width, width, 3, padding=1)) if conv else (lambda: nn.Linear(width, width))
    return nn.Sequential(*_pre_activation(width, conv, norm), layer(), *_pre_activation(width, conv, norm), layer())


def _pre_activation(width: int, conv: bool, norm: str | None) -> list[nn.Module]:
    if norm is None:
        return [nn.ReLU()]
    if norm != "batch":
        raise ValueError(f"norm must be None or 'batch', got {norm!r}")
    return [nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width), nn.ReLU()]


class DeepNet(nn.Module):
    """``blocks`` two-layer blocks between a stem and a head, with (``residual=True``) or without
    identity shortcuts (``forward`` adds each block's input to its output, ``h + block(h)``, as
    :class:`Residual` does); everything else identical, torch's default init. Plain and residual nets
    have the same parameter names, so one's state dict loads into the other.

    ``conv=False``: an MLP of ``width`` units on flattened inputs. ``conv=True``: a 3x3 conv stem with a
    2x2 pool, 3x3 conv blocks of ``width`` channels, global average pooling and a linear head.

    ``norm="batch"`` puts a BatchNorm before every ReLU (blocks and head), as in the plain and residual
    networks of He et al. (2016); ``init`` names a scheme of :mod:`course_lib.init` for every weight
    (biases zero), e.g. ``"kaiming_normal"``. The defaults (no BN, torch's initialization) keep the
    earlier behaviour.
    """

    def __init__(self, input_shape, num_classes: int, blocks: int = 10, width: int = 64,
                 residual: bool = True, conv: bool = False, norm: str | None = None, init: str | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        c, h, w = input_shape
        if conv:
            self.stem = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.MaxPool2d(2))
            self.head = nn.Sequential(*_pre_activation(width, conv, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(width, num_classes))
        else:
            self.stem = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width))
            self.head = nn.Sequential(*_pre_activation(width, conv, norm), nn.Linear(width, num_classes))
        self.residual = residual
        self.blocks = nn.Sequential(*[_body(width, conv, norm) for _ in range(blocks)])
        if init is not None:
            init_schemes.init_module_(self, init, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h) if self.residual else block(h)
        return self.head(h)


def block_gradient_norms(model: DeepNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """``‖∂L/∂W‖₂`` of the first weight of every block of a :class:`DeepNet`, input side first, for one batch
    of cross-entropy loss. ``.grad`` fields are left alone."""
    weights = [_first_weight(block) for block in model.blocks]
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), weights)
    return [float(g.norm()) for g in grads]


def _first_weight(block: nn.Module) -> torch.Tensor:
    return next(m.weight for m in block.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))

