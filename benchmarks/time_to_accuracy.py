"""Time to a test accuracy: the capstone's fast path against the conventional loop, same model and epochs.

Both sides train the same :class:`course_lib.capstone.CapstoneNet` (same initial weights for a seed,
same Nesterov SGD, warm-up + cosine schedule, label smoothing, flip + 2-pixel translation) for the
same epochs on the same device, and are tested the same way (flip TTA) after every epoch, outside the
timed loop:

- ``fast``: :func:`course_lib.capstone.train_recipe`: data resident on the device, each epoch augmented
  in one pass on the device, fused Nesterov SGD with rates set as numbers, no host synchronisation in
  the step loop, bf16 autocast + ``channels_last`` + ``cudnn.benchmark`` on CUDA, optionally
  ``torch.compile`` (``--compile``, ``--compile-mode``; compiled once, in the warm-up, and reused by
  every seed; its time is reported on its own line);
- ``conventional``: what a user would write: ``torchvision.datasets.FashionMNIST``, a ``DataLoader``
  with per-sample ``transforms.v2`` (flip, padded crop, to float, normalize), given a fair chance:
  ``--workers`` worker processes (default: every core), pinned memory and persistent workers (one
  loader for every seed), batches moved to the device, and a plain float32 loop that logs
  ``loss.item()`` per step. ``--conventional-seeds`` / ``--conventional-epochs`` limit it (for
  seconds per epoch only).

Each path first runs a warm-up (one epoch on a few batches, not timed: compile, cuDNN's algorithm
search, worker start-up). Every epoch is timed by wall clock, by the host's share of it and on CUDA by
CUDA events (:class:`course_lib.capstone.EpochClock`); ``host/wall`` near 1 means the GPU waited for
Python (launch-bound). Achieved TFLOP/s divide ``FlopCounterMode``'s FLOPs per step by the step time.

Time to accuracy is DAWNBench's (Coleman et al. 2017): the training seconds of the fixed epoch budget
(``--epochs``), mean over seeds, counted only when the mean final TTA test accuracy reaches the target
and every seed reaches it ("not reached" otherwise). The first epoch at which a seed's accuracy
reached the target is reported beside it as information. A run whose loss is not finite stops the
benchmark, which says it diverged and at which epoch. The JSON is written after every seed.
Data loading (reading the dataset, statistics, whitening fit) and compile time are on their own lines. The same command also reruns the capstone's ablation (``--ablation``,
by default the profile's configuration of :data:`course_lib.capstone.PROFILES`), so one command
regenerates every JSON result. Usage::

    python benchmarks/time_to_accuracy.py                       # CPU: target 90%, 1 seed, quick ablation
    python benchmarks/time_to_accuracy.py --device cuda --seeds 5 --epochs 10 --targets 0.93 0.94 --compile \\
        --widths 64 128 256 --convs-per-block 2 --conventional-seeds 1 --conventional-epochs 1

The candidate tricks of :data:`course_lib.capstone.CANDIDATES` (off by default, not yet measured) are
switched on in the timed recipe with ``--ema`` (``--ema-decay``), ``--alternating-flips``,
``--whiten-bias-epochs N`` and ``--tta-views N``; ``--candidates NAME ...`` ablates them on the timed
recipe (the whole training set, ``--seeds`` seeds): the recipe, then each candidate switched on alone
(:func:`course_lib.capstone.ablation`), into ``build/benchmarks/candidates.json``::

    python benchmarks/time_to_accuracy.py --device cuda --seeds 5 --epochs 12 --batch-size 512 --lr 0.4 \
        --widths 64 128 256 --convs-per-block 2 --compile --skip-timing --ablation none \
        --candidates ema alternating_flips whiten_bias multiview_tta

Results go to stdout as markdown tables and to ``build/benchmarks/time_to_accuracy.json``,
``build/benchmarks/ablation.json`` and ``build/benchmarks/candidates.json``.
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
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import capstone as C  # noqa: E402
from course_lib import data, runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ fast path


def fast_run(recipe: C.Recipe, ds: data.Dataset, seed: int) -> dict:
    """One seed of the fast path; returns its history, times and status (``diverged`` epoch or None)."""
    result = C.train_recipe(recipe, ds, seed, eval_each_epoch=True)
    return {"history": result.history, "prep_seconds": result.prep_seconds,
            "compile_seconds": result.compile_seconds, "train_seconds": result.train_seconds,
            "final_accuracy": result.accuracy, "diverged": result.diverged}


def warm_up_fast(recipe: C.Recipe, ds: data.Dataset) -> float:
    """One epoch of the fast path on four batches, untimed by the race: compiles (once for every seed),
    runs cuDNN's algorithm search and the allocator's first requests. Returns its seconds."""
    started = time.perf_counter()
    small = ds.subset(4 * recipe.batch_size, 500, generator=torch.Generator().manual_seed(0))
    C.train_recipe(recipe.but(epochs=1), small, seed=10_000)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------- conventional loop


def conventional_transform(mean: float, std: float, padding: int):
    """Per-sample torchvision v2 pipeline in the fast path's order: flip, pad-and-crop, to float, normalize."""
    return v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(), v2.RandomCrop(28, padding=padding),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])])


