"""The course's models: an MLP and a small CNN, each configurable by depth, width, activation,
normalization and initialization, so that one chapter's trick can be switched on and off.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import init as init_schemes

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU, "gelu": nn.GELU, "identity": nn.Identity,
}


def make_activation(activation: str | type[nn.Module] | nn.Module) -> nn.Module:
    """An activation module from a name in :data:`ACTIVATIONS`, a module class, or a module."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[activation]()


def _norm(kind: str | None, features: int, conv: bool) -> nn.Module | None:
    """``None`` or ``"batch"``: a BatchNorm layer over ``features`` channels."""
    if kind is None:
        return None
    if kind != "batch":
        raise ValueError(f"norm must be None or 'batch', got {kind!r}")
    return nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)


class MLP(nn.Sequential):
    """``depth`` hidden layers of ``width`` units: ``[Linear → (BatchNorm) → activation] × depth → Linear``.

    ``init`` names a scheme of :mod:`course_lib.init` for every weight (biases zero); ``None`` keeps
    torch's default. Inputs of any shape are flattened.
    """

    def __init__(self, in_features: int, num_classes: int, depth: int = 2, width: int = 128,
                 activation="relu", norm: str | None = None, init: str | None = None,
                 generator: torch.Generator | None = None):
        if depth < 0 or width < 1:
            raise ValueError(f"depth must be >= 0 and width >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers.append(nn.Linear(features, width, bias=norm is None))
            layers += [m for m in (_norm(norm, width, conv=False), make_activation(activation)) if m is not None]
            features = width
        layers.append(nn.Linear(features, num_classes))
        super().__init__(*layers)
        if init is not None:
            init_schemes.init_module_(self, init, generator=generator)

    @property
    def hidden_layers(self) -> list[nn.Linear]:
        """The hidden ``Linear`` layers, input side first (the output layer excluded)."""
        return [m for m in self if isinstance(m, nn.Linear)][:-1]


class SmallCNN(nn.Module):
    """A small VGG-style CNN: stages of ``depth`` 3x3 convs (stride 1, padding 1) and a 2x2 max pool,
    then global average pooling and one linear layer. Works for 8x8, 28x28 and 32x32 inputs.

    ``widths`` gives the channels of each stage; ``norm="batch"`` puts BatchNorm before each activation.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(32, 64), depth: int = 1,
                 activation="relu", norm: str | None = "batch", init: str | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(depth):
                layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=norm is None))
                layers += [m for m in (_norm(norm, width, conv=True), make_activation(activation)) if m is not None]
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        if init is not None:
            init_schemes.init_module_(self, init, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(kind: str, input_shape, num_classes: int, **kwargs) -> nn.Module:
    """``"mlp"`` or ``"cnn"`` for a dataset with ``input_shape = (C, H, W)``."""
    if kind == "mlp":
        return MLP(math.prod(input_shape), num_classes, **kwargs)
    if kind == "cnn":
        return SmallCNN(input_shape[0], num_classes, **kwargs)
    raise ValueError(f"model kind must be 'mlp' or 'cnn', got {kind!r}")
