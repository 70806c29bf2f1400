"""Benchmark: K small MLPs trained at once with ``torch.func.vmap`` against K sequential trainings.

Usage::

    python benchmarks/ensemble_vmap.py [--members 4 8 16] [--epochs 1] [--n-train 10000] [--width 128]

Both paths train the same members (same seeds, same batches, SGD with momentum 0.9) on Fashion-MNIST
(or the digits fallback) on ``runtime.get_device()``; the script prints one row per K with the
seconds of each path, their ratio, and the largest weight difference between the two results.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from course_lib import data, ensemble, models, runtime


def run(members: int, *, epochs: int, n_train: int | None, width: int, batch_size: int, device) -> dict:
    """Time both paths for ``members`` models; returns a result row."""
    ds = data.load_dataset("fashion_mnist", device=device, verbose=False)
    ds = ds.subset(n_train=n_train, n_test=0, generator=torch.Generator().manual_seed(0))
    factory = lambda: models.MLP(math.prod(ds.input_shape), ds.num_classes, depth=2, width=width).to(device)
    make_loader = lambda: data.DeviceLoader(ds.x_train, ds.y_train, batch_size,
                                            generator=torch.Generator().manual_seed(0))
    seconds, results = {}, {}
    for kind in ("vmap", "sequential"):
        start_members = ensemble.make_members(factory, range(members))
        runtime.synchronize(device)
        start = time.perf_counter()
        if kind == "vmap":
            results[kind], _ = ensemble.train_vmap(start_members, make_loader(), epochs=epochs, lr=0.05, momentum=0.9)
        else:
            results[kind] = ensemble.train_sequential(start_members, make_loader, epochs=epochs, lr=0.05, momentum=0.9)
        runtime.synchronize(device)
        seconds[kind] = time.perf_counter() - start
    gap = max((a - b).abs().max().item() for m1, m2 in zip(results["vmap"], results["sequential"])
              for a, b in zip(m1.parameters(), m2.parameters()))
    return {"members": members, "sequential_s": seconds["sequential"], "vmap_s": seconds["vmap"],
            "speedup": seconds["sequential"] / seconds["vmap"], "max_weight_diff": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = runtime.get_device()
    run(2, epochs=1, n_train=1000, width=args.width, batch_size=args.batch_size, device=device)  # warm-up
    name = f"{runtime.device_name(device)}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name})")
    print(f"{'K':>4} {'sequential s':>13} {'vmap s':>9} {'speed-up':>9} {'max |dw|':>10}")
    for k in args.members:
        row = run(k, epochs=args.epochs, n_train=args.n_train, width=args.width, batch_size=args.batch_size, device=device)
        print(f"{row['members']:>4} {row['sequential_s']:>13.2f} {row['vmap_s']:>9.2f} {row['speedup']:>8.2f}x "
              f"{row['max_weight_diff']:>10.1e}")


if __name__ == "__main__":
    main()
