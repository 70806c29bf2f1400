"""Runtime choices shared by every notebook: the device, the seed and the profile.

- ``get_device()`` picks CUDA, then MPS, then the CPU; ``COURSE_DEVICE`` overrides.
- ``seed_everything(seed)`` seeds Python, NumPy and torch in one call.
- ``profile()`` is ``COURSE_PROFILE`` (``quick`` or ``full``), by default ``full`` on a GPU and
  ``quick`` otherwise; ``pick(quick=..., full=...)`` chooses a value by profile.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

PROFILES = ("quick", "full")


def get_device() -> torch.device:
    """The device to compute on: ``$COURSE_DEVICE`` if set, else CUDA, then MPS, then the CPU."""
    wanted = os.environ.get("COURSE_DEVICE", "").strip()
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"COURSE_DEVICE={wanted!r} but CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed ``random``, NumPy and torch (all devices) with ``seed``.

    Returns a CPU ``torch.Generator`` seeded the same way, for code that takes an explicit generator.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def profile() -> str:
    """``$COURSE_PROFILE`` (``quick`` | ``full``); default ``full`` on a GPU, ``quick`` otherwise."""
    value = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not value:
        return "full" if get_device().type == "cuda" else "quick"
    if value not in PROFILES:
        raise ValueError(f"COURSE_PROFILE must be one of {PROFILES}, got {value!r}")
    return value


def pick(*, quick, full):
    """Return ``quick`` or ``full`` according to :func:`profile`."""
    return full if profile() == "full" else quick


def under_autograder() -> bool:
    """True while nbgrader executes the notebook (it sets ``NBGRADER_EXECUTION``)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))