def conventional_loader(recipe: C.Recipe, root: Path, ds: data.Dataset, workers: int) -> DataLoader:
    """The fair ``DataLoader``: ``workers`` processes, pinned memory on CUDA, persistent workers (built once,
    reused by every seed), over ``torchvision.datasets.FashionMNIST`` with :func:`conventional_transform`
    (its first ``len(ds.x_train)`` images, the fast path's training set)."""
    mean, std = C.channel_stats(ds.x_train)  # the same statistics as the fast path (fit on the training split)
    train_set = datasets.FashionMNIST(str(root), train=True, download=False,
                                      transform=conventional_transform(float(mean), float(std), recipe.padding))
    if len(ds.x_train) < len(train_set):
        train_set = Subset(train_set, range(len(ds.x_train)))
    return DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=ds.device.type == "cuda", persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(0))


def conventional_epoch(net, loader, opt, sched, recipe: C.Recipe, device, max_steps: int | None = None) -> float:
    """One epoch of the plain loop: batches copied to the device, float32, ``loss.item()`` logged every
    step; returns the mean loss (NaN or inf: diverged)."""
    net.train()
    running, steps = 0.0, 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(net(xb), yb, label_smoothing=recipe.smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    return running / max(steps, 1)


def conventional_run(recipe: C.Recipe, loader: DataLoader, ds: data.Dataset, seed: int, *,
                     warm_up: bool = False) -> dict:
    """One seed of the conventional loop (``warm_up``: four untimed steps only); stops at a non-finite loss."""
    device = ds.device
    started = time.perf_counter()
    mean, std = C.channel_stats(ds.x_train)
    data_seconds = time.perf_counter() - started
    net = C.build_net(recipe, ds.x_train, ds.num_classes, mean=mean, std=std,
                      generator=runtime.seed_everything(seed))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay)
    rates = C.lr_schedule(recipe, recipe.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: rates[min(t, len(rates) - 1)] / recipe.lr)
    if warm_up:
        conventional_epoch(net, loader, opt, sched, recipe, device, max_steps=4)
        return {}
    x_test = C.normalize(ds.x_test, mean, std)
    history, seconds, diverged = [], 0.0, None
    for epoch in range(1, recipe.epochs + 1):
        with C.EpochClock(device) as clock:
            loss = conventional_epoch(net, loader, opt, sched, recipe, device)
        seconds += clock.wall
        acc = float(C.accuracy(C.predict_probs([net], x_test, tta=recipe.tta, views=recipe.tta_views), ds.y_test))
        history.append({"epoch": epoch, "train_seconds": seconds, "train_loss": loss, "test_acc": acc, **clock.record()})
        if not math.isfinite(loss):
            diverged = epoch
            break
    return {"history": history, "prep_seconds": data_seconds, "compile_seconds": 0.0, "train_seconds": seconds,
            "final_accuracy": history[-1]["test_acc"], "diverged": diverged}


# ---------------------------------------------------------------------------------------- reporting


