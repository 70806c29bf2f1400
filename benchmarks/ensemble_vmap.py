"""Benchmark: K small MLPs trained at once with ``torch.func.vmap`` against K sequential trainings.

Usage::

    python benchmarks/ensemble_vmap.py [--members 4 8 16 32] [--epochs 1] [--n-train 10000] [--width 128]
        [--device cuda] [--compile auto|on|off] [--out build/benchmarks/ensemble_vmap.json]

Both paths train the same members (same seeds, same batches, SGD with momentum 0.9) on Fashion-MNIST
(or the digits fallback) on ``--device`` (default ``runtime.get_device()``). For every K:

- **speed**, in float32: each path first runs a warm-up of two batches, then is timed by the wall clock
  and, on CUDA, by CUDA events (``benchmarks/timing.py``); the speed-up is sequential over vmap. The paths
  are ``sequential`` (``torch.optim.SGD``, one member after the other), ``vmap`` (``train_vmap``) and, with
  ``--compile`` (by default on CUDA only), ``vmap_compiled`` (``train_vmap(compiled=True)``: the whole
  step through ``torch.compile``, compiled in its warm-up, once per K);
- **agreement**, in float64: both paths train again in float64 on the same batches, and the largest
  weight difference of any member must be at most ``--tolerance`` (1e-10); the run exits with status 1
  otherwise;
- **float32 drift**, information only: how many float32 members ended more than ``--drift`` apart. In
  float32 a pre-activation near 0 can land on the other side of a ReLU when the sums run in another order,
  and that member then follows another path; in float64 the same members agree to about 1e-15.

Batches are whole (``drop_last``), so every step has one shape. One row per K is printed (K, sequential s,
eager vmap s, speed-up, float64 max |dw|), followed by a line with the compiled path, the float32 drift
and the CUDA-event times; the whole record goes to ``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from course_lib import data, ensemble, models, runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Stopwatch, describe  # noqa: E402  (benchmarks/timing.py)

ROOT = Path(__file__).resolve().parents[1]
LR, MOMENTUM = 0.05, 0.9


def train(kind: str, members: int, ds, *, epochs: int, width: int, batch_size: int, dtype) -> list:
    """Train ``members`` MLPs (seeds 0..K-1) by ``kind`` (``vmap`` or ``sequential``) on ``ds`` in ``dtype``."""
    x = ds.x_train.to(dtype)
    factory = lambda: models.MLP(math.prod(ds.input_shape), ds.num_classes, depth=2, width=width).to(x.device, dtype)
    make_loader = lambda: data.DeviceLoader(x, ds.y_train, batch_size, generator=torch.Generator().manual_seed(0),
                                            drop_last=True)
    start = ensemble.make_members(factory, range(members))
    if kind.startswith("vmap"):
        return ensemble.train_vmap(start, make_loader(), epochs=epochs, lr=LR, momentum=MOMENTUM,
                                   compiled=kind == "vmap_compiled")[0]
    return ensemble.train_sequential(start, make_loader, epochs=epochs, lr=LR, momentum=MOMENTUM)


def member_gaps(a: list, b: list) -> list[float]:
    """For each member, the largest absolute difference of its weights between the two results."""
    return [max((pa - pb).abs().max().item() for pa, pb in zip(ma.parameters(), mb.parameters())) for ma, mb in zip(a, b)]


def time_path(kind: str, members: int, ds, warm, *, device, epochs: int, **sizes) -> tuple[list, dict]:
    """Warm-up on ``warm`` (two batches; compiles the compiled path), then the timed float32 training on ``ds``:
    the trained members and the :class:`timing.Stopwatch` record."""
    train(kind, members, warm, epochs=1, dtype=torch.float32, **sizes)
    with Stopwatch(device) as sw:
        trained = train(kind, members, ds, epochs=epochs, dtype=torch.float32, **sizes)
    return trained, sw.record()


def compiled_row(members: int, ds, warm, sequential: list, row: dict, **kw) -> dict:
    """The figures of ``train_vmap(compiled=True)``; a failure to compile is recorded, not raised, so that the
    eager figures of a one-shot GPU run survive it."""
    try:
        trained, record = time_path("vmap_compiled", members, ds, warm, **kw)
    except Exception as exc:  # noqa: BLE001 - reported in the row and printed
        return {"vmap_compiled_error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"vmap_compiled": record, "vmap_compiled_s": record["wall_s"],
            "speedup_compiled": row["sequential_s"] / record["wall_s"],
            "compiled_float32_max_weight_diff": max(member_gaps(trained, sequential))}


def run(members: int, ds, warm, *, drift: float, compiled: bool, **kw) -> dict:
    """Time the paths for ``members`` models in float32, then check vmap against sequential in float64."""
    row = {"members": members}
    results = {}
    for kind in ("vmap", "sequential"):
        results[kind], row[kind] = time_path(kind, members, ds, warm, **kw)
    row["sequential_s"], row["vmap_s"] = row["sequential"]["wall_s"], row["vmap"]["wall_s"]
    row["speedup"] = row["sequential_s"] / row["vmap_s"]
    if row["vmap"]["event_s"]:
        row["speedup_events"] = row["sequential"]["event_s"] / row["vmap"]["event_s"]
    if compiled:
        row.update(compiled_row(members, ds, warm, results["sequential"], row, **kw))
    gaps32 = member_gaps(results["vmap"], results["sequential"])
    row["float32_max_weight_diff"] = max(gaps32)
    row["float32_members_drifted"] = sum(g > drift for g in gaps32)
    sizes = {k: v for k, v in kw.items() if k != "device"}
    f64 = {kind: train(kind, members, ds, dtype=torch.float64, **sizes) for kind in ("vmap", "sequential")}
    row["max_weight_diff"] = max(member_gaps(f64["vmap"], f64["sequential"]))  # float64
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default=None, help="default: runtime.get_device() ($COURSE_DEVICE, else CUDA, ...)")
    parser.add_argument("--tolerance", type=float, default=1e-10, help="largest float64 weight difference allowed")
    parser.add_argument("--drift", type=float, default=1e-4, help="a float32 member further apart than this has drifted")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="also time train_vmap(compiled=True) (auto: on CUDA only)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks" / "ensemble_vmap.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else runtime.get_device()
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    full = data.load_dataset("fashion_mnist", device=device, verbose=False)
    ds = full.subset(n_train=args.n_train, n_test=0, generator=torch.Generator().manual_seed(0))
    warm = full.subset(n_train=2 * args.batch_size, n_test=0, generator=torch.Generator().manual_seed(1))
    name = f"{runtime.device_name(device)}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name})")
    print(f"{'K':>4} {'sequential s':>13} {'vmap s':>9} {'speed-up':>9} {'max |dw|':>10}   (max |dw|: float64)")
    rows = []
    for k in args.members:
        row = run(k, ds, warm, epochs=args.epochs, width=args.width, batch_size=args.batch_size, device=device,
                  drift=args.drift, compiled=compiled)
        rows.append(row)
        print(f"{row['members']:>4} {row['sequential_s']:>13.3f} {row['vmap_s']:>9.3f} {row['speedup']:>8.2f}x "
              f"{row['max_weight_diff']:>10.1e}")
        if "vmap_compiled_error" in row:
            print(f"       vmap compiled: failed ({row['vmap_compiled_error']})")
        elif compiled:
            print(f"       vmap compiled: {row['vmap_compiled_s']:.3f} s, speed-up {row['speedup_compiled']:.2f}x "
                  f"({describe(row['vmap_compiled'])}; float32 max |dw| {row['compiled_float32_max_weight_diff']:.1e})")
        print(f"       float32: {row['float32_members_drifted']}/{k} members drifted beyond {args.drift:g} "
              f"(largest {row['float32_max_weight_diff']:.1e}, information only); "
              f"sequential {describe(row['sequential'])}; vmap {describe(row['vmap'])}")
    worst = max(r["max_weight_diff"] for r in rows)
    agree = worst <= args.tolerance
    print(f"float64 agreement: {'ok' if agree else 'FAILED'}, largest |dw| {worst:.1e} "
          f"(tolerance {args.tolerance:g}) over K = {', '.join(str(r['members']) for r in rows)}")
    record = {"device": str(device), "device_name": runtime.device_name(device), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "epochs": args.epochs, "n_train": len(ds.x_train), "width": args.width,
              "batch_size": args.batch_size, "lr": LR, "momentum": MOMENTUM, "tolerance": args.tolerance,
              "drift": args.drift, "compiled": compiled, "float64_agree": agree, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
