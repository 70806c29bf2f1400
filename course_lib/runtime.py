"""Runtime choices shared by every notebook: the device, the seed and the profile.

- ``get_device()`` picks CUDA, then MPS, then the CPU; ``COURSE_DEVICE`` overrides.
- ``seed_everything(seed)`` seeds Python, NumPy and torch in one call.
- ``profile()`` is ``COURSE_PROFILE`` (``quick`` or ``full``), by default ``full`` on a GPU and
  ``quick`` otherwise; ``pick(quick=..., full=...)`` chooses a value by profile.
- ``synchronize(device)`` and ``device_name(device)`` serve timings: wait for queued GPU work, and name
  the hardware a figure was measured on.
"""
from __future__ import annotations

import os
import platform
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


def synchronize(device) -> None:
    """Wait until the work queued on ``device`` has finished (CUDA, MPS), so wall-clock times are real.

    GPU kernels run asynchronously: without this a timer measures only how fast Python queued them.
    A no-op on the CPU.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device) -> str:
    """The hardware behind ``device``: the GPU's name, or the CPU's ``model name`` from ``/proc/cpuinfo``
    with its number of cores."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def generator_device(generator: "torch.Generator | None") -> torch.device:
    """Where random numbers are drawn: the generator's device, or the CPU for torch's global generator.

    A ``torch.Generator`` only draws on its own device, so every sampler draws there and then moves the
    numbers to the data (which keeps CPU-seeded results the same on every device).
    """
    return generator.device if generator is not None else torch.device("cpu")

