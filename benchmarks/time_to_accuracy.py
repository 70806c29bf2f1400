"""Time to a test accuracy: the capstone's fast path against the conventional loop, same model and epochs.

Both sides train the same :class:`course_lib.capstone.CapstoneNet` (same initial weights for a seed,
same Nesterov SGD, warm-up + cosine schedule, label smoothing, flip + 2-pixel translation) for the
same epochs on the same device, and are tested the same way (flip TTA) after every epoch, outside the
timed loop:

- ``fast``: :func:`course_lib.capstone.train_recipe`: data resident on the device, batched on-device
  augmentation, no host synchronisation in the step loop, bf16 autocast + ``channels_last`` on CUDA,
  optionally ``torch.compile`` (``--compile``; its time is reported on its own line);
- ``conventional``: what a user would write: ``torchvision.datasets.FashionMNIST``, a ``DataLoader``
  with per-sample ``transforms.v2`` (flip, padded crop, to float, normalize) and ``--workers`` worker
  processes, batches moved to the device, and a plain float32 loop that logs ``loss.item()`` per step.

Time to accuracy is DAWNBench's: the training seconds at the first epoch whose test accuracy reaches
the target, mean over seeds. Data loading (reading the dataset, statistics, whitening fit) and compile
time are on their own lines. The same command also reruns the capstone's ablation (``--ablation``,
by default the profile's configuration of :data:`course_lib.capstone.PROFILES`), so one command
regenerates every JSON result. Usage::

    python benchmarks/time_to_accuracy.py                       # CPU: target 90%, 1 seed, quick ablation
    python benchmarks/time_to_accuracy.py --device cuda --seeds 5 --epochs 10 --targets 0.93 0.94 --compile \\
        --widths 64 128 256 --convs-per-block 2

Results go to stdout as markdown tables and to ``build/benchmarks/time_to_accuracy.json`` and
``build/benchmarks/ablation.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import capstone as C  # noqa: E402
from course_lib import data, runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ fast path


def fast_run(recipe: C.Recipe, ds: data.Dataset, seed: int) -> dict:
    """One seed of the fast path; returns its history and times."""
    result = C.train_recipe(recipe, ds, seed, eval_each_epoch=True)
    return {"history": result.history, "prep_seconds": result.prep_seconds,
            "compile_seconds": result.compile_seconds, "train_seconds": result.train_seconds,
            "final_accuracy": result.accuracy}


# --------------------------------------------------------------------------------- conventional loop


def conventional_transform(mean: float, std: float, padding: int):
    """Per-sample torchvision v2 pipeline in the fast path's order: flip, pad-and-crop, to float, normalize."""
    return v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(), v2.RandomCrop(28, padding=padding),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])])


