import os

import pytest
import torch

from course_lib import runtime


def test_device_override_and_default(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    monkeypatch.delenv("COURSE_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert runtime.get_device().type == expected


def test_cuda_override_without_cuda_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.get_device()


def test_profile_default_follows_the_device(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert runtime.profile() == "quick"
    assert runtime.pick(quick=1, full=2) == 1
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert runtime.pick(quick=1, full=2) == 2
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick"):
        runtime.profile()


def test_seed_everything_makes_torch_reproducible():
    g = runtime.seed_everything(123)
    a, ga = torch.rand(5), torch.rand(3, generator=g)
    g = runtime.seed_everything(123)
    assert torch.equal(a, torch.rand(5)) and torch.equal(ga, torch.rand(3, generator=g))


def test_under_autograder(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not runtime.under_autograder()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert runtime.under_autograder()


def test_device_name_names_the_cpu_and_synchronize_is_a_no_op_there():
    name = runtime.device_name("cpu")
    assert name.endswith(f"({os.cpu_count()} cores)") and len(name) > len(f"({os.cpu_count()} cores)"), name
    runtime.synchronize("cpu")  # nothing queued on the CPU: returns at once


@pytest.mark.gpu
def test_synchronize_waits_for_cuda_work():
    x = torch.randn(4096, 4096, device="cuda")
    y = x @ x
    runtime.synchronize(y.device)
    assert torch.cuda.current_stream().query(), "work still queued after synchronize"
    assert runtime.device_name("cuda") == torch.cuda.get_device_name()
