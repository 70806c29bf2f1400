"""Host work per training step: aten ops dispatched and host seconds, before and after the lean step.

Every aten op that reaches the dispatcher is counted with a ``TorchDispatchMode`` (forward, loss,
backward, optimizer, metrics, augmentation and batch slicing, all on this thread); on a GPU each is at
least one kernel launch, so the count is what a launch-bound step pays for. Two loops are measured:

- ``fast path``: :func:`course_lib.capstone.train_epoch` on the batches of
  :func:`course_lib.capstone.epoch_batches` (the epoch's augmentation is counted too, shared over its steps);
- ``train.fit``: :func:`course_lib.train.fit` on a ``DeviceLoader``, with the default optimizer and with a
  user's ``torch.optim.SGD(momentum=0.9)`` (what most notebooks pass).

"before" is the code of git revision ``--before`` (default ``5196acd``, the last commit before issue 21's lean
step), loaded from git into a side module and run against today's ``course_lib`` helpers; "after" is
this checkout. Host seconds per step are the best of ``--repeats`` timed epochs of ``--steps`` steps
(no counting mode active). Usage::

    python benchmarks/step_overhead.py --out build/benchmarks/step_overhead.json

It needs no GPU (``--device cpu``, the default); on a CPU the seconds include the arithmetic, so small
widths and batches (the defaults) make the per-op overhead visible.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import capstone as C  # noqa: E402
from course_lib import data, models, runtime, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active, by overload name (``aten.convolution.default``), and
    separately the *compute* ops: those that are neither views/aliases (``detach``, ``t``, ``view``,
    ``expand``, ``select``: no kernel on a GPU) nor profiler markers (``record_function`` around
    ``optimizer.step``)."""

    def __init__(self):
        super().__init__()
        self.counts, self.compute = Counter(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.counts[name] += 1
        self.compute += not (getattr(func, "is_view", False) or name.startswith("profiler."))
        return func(*args, **(kwargs or {}))


def load_revision(module: str, rev: str):
    """``course_lib/<module>.py`` as it was at git revision ``rev``, imported as ``course_lib._<module>_<rev>``
    (its relative imports resolve to today's ``course_lib``); None when git cannot show it."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:course_lib/{module}.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = f"course_lib._{module}_{rev}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "course_lib"
    sys.modules[name] = mod
    exec(compile(source, f"{rev}:course_lib/{module}.py", "exec"), mod.__dict__)
    return mod


def count_ops(epoch, steps: int) -> dict:
    """Aten ops (all, and compute ops only) per step of one counted ``epoch()`` of ``steps`` steps, after a
    warm-up epoch (the optimizer's first step creates its momentum buffers)."""
    epoch()
    with OpCounter() as counter:
        epoch()
    return {"ops_per_step": sum(counter.counts.values()) / steps, "compute_ops_per_step": counter.compute / steps,
            "top_ops": {k: v / steps for k, v in counter.counts.most_common(12)}}


def host_ms(epochs: list, steps: int, repeats: int) -> list[float]:
    """Best milliseconds per step of each ``epoch()`` over ``repeats`` rounds, the cases interleaved within a
    round so that a change in the machine's load hits every case alike."""
    best = [float("inf")] * len(epochs)
    for _ in range(repeats):
        for i, epoch in enumerate(epochs):
            started = time.perf_counter()
            epoch()
            best[i] = min(best[i], time.perf_counter() - started)
    return [1000 * b / steps for b in best]


def fast_epoch(mod, recipe, x, y, *, after: bool):
    """One epoch of the capstone's step loop, ``mod`` the capstone module of either revision."""
    mean, std = C.channel_stats(x)
    net = mod.build_net(recipe, x, 10, mean=mean, std=std, generator=torch.Generator().manual_seed(0))
    steps = len(x) // recipe.batch_size
    opt, sched = mod.make_optimizer(net, recipe, 10 * steps)
    draws = torch.Generator().manual_seed(0)
    if after:
        def epoch():
            batches = mod.epoch_batches(x, y, recipe.batch_size, mean, std, padding=recipe.padding, generator=draws,
                                        smoothing=recipe.smoothing, num_classes=10)
            return mod.train_epoch(net, batches, opt, sched, recipe.smoothing)
        return epoch
    loader = data.DeviceLoader(x, y, recipe.batch_size, generator=draws, drop_last=True,
                               transform=mod.BatchAugment(mean, std, recipe.padding, generator=draws))
    ctx = mod.fast_context(x.device, recipe)
    return lambda: mod.train_epoch(net, loader, opt, sched, recipe.smoothing, ctx, torch.contiguous_format)


def fit_epoch(mod, x, y, batch_size: int, user_optimizer: bool):
    """One epoch of ``mod.fit`` (either revision) on an MLP, with its default SGD or a user's momentum SGD."""
    torch.manual_seed(0)
    net = models.MLP(x[0].numel(), 10, depth=2, width=128).to(x.device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) if user_optimizer else None
    loader = data.DeviceLoader(x, y, batch_size, generator=torch.Generator().manual_seed(0), drop_last=True)
    return lambda: mod.fit(net, loader, epochs=1, optimizer=opt, lr=0.05, progress=False)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--before", default="5196acd", help="git revision of the 'before' code")
    parser.add_argument("--steps", type=int, default=20, help="steps per measured epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=16, help="image side (28 is Fashion-MNIST's)")
    parser.add_argument("--widths", type=int, nargs=3, default=[8, 8, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks" / "step_overhead.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x, y = torch.rand(n, 1, args.size, args.size, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)
    recipe = C.BENCHMARK_RECIPE.but(batch_size=args.batch_size, widths=tuple(args.widths))
    old_capstone, old_train = load_revision("capstone", args.before), load_revision("train", args.before)
    cases = []
    if old_capstone is not None:
        cases.append(("fast path", "before", fast_epoch(old_capstone, recipe, x, y, after=False)))
    cases.append(("fast path", "after", fast_epoch(C, recipe, x, y, after=True)))
    for user, label in ((False, "train.fit, default SGD"), (True, "train.fit, SGD(momentum=0.9) passed in")):
        if old_train is not None:
            cases.append((label, "before", fit_epoch(old_train, x, y, args.batch_size, user)))
        cases.append((label, "after", fit_epoch(train, x, y, args.batch_size, user)))
    rows = [{"loop": loop, "code": code, **count_ops(epoch, args.steps)} for loop, code, epoch in cases]
    for row, ms in zip(rows, host_ms([c[2] for c in cases], args.steps, args.repeats)):
        row["ms_per_step"] = ms
    print(f"device: {device} ({runtime.device_name(device)}), {os.cpu_count()} cores, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}; batch {args.batch_size} of {args.size}x{args.size} images, capstone widths {tuple(args.widths)}, "
          f"{args.steps} steps, before = {args.before}, load average {os.getloadavg()[0]:.2f}\n")
    lines = ["| loop | code | aten ops / step | compute ops / step | host ms / step |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['loop']} | {r['code']} | {r['ops_per_step']:.1f} | {r['compute_ops_per_step']:.1f} | "
              f"{r['ms_per_step']:.2f} |" for r in rows]
    print("\n".join(lines))
    for r in rows:
        print(f"\n{r['loop']}, {r['code']}: " + ", ".join(f"{k.removeprefix('aten.')} {v:g}" for k, v in r["top_ops"].items()))
    result = {"device": str(device), "device_name": runtime.device_name(device), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
              "batch_size": args.batch_size, "size": args.size, "widths": args.widths, "steps": args.steps, "before": args.before,
              "rows": rows, "markdown": "\n".join(lines)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