def conventional_run(recipe: C.Recipe, root: Path, ds: data.Dataset, seed: int, workers: int) -> dict:
    """One seed of the conventional loop: torchvision dataset, DataLoader, per-sample v2, float32, .item()."""
    device = ds.device
    started = time.perf_counter()
    mean, std = C.channel_stats(ds.x_train)  # the same statistics as the fast path (fit on the training split)
    train_set = datasets.FashionMNIST(str(root), train=True, download=False,
                                      transform=conventional_transform(float(mean), float(std), recipe.padding))
    data_seconds = time.perf_counter() - started
    generator = runtime.seed_everything(seed)
    net = C.build_net(recipe, ds.x_train, ds.num_classes, mean=mean, std=std, generator=generator)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    opt, sched = C.make_optimizer(net, recipe, recipe.epochs * len(loader))
    x_test = C.normalize(ds.x_test, mean, std)
    history, seconds = [], 0.0
    for epoch in range(1, recipe.epochs + 1):
        runtime.synchronize(device)
        started = time.perf_counter()
        net.train()
        running = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(net(xb), yb, label_smoothing=recipe.smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        runtime.synchronize(device)
        seconds += time.perf_counter() - started
        acc = float(C.accuracy(C.predict_probs([net], x_test, tta=recipe.tta), ds.y_test))
        history.append({"epoch": epoch, "train_seconds": seconds, "train_loss": running / len(loader), "test_acc": acc})
    return {"history": history, "prep_seconds": data_seconds, "compile_seconds": 0.0, "train_seconds": seconds,
            "final_accuracy": history[-1]["test_acc"]}


# ---------------------------------------------------------------------------------------- reporting


def mean_or_nan(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def summarize(runs: list[dict], targets: list[float]) -> dict:
    """Means over seeds: times, final accuracy, and per target the mean time and how many seeds got there."""
    out = {k: mean_or_nan(r[k] for r in runs) for k in ("prep_seconds", "compile_seconds", "train_seconds", "final_accuracy")}
    out["final_accuracy_std"] = statistics.stdev([r["final_accuracy"] for r in runs]) if len(runs) > 1 else math.nan
    out["seconds_per_epoch"] = out["train_seconds"] / len(runs[0]["history"])
    for t in targets:
        times = [C.time_to_accuracy(r["history"], t) for r in runs]
        out[f"time_to_{t:g}"] = mean_or_nan(times) if all(not math.isnan(x) for x in times) else math.nan
        out[f"reached_{t:g}"] = sum(not math.isnan(x) for x in times)
    return out


def fmt(x, spec=".1f", unit=" s") -> str:
    return "not reached" if isinstance(x, float) and math.isnan(x) else f"{x:{spec}}{unit}"


def markdown(fast: dict, conv: dict | None, targets, seeds: int) -> str:
    head = "| | fast path (course_lib.capstone) | conventional (DataLoader + v2, fp32) | ratio |"
    lines = [head, "|---|---:|---:|---:|"]

    def row(label, key, spec=".1f", unit=" s", ratio=False):
        c = conv.get(key, math.nan) if conv else math.nan
        r = c / fast[key] if ratio and conv and fast[key] and not math.isnan(fast[key]) and not math.isnan(c) else math.nan
        lines.append(f"| {label} | {fmt(fast[key], spec, unit)} | {fmt(c, spec, unit) if conv else 'skipped'} | "
                     f"{fmt(r, '.2f', 'x') if ratio else ''} |")
    row("data loading, stats, whitening fit", "prep_seconds")
    row("compile", "compile_seconds")
    row("training seconds per epoch", "seconds_per_epoch", ratio=True)
    for t in targets:
        row(f"time to {t:.0%} (seeds reaching it: fast {fast[f'reached_{t:g}']}/{seeds}"
            + (f", conventional {conv[f'reached_{t:g}']}/{seeds})" if conv else ")"), f"time_to_{t:g}", ratio=True)
    row("final test accuracy (TTA)", "final_accuracy", ".2%", "")
    return "\n".join(lines)


def frame_markdown(frame) -> str:
    """A DataFrame as a markdown table (floats to 4 decimals), without the optional ``tabulate``."""
    cells = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join([str(frame.index.name or "")] + [str(c) for c in frame.columns]) + " |",
             "|" + "---|" * (len(frame.columns) + 1)]
    lines += ["| " + " | ".join([str(i)] + [cells(v) for v in row]) + " |" for i, row in zip(frame.index, frame.itertuples(index=False))]
    return "\n".join(lines)


def run_ablation(profile: str, root: Path, device: torch.device, threads: int | None) -> dict:
    """The capstone notebook's ablation in ``profile``'s configuration; returns the JSON record.

    With ``threads`` (default 1 on the CPU, as the test suite runs the notebook) the numbers are the
    notebook's own: a CPU run is reproducible for a given thread count, not across thread counts.
    """
    cfg = C.PROFILES[profile]
    if threads:
        torch.set_num_threads(threads)
    ds = data.load_dataset("fashion_mnist", root=root, device=device, verbose=False)
    ds = ds.subset(cfg["n_train"], cfg["n_test"], generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    frame = C.ablation(cfg["recipe"], ds, cfg["seeds"])
    summary = C.summarize_ablation(frame)
    verdict = C.verdicts(summary, len(ds.x_test)).reindex(summary.index).fillna("")
    print(f"\nablation ({profile} profile: {len(ds.x_train)} training / {len(ds.x_test)} test images, "
          f"seeds {cfg['seeds']}, {torch.get_num_threads()} thread(s), {time.perf_counter() - started:.0f} s)\n")
    print(frame_markdown(summary.assign(verdict=verdict)))
    return {"profile": profile, "n_train": len(ds.x_train), "n_test": len(ds.x_test), "seeds": cfg["seeds"],
            "torch_threads": torch.get_num_threads(), "recipe": dataclasses.asdict(cfg["recipe"]),
            "runs": frame.to_dict("records"),
            "summary": summary.reset_index().to_dict("records"), "verdicts": verdict.to_dict()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(runtime.get_device()))
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default: 5 on CUDA, 1 elsewhere)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the benchmark recipe's)")
    parser.add_argument("--targets", type=float, nargs="+", default=None,
                        help="test accuracies to time (default: 0.93 0.94 on CUDA, 0.90 elsewhere)")
    parser.add_argument("--members", type=int, default=1, help="networks per run (1: no ensemble)")
    parser.add_argument("--widths", type=int, nargs=3, default=None, help="channels of the three conv blocks")
    parser.add_argument("--convs-per-block", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-conventional", action="store_true")
    parser.add_argument("--ablation", choices=["quick", "full", "none"], default=None,
                        help="also rerun the notebook's ablation (default: the course profile)")
    parser.add_argument("--ablation-threads", type=int, default=None,
                        help="torch threads of the ablation (default: 1 on the CPU, to match the notebook)")
    parser.add_argument("--skip-timing", action="store_true", help="only rerun the ablation")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    seeds = args.seeds or (5 if cuda else 1)
    targets = args.targets or ([0.93, 0.94] if cuda else [0.90])
    recipe = C.BENCHMARK_RECIPE.but(compile=args.compile, members=args.members, ensemble=args.members > 1)
    changes = {"epochs": args.epochs, "widths": tuple(args.widths) if args.widths else None,
               "convs_per_block": args.convs_per_block, "batch_size": args.batch_size, "lr": args.lr}
    recipe = recipe.but(**{k: v for k, v in changes.items() if v is not None})
    root = data.data_root()

    args.out.mkdir(parents=True, exist_ok=True)
    result = {} if args.skip_timing else time_to_accuracy(args, device, recipe, seeds, targets, root)
    profile = args.ablation or runtime.profile()
    if profile != "none":
        threads = args.ablation_threads or (None if cuda else 1)
        ablation = run_ablation(profile, root, device, threads)
        (args.out / "ablation.json").write_text(json.dumps(ablation, indent=2) + "\n")
        print(f"wrote {args.out / 'ablation.json'}")
    return result


def time_to_accuracy(args, device, recipe, seeds, targets, root) -> dict:
    """The side-by-side race; prints the table and writes ``time_to_accuracy.json``."""
    started = time.perf_counter()
    ds = data.load_dataset("fashion_mnist", root=root, device=device, verbose=False)
    runtime.synchronize(device)
    load_seconds = time.perf_counter() - started
    print(f"device: {device} ({runtime.device_name(device)}), {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {recipe.epochs} epochs, batch {recipe.batch_size}, "
          f"widths {recipe.widths}, {seeds} seed(s); dataset loaded onto the device in {load_seconds:.2f} s", flush=True)
    fast_runs, conv_runs = [], []
    for seed in range(seeds):
        fast_runs.append(fast_run(recipe, ds, seed))
        fast_runs[-1]["prep_seconds"] += load_seconds
        print(f"seed {seed} fast:         " + ", ".join(f"{h['test_acc']:.2%} @ {h['train_seconds']:.1f} s"
                                                       for h in fast_runs[-1]["history"]), flush=True)
        if not args.skip_conventional:
            conv_runs.append(conventional_run(recipe, root, ds, seed, args.workers))
            print(f"seed {seed} conventional: " + ", ".join(f"{h['test_acc']:.2%} @ {h['train_seconds']:.1f} s"
                                                           for h in conv_runs[-1]["history"]), flush=True)
    fast = summarize(fast_runs, targets)
    conv = summarize(conv_runs, targets) if conv_runs else None
    table = markdown(fast, conv, targets, seeds)
    print("\n" + table)
    result = {"device": str(device), "device_name": runtime.device_name(device), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "workers": args.workers,
              "seeds": seeds, "targets": targets, "recipe": dataclasses.asdict(recipe), "fast": fast, "conventional": conv,
              "fast_runs": fast_runs, "conventional_runs": conv_runs, "markdown": table}
    (args.out / "time_to_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'time_to_accuracy.json'}")
    return result


if __name__ == "__main__":
    main()