def mean_or_nan(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def dawnbench_seconds(runs: list[dict], target: float) -> float:
    """DAWNBench's time to accuracy of a fixed epoch budget: the mean training seconds of the runs when their
    mean final accuracy reaches ``target`` and every run reaches it, else NaN."""
    finals = [r["final_accuracy"] for r in runs]
    if not runs or any(r.get("diverged") for r in runs) or min(finals) < target or statistics.fmean(finals) < target:
        return math.nan
    return statistics.fmean(r["train_seconds"] for r in runs)


def summarize(runs: list[dict], targets: list[float], flops_per_epoch: float | None = None) -> dict:
    """Means over seeds: times, final accuracy, per target the DAWNBench time (:func:`dawnbench_seconds`),
    the seeds reaching it and the mean first epoch time at which they did; wall, host and CUDA-event
    seconds per epoch with their ratios, and the achieved TFLOP/s."""
    out = {k: mean_or_nan(r[k] for r in runs) for k in ("prep_seconds", "compile_seconds", "train_seconds", "final_accuracy")}
    out["final_accuracy_std"] = statistics.stdev([r["final_accuracy"] for r in runs]) if len(runs) > 1 else math.nan
    epochs = [h for r in runs for h in r["history"]]
    out["seconds_per_epoch"] = mean_or_nan(h["epoch_wall_seconds"] for h in epochs)
    out["host_seconds_per_epoch"] = mean_or_nan(h["epoch_host_seconds"] for h in epochs)
    out["host_wall_ratio"] = out["host_seconds_per_epoch"] / out["seconds_per_epoch"]
    gpu = [h["epoch_gpu_seconds"] for h in epochs if "epoch_gpu_seconds" in h]
    out["cuda_event_seconds_per_epoch"] = mean_or_nan(gpu) if gpu else math.nan
    out["cuda_event_wall_ratio"] = out["cuda_event_seconds_per_epoch"] / out["seconds_per_epoch"]
    out["tflops"] = flops_per_epoch / out["seconds_per_epoch"] / 1e12 if flops_per_epoch else math.nan
    out["diverged"] = next((f"seed {i}: diverged at epoch {r['diverged']}" for i, r in enumerate(runs)
                            if r.get("diverged")), None)
    for t in targets:
        firsts = [C.time_to_accuracy(r["history"], t) for r in runs]
        out[f"time_to_{t:g}"] = dawnbench_seconds(runs, t)
        out[f"reached_{t:g}"] = sum(r["final_accuracy"] >= t for r in runs)
        out[f"first_epoch_time_to_{t:g}"] = mean_or_nan(firsts) if all(not math.isnan(x) for x in firsts) else math.nan
    return out


def fmt(x, spec=".1f", unit=" s") -> str:
    """``x`` formatted, or "n/a" for NaN (a target not reached, a figure not measured on this device)."""
    return "n/a" if x is None or isinstance(x, float) and math.isnan(x) else f"{x:{spec}}{unit}"


def markdown(fast: dict, conv: dict | None, targets, seeds: int, conv_seeds: int | None = None) -> str:
    """The side-by-side table; ratios are conventional / fast."""
    conv_seeds = conv_seeds or seeds
    head = "| | fast path (course_lib.capstone) | conventional (DataLoader + v2, fp32) | ratio |"
    lines = [head, "|---|---:|---:|---:|"]

    def row(label, key, spec=".1f", unit=" s", ratio=False):
        c = conv.get(key, math.nan) if conv else math.nan
        f = fast.get(key, math.nan)
        r = c / f if ratio and conv and f and not math.isnan(f) and not math.isnan(c) else math.nan
        lines.append(f"| {label} | {fmt(fast.get(key, math.nan), spec, unit)} | {fmt(c, spec, unit) if conv else 'skipped'} | "
                     f"{fmt(r, '.2f', 'x') if ratio else ''} |")
    row("data loading, stats, whitening fit", "prep_seconds")
    row("warm-up (not timed: compile, cuDNN search, workers)", "warmup_seconds")
    row("compile warm-up per seed (the first compile is in the warm-up above)", "compile_seconds")
    row("training seconds per epoch (wall)", "seconds_per_epoch", ".3f", ratio=True)
    row("host seconds per epoch (until the last op is queued)", "host_seconds_per_epoch", ".3f")
    row("host / wall (near 1: launch-bound)", "host_wall_ratio", ".2f", "")
    row("CUDA-event seconds per epoch", "cuda_event_seconds_per_epoch", ".3f")
    row("CUDA events / wall", "cuda_event_wall_ratio", ".2f", "")
    row("achieved TFLOP/s (FlopCounterMode FLOPs / wall)", "tflops", ".3f", "")
    for t in targets:
        row(f"time to {t:.0%}, DAWNBench (seeds reaching it: fast {fast[f'reached_{t:g}']}/{seeds}"
            + (f", conventional {conv[f'reached_{t:g}']}/{conv_seeds})" if conv else ")"), f"time_to_{t:g}", ratio=True)
        row(f"first epoch at {t:.0%}, mean over seeds (information)", f"first_epoch_time_to_{t:g}")
    row("final test accuracy (TTA), mean", "final_accuracy", ".2%", "")
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


def run_candidates(recipe: C.Recipe, names, seeds: int, root: Path, device: torch.device, n_train=None) -> dict:
    """The candidate tricks ``names`` switched on one at a time in ``recipe`` on the whole Fashion-MNIST
    training set (or its first ``n_train`` images), ``seeds`` seeds, against the recipe itself
    (:func:`course_lib.capstone.ablation` with no trick removed); prints the table, returns the JSON record."""
    ds = data.load_dataset("fashion_mnist", root=root, device=device, verbose=False)
    if n_train:
        ds = dataclasses.replace(ds, x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train])
    started = time.perf_counter()
    frame = C.ablation(recipe, ds, range(seeds), tricks=(), candidates=names,
                       progress=lambda row: print(f"  {row['removed']}, seed {row['seed']}: {row['accuracy']:.2%} "
                                                  f"in {row['train_seconds']:.2f} s", flush=True))
    summary = C.summarize_ablation(frame)
    verdict = C.verdicts(summary, len(ds.x_test)).reindex(summary.index).fillna("")
    print(f"\ncandidate tricks ({len(ds.x_train)} training / {len(ds.x_test)} test images, {seeds} seed(s), "
          f"{recipe.epochs} epochs, {time.perf_counter() - started:.0f} s)\n")
    print(frame_markdown(summary.assign(verdict=verdict)))
    return {"n_train": len(ds.x_train), "n_test": len(ds.x_test), "seeds": seeds, "candidates": list(names),
            "recipe": dataclasses.asdict(recipe), "runs": frame.to_dict("records"),
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
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode on CUDA (default: the recipe's, reduce-overhead: CUDA graphs)")
    parser.add_argument("--ema", action="store_true", help="candidate: evaluate a moving average of the weights")
    parser.add_argument("--ema-decay", type=float, default=None, help="its decay d (default: the recipe's)")
    parser.add_argument("--alternating-flips", action="store_true", help="candidate: flip each image every other epoch")
    parser.add_argument("--whiten-bias-epochs", type=int, default=None,
                        help="candidate: train the whitening bias for the first N epochs (default 0: frozen)")
    parser.add_argument("--tta-views", type=int, default=None,
                        help="candidate: TTA views, 1 to 6 (default 2: flip; 4, 6: with ±1-pixel shifts)")
    parser.add_argument("--candidates", nargs="+", default=None, choices=list(C.CANDIDATES),
                        help="ablate these candidate tricks on the timed recipe (each switched on alone)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DataLoader workers of the conventional loop (default: every core)")
    parser.add_argument("--conventional-seeds", type=int, default=None,
                        help="seeds of the conventional loop (default: --seeds)")
    parser.add_argument("--conventional-epochs", type=int, default=None,
                        help="epochs of the conventional loop (default: --epochs; fewer: seconds per epoch only)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each path")
    parser.add_argument("--n-train", type=int, default=None,
                        help="train on the first N training images only (a quick check; default: all 60,000)")
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
               "convs_per_block": args.convs_per_block, "batch_size": args.batch_size, "lr": args.lr,
               "compile_mode": args.compile_mode, "ema": args.ema or None, "ema_decay": args.ema_decay,
               "alternating_flips": args.alternating_flips or None, "whiten_bias_epochs": args.whiten_bias_epochs,
               "tta_views": args.tta_views}
    recipe = recipe.but(**{k: v for k, v in changes.items() if v is not None})
    root = data.data_root()

    args.out.mkdir(parents=True, exist_ok=True)
    result = {} if args.skip_timing else time_to_accuracy(args, device, recipe, seeds, targets, root)
    if args.candidates:
        record = run_candidates(recipe, args.candidates, seeds, root, device, args.n_train)
        (args.out / "candidates.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out / 'candidates.json'}")
    profile = args.ablation or runtime.profile()
    if profile != "none":
        threads = args.ablation_threads or (None if cuda else 1)
        ablation = run_ablation(profile, root, device, threads)
        (args.out / "ablation.json").write_text(json.dumps(ablation, indent=2) + "\n")
        print(f"wrote {args.out / 'ablation.json'}")
    return result


def print_seed(label: str, seed: int, run: dict) -> None:
    """One line per seed: accuracy and seconds after each epoch, and a divergence if there was one."""
    line = ", ".join(f"{h['test_acc']:.2%} @ {h['train_seconds']:.2f} s" for h in run["history"])
    if run.get("diverged"):
        line += f" -- DIVERGED at epoch {run['diverged']} (non-finite loss): the benchmark stops here"
    print(f"seed {seed} {label:<13} {line}", flush=True)


def time_to_accuracy(args, device, recipe, seeds, targets, root) -> dict:
    """The side-by-side race; prints the table and writes ``time_to_accuracy.json`` after every seed."""
    started = time.perf_counter()
    ds = data.load_dataset("fashion_mnist", root=root, device=device, verbose=False)
    if args.n_train:
        ds = dataclasses.replace(ds, x_train=ds.x_train[:args.n_train], y_train=ds.y_train[:args.n_train])
    runtime.synchronize(device)
    load_seconds = time.perf_counter() - started
    steps = len(ds.x_train) // recipe.batch_size
    flops_epoch = C.flops_per_step(recipe, ds) * steps
    conv_recipe = recipe.but(epochs=args.conventional_epochs or recipe.epochs, compile=False,  # candidates: fast path only
                             ema=False, alternating_flips=False, whiten_bias_epochs=0)
    conv_seeds = 0 if args.skip_conventional else min(args.conventional_seeds or seeds, seeds)
    print(f"device: {device} ({runtime.device_name(device)}), {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr}, "
          f"widths {recipe.widths}, {recipe.convs_per_block} conv(s) per block, compile "
          f"{recipe.compile_mode if recipe.compile else 'off'}, {seeds} seed(s), {recipe.label()}; conventional: {conv_seeds} seed(s) of "
          f"{conv_recipe.epochs} epoch(s), {args.workers} workers; {flops_epoch / 1e12:.2f} TFLOP per epoch; "
          f"dataset loaded onto the device in {load_seconds:.2f} s", flush=True)
    fast_runs, conv_runs, warm = [], [], {"fast": 0.0, "conventional": 0.0}
    loader = conventional_loader(conv_recipe, root, ds, args.workers) if conv_seeds else None
    if not args.no_warmup:
        warm["fast"] = warm_up_fast(recipe, ds)
        if loader is not None:
            t0 = time.perf_counter()
            conventional_run(conv_recipe, loader, ds, 10_000, warm_up=True)
            warm["conventional"] = time.perf_counter() - t0
        print(f"warm-up: fast path {warm['fast']:.1f} s, conventional {warm['conventional']:.1f} s", flush=True)
    result = {}
    for seed in range(seeds):
        fast_runs.append(fast_run(recipe, ds, seed))
        fast_runs[-1]["prep_seconds"] += load_seconds
        print_seed("fast:", seed, fast_runs[-1])
        if seed < conv_seeds and not fast_runs[-1]["diverged"]:
            conv_runs.append(conventional_run(conv_recipe, loader, ds, seed))
            print_seed("conventional:", seed, conv_runs[-1])
        result = write_result(args, device, recipe, conv_recipe, seeds, targets, fast_runs, conv_runs, warm, flops_epoch)
        if fast_runs[-1]["diverged"] or (conv_runs and conv_runs[-1]["diverged"]):
            break
    print("\n" + result["markdown"])
    print(f"wrote {args.out / 'time_to_accuracy.json'}")
    return result


def write_result(args, device, recipe, conv_recipe, seeds, targets, fast_runs, conv_runs, warm, flops_epoch) -> dict:
    """Summarise the seeds run so far and (over)write ``time_to_accuracy.json``; returns the record."""
    fast = {**summarize(fast_runs, targets, flops_epoch), "warmup_seconds": warm["fast"]}
    conv = {**summarize(conv_runs, targets, flops_epoch),
            "warmup_seconds": warm["conventional"]} if conv_runs else None
    if conv and conv_recipe.epochs != recipe.epochs:   # another budget: seconds per epoch only, no race
        conv.update({k: math.nan for k in conv if k.startswith(("time_to_", "first_epoch_time_to_"))})
        conv["note"] = f"{conv_recipe.epochs} epoch(s) against the fast path's {recipe.epochs}: seconds per epoch only"
    table = markdown(fast, conv, targets, len(fast_runs), len(conv_runs))
    diverged = fast["diverged"] or (conv["diverged"] if conv else None)
    result = {"device": str(device), "device_name": runtime.device_name(device), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "workers": args.workers,
              "seeds": seeds, "seeds_done": len(fast_runs), "targets": targets, "recipe": dataclasses.asdict(recipe),
              "conventional_recipe": dataclasses.asdict(conv_recipe), "tflop_per_epoch": flops_epoch / 1e12,
              "diverged": diverged, "fast": fast, "conventional": conv,
              "fast_runs": fast_runs, "conventional_runs": conv_runs, "markdown": table, "argv": sys.argv[1:]}
    (args.out / "time_to_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
