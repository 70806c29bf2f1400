"""course_lib.distributed: a real 2-process torchrun on gloo equals one process on the same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from course_lib import distributed


def test_shard_cuts_equal_contiguous_pieces():
    assert [distributed.shard(8, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert distributed.shard(9, 2, 3) == slice(6, 9)
    with pytest.raises(ValueError):
        distributed.shard(10, 0, 3)
    with pytest.raises(ValueError):
        distributed.shard(8, 2, 2)


def test_global_batches_are_reproducible_and_cover_an_epoch():
    a = list(distributed.global_batches(100, 20, 7, seed=3))
    b = list(distributed.global_batches(100, 20, 7, seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sorted(torch.cat(a[:5]).tolist()) == list(range(100))


@pytest.mark.timeout(300)
def test_two_process_torchrun_equals_single_process(tmp_path, repo_root):
    settings = dict(steps=12, global_batch=32, lr=0.05, seed=1, model="mlp", dataset="digits", n_train=512)
    out = tmp_path / "result.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "course_lib.distributed", "--device", "cpu", "--out", str(out),
           *[f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 process(es), backend gloo" in proc.stdout
    two = torch.load(out)
    one = distributed.train(**settings, device="cpu")
    assert two["world_size"] == 2 and two["backend"] == "gloo" and two["allreduce_ms"] > 0
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), atol=1e-5, rtol=1e-5)
    for name, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][name], value, atol=1e-5, rtol=1e-5, msg=name)
    assert one["losses"][-1] < one["losses"][0]  # it did train
    moved = max(float((one["state_dict"][k] - distributed.train(**{**settings, "steps": 1})["state_dict"][k]).abs().max())
                for k in one["state_dict"])
    assert moved > 1e-3  # the comparison is not between two untrained models


def test_world_size_above_one_needs_a_process_group():
    with pytest.raises((RuntimeError, ValueError)):
        distributed.train(steps=1, global_batch=8, n_train=64, world_size=2, rank=0)


def test_train_steps_through_the_global_batches():
    # train draws its batches itself (global_batches is chapter 08's answer in the student release): same order
    import torch.nn.functional as F

    from course_lib import data

    result = distributed.train(steps=6, global_batch=16, lr=0.0, seed=2, n_train=64, dataset="digits")
    ds = data.load_dataset("digits", device="cpu", verbose=False).subset(64, 0, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(2)
    net = distributed.build_model("mlp", ds.input_shape, ds.num_classes)
    with torch.no_grad():
        expected = [float(F.cross_entropy(net(ds.x_train[i]), ds.y_train[i]))
                    for i in distributed.global_batches(64, 16, 6, seed=2)]
    assert result["losses"] == pytest.approx(expected, rel=1e-6)
