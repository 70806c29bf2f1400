"""Images per second of one augmentation pipeline, batched (course_lib, eager and compiled) against per-sample (torchvision).

The pipeline is the chapter 01 recipe on 32x32 RGB images: horizontal flip, 4-pixel zero-padded
random crop, the seeds' HSV jitter and fancy PCA. Its implementations run side by side in one process:

- ``eager``: :class:`course_lib.augment.BatchPipeline` on whole batches that already live on ``--device``,
  every random parameter of a batch from one ``torch.rand`` on that device (torch's default RNG);
- ``compiled``: the same with ``compiled=True`` (``torch.compile(fullgraph=True)`` of the functional core),
  by default on CUDA only (``--compile on`` compiles on the CPU too, which takes about 30 s);
- ``compose``: the four sampling classes in :class:`course_lib.augment.Compose` (one draw and one pass per
  transform), for reference;
- ``torchvision``: ``torchvision.transforms.v2`` applied to one image at a time inside a
  ``torch.utils.data.DataLoader`` with ``num_workers = os.cpu_count()``, each batch then moved to
  ``--device``. torchvision has flip and padded crop; it has no HSV recipe and no fancy PCA, so those
  two are ``v2.Transform`` subclasses that run the same arithmetic on the single image.

Every path draws fresh random parameters for every image and is warmed up (compiled) on two batches
before it is timed; the best of ``--repeats`` passes over ``--images`` images counts (whole batches only).
On CUDA each pass is timed by the wall clock and by CUDA events (``benchmarks/timing.py``), and the
effective bandwidth is printed: one read and one write of every image is the least traffic there is.
Results go to stdout and, as JSON, to ``build/benchmarks/augmentation.json`` (``--out``). The default run
takes well under a minute on a 2-core CPU. Usage::

    python benchmarks/augmentation_throughput.py [--device cuda] [--images 262144] [--batch-size 8192]
        [--compile auto|on|off]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import augment, runtime  # noqa: E402
from timing import best_of, describe  # noqa: E402  (benchmarks/timing.py)

ROOT = Path(__file__).resolve().parents[1]


class PerSampleHSV(v2.Transform):
    """The seeds' HSV jitter for one image (factors drawn per call), as a torchvision v2 transform."""

    def __init__(self):
        super().__init__()
        self.jitter = augment.HSVJitter()

    def transform(self, inpt, params):
        return self.jitter(inpt[None])[0]


class PerSampleFancyPCA(v2.Transform):
    """Fancy PCA for one image (alphas ~ N(0, 0.1) drawn per call), as a torchvision v2 transform."""

    def __init__(self, eigvals, eigvecs):
        super().__init__()
        self.pca = augment.FancyPCA(eigvals, eigvecs)

    def transform(self, inpt, params):
        return self.pca(inpt[None])[0]


def pipelines(eigvals, eigvecs) -> dict:
    """The four implementations of the same recipe, by name (the batched ones draw on the batch's device)."""
    eigen = (eigvals, eigvecs)
    compose = augment.Compose([augment.RandomHFlip(), augment.RandomCrop(32, padding=4), augment.HSVJitter(),
                               augment.FancyPCA(eigvals, eigvecs)])
    theirs = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4), PerSampleHSV(),
                         PerSampleFancyPCA(eigvals, eigvecs)])
    return {"eager": augment.BatchPipeline(32, padding=4, eigen=eigen),
            "compiled": augment.BatchPipeline(32, padding=4, eigen=eigen, compiled=True),
            "compose": compose, "torchvision": theirs}


class Augmented(TensorDataset):
    """A tensor dataset whose images go through ``transform`` one at a time."""

    def __init__(self, images, transform):
        super().__init__(images)
        self.transform = transform

    def __getitem__(self, i):
        return self.transform(self.tensors[0][i])


def time_batched(images, transform, batch_size: int, device: torch.device, repeats: int) -> dict:
    """Images per second of ``transform`` on the whole batches of ``images`` (already on ``device``).

    Two warm-up batches first (CUDA context, caches, compilation: ``warmup_s``), then the best of
    ``repeats`` timed passes, with its wall and CUDA-event times.
    """
    batches = [images[i:i + batch_size] for i in range(0, len(images) - batch_size + 1, batch_size)]
    started = time.perf_counter()
    for batch in batches[:2]:
        transform(batch)
    runtime.synchronize(device)
    warmup = time.perf_counter() - started

    def one_pass():
        for batch in batches:
            transform(batch)
    record = best_of(one_pass, device, repeats)
    n = len(batches) * batch_size
    return {**record, "images": n, "images_per_s": n / record["wall_s"], "warmup_s": warmup,
            "images_per_s_events": n / record["event_s"] if record["event_s"] else None}


