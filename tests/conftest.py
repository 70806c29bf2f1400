"""Shared fixtures: the repository root, the devices to test on, and the `gpu` marker's skip."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is available."""
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


SKIP_SANDBOX = "COURSE_SKIP_SANDBOX_TESTS"


@pytest.fixture(scope="session")
def sandbox_required():
    """The grader's tests need bubblewrap: without it they fail, unless COURSE_SKIP_SANDBOX_TESTS=1 says skip."""
    from course_lib.instructor.sandbox import bwrap_problem

    problem = bwrap_problem()
    if problem is None:
        return
    if os.environ.get(SKIP_SANDBOX) == "1":
        pytest.skip(f"{SKIP_SANDBOX}=1: the sandboxed grader is not tested ({problem})")
    pytest.fail(f"{problem}\n(`make test` installs bubblewrap when run as root; to skip the grader's tests "
                f"instead, set {SKIP_SANDBOX}=1)", pytrace=False)


@contextlib.contextmanager
def quick_profile():
    """The environment of the notebook tests: quick profile, CPU, this checkout's data, one thread a kernel."""
    mp = pytest.MonkeyPatch()
    for name, value in {"COURSE_PROFILE": "quick", "COURSE_DEVICE": "cpu", "COURSE_DATA": str(ROOT / "data"),
                        "OMP_NUM_THREADS": "1"}.items():
        mp.setenv(name, value)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device-agnostic test runs on the CPU, and on CUDA where it is available.

    The device is the one tensors report (``cuda:0``, not ``cuda``): ``torch.device("cuda") ==
    torch.device("cuda:0")`` is False, so ``t.device == device`` would fail for the right tensor.
    """
    if request.param != "cpu" and not HAS_CUDA:
        pytest.skip("needs a CUDA device")
    return torch.empty(0, device=request.param).device