def time_per_sample(images_cpu, transform, batch_size: int, device: torch.device, workers: int) -> float:
    """Images per second of a DataLoader with ``workers`` processes applying ``transform`` per image.

    Worker start-up is excluded: the clock starts when the first batch arrives.
    """
    loader = DataLoader(Augmented(images_cpu, transform), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False, prefetch_factor=4 if workers else None)
    it = iter(loader)
    first = next(it).to(device, non_blocking=True)
    runtime.synchronize(device)
    start, n = time.perf_counter(), 0
    for batch in it:
        batch.to(device, non_blocking=True)
        n += len(batch)
    runtime.synchronize(device)
    del first
    return n / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (course_lib side; torchvision moves batches there)")
    parser.add_argument("--images", type=int, default=4096, help="images per timed pass of the batched side")
    parser.add_argument("--per-sample-images", type=int, default=2048,
                        help="images for the (much slower) torchvision side")
    parser.add_argument("--batch-size", type=int, default=512, help="batch of the batched side (8192 on a GPU)")
    parser.add_argument("--loader-batch-size", type=int, default=None,
                        help="batch of the torchvision DataLoader (default: --batch-size, at most 512)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the batched side (best is kept)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers (default: all cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the batched side (default: torch's)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="time the compiled path (auto: on CUDA only)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks" / "augmentation.json")
    args = parser.parse_args(argv)
    loader_batch = args.loader_batch_size or min(args.batch_size, 512)
    if args.per_sample_images < 2 * loader_batch:
        parser.error("--per-sample-images must be at least 2 x the DataLoader's batch: its first batch (worker "
                     "start-up) is not timed")
    if args.images < args.batch_size:
        parser.error("--images must hold at least one whole batch (--batch-size)")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")

    torch.manual_seed(0)  # the batched paths draw from the default RNG of --device
    images = torch.rand(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # synthetic RGB in [0, 1]
    eigvals, eigvecs = augment.fit_fancy_pca(images[:1024])
    paths = pipelines(eigvals, eigvecs)
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    on_device = images.to(device)
    timed, failed = {}, {}
    for name in ["eager", "compiled", "compose"] if compiled else ["eager", "compose"]:
        try:
            timed[name] = time_batched(on_device, paths[name], args.batch_size, device, args.repeats)
        except Exception as exc:  # noqa: BLE001 - a failed compile is reported; the other paths still run
            if name != "compiled":
                raise
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"compiled path failed: {failed[name]}")
    del on_device
    per_sample = time_per_sample(images[:min(args.per_sample_images, args.images)], paths["torchvision"], loader_batch,
                                 device, args.workers)
    result = {**_result(args, device, loader_batch, timed, per_sample), "failed": failed}
    _report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


BYTES_PER_IMAGE = 2 * 3 * 32 * 32 * 4
"""The least memory traffic per image: one float32 read of the input and one write of the output."""


def _result(args, device, loader_batch: int, timed: dict, per_sample: float) -> dict:
    """The JSON record: every path's figures, and the ratios (``speedup`` is eager over torchvision)."""
    eager = timed["eager"]["images_per_s"]
    rounded = {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}
               for name, rec in timed.items()}
    for rec in rounded.values():
        rec["effective_GB_per_s"] = round(rec["images_per_s"] * BYTES_PER_IMAGE / 1e9, 2)
    compiled = timed.get("compiled", {}).get("images_per_s")
    return {
        "pipeline": "hflip + crop(32, padding=4) + HSV jitter + fancy PCA, 32x32 RGB",
        "device": str(device), "device_name": runtime.device_name(device), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "dataloader_workers": args.workers,
        "dataloader_batch_size": loader_batch, "images": args.images,
        "per_sample_images": min(args.per_sample_images, args.images), "batch_size": args.batch_size,
        "repeats": args.repeats, "torch": torch.__version__, "paths": rounded,
        "course_lib_images_per_s": round(eager, 1), "compiled_images_per_s": round(compiled, 1) if compiled else None,
        "compose_images_per_s": round(timed["compose"]["images_per_s"], 1),
        "torchvision_images_per_s": round(per_sample, 1), "speedup": round(eager / per_sample, 2),
        "compiled_over_eager": round(compiled / eager, 2) if compiled else None,
        "eager_over_compose": round(eager / timed["compose"]["images_per_s"], 2),
    }


def _report(r: dict) -> None:
    """Print the figures of :func:`_result`, one line per path, then the ratios."""
    print(f"device: {r['device']} ({r['device_name']}), {r['cpu_count']} CPU cores, {r['torch_threads']} torch threads, "
          f"batch size {r['batch_size']}, torch {r['torch']}")
    labels = {"eager": "course_lib BatchPipeline, eager", "compiled": "course_lib BatchPipeline, compiled",
              "compose": "course_lib Compose of 4 samplers"}
    for name, rec in r["paths"].items():
        print(f"{labels[name] + ':':<38} {rec['images_per_s']:14,.0f} images/s  ({describe(rec)} for {rec['images']} "
              f"images; warm-up {rec['warmup_s']:.1f} s; {rec['effective_GB_per_s']:,.1f} GB/s effective)")
    print(f"{'torchvision v2 per sample, ' + str(r['dataloader_workers']) + ' workers:':<38} "
          f"{r['torchvision_images_per_s']:14,.0f} images/s")
    ratios = [f"eager / torchvision {r['speedup']:.1f}x", f"eager / compose {r['eager_over_compose']:.2f}x"]
    if r["compiled_over_eager"]:
        ratios.append(f"compiled / eager {r['compiled_over_eager']:.2f}x")
    print("ratios: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
