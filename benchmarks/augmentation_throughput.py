"""Images per second of one augmentation pipeline, batched (course_lib) against per-sample (torchvision).

The pipeline is the chapter 01 recipe on 32x32 RGB images: horizontal flip, 4-pixel zero-padded
random crop, the seeds' HSV jitter and fancy PCA. It runs twice in one process:

- ``course_lib``: :mod:`course_lib.augment` on whole batches that already live on ``--device``;
- ``torchvision``: ``torchvision.transforms.v2`` applied to one image at a time inside a
  ``torch.utils.data.DataLoader`` with ``num_workers = os.cpu_count()``, each batch then moved to
  ``--device``. torchvision has flip and padded crop; it has no HSV recipe and no fancy PCA, so those
  two are ``v2.Transform`` subclasses that run the same arithmetic on the single image.

Both sides draw fresh random parameters for every image. Results go to stdout and, as JSON, to
``build/benchmarks/augmentation.json`` (``--out``). The default run takes well under a minute on a
2-core CPU. Usage::

    python benchmarks/augmentation_throughput.py [--device cuda] [--images 8192] [--batch-size 512]
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


def pipelines(eigvals, eigvecs, generator):
    """The batched course_lib pipeline and the per-sample torchvision one, the same four steps."""
    ours = augment.Compose([augment.RandomHFlip(generator=generator), augment.RandomCrop(32, padding=4, generator=generator),
                            augment.HSVJitter(generator=generator), augment.FancyPCA(eigvals, eigvecs, generator=generator)])
    theirs = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4), PerSampleHSV(),
                         PerSampleFancyPCA(eigvals, eigvecs)])
    return ours, theirs


class Augmented(TensorDataset):
    """A tensor dataset whose images go through ``transform`` one at a time."""

    def __init__(self, images, transform):
        super().__init__(images)
        self.transform = transform

    def __getitem__(self, i):
        return self.transform(self.tensors[0][i])


def time_batched(images, transform, batch_size: int, device: torch.device, repeats: int) -> float:
    """Images per second of ``transform`` on batches of ``images`` (already on ``device``); best of ``repeats``."""
    transform(images[:batch_size])  # warm-up (CUDA context, caches)
    best = float("inf")
    for _ in range(repeats):
        runtime.synchronize(device)
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            transform(images[i:i + batch_size])
        runtime.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


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
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the batched side (best is kept)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers (default: all cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the batched side (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks" / "augmentation.json")
    args = parser.parse_args(argv)
    if args.per_sample_images < 2 * args.batch_size:
        parser.error("--per-sample-images must be at least 2 x --batch-size: its first batch (worker start-up) "
                     "is not timed")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, 32, 32, generator=generator)  # synthetic 32x32 RGB in [0, 1]
    eigvals, eigvecs = augment.fit_fancy_pca(images[:1024])
    ours, theirs = pipelines(eigvals, eigvecs, generator)

    batched = time_batched(images.to(device), ours, args.batch_size, device, args.repeats)
    per_sample = time_per_sample(images[:min(args.per_sample_images, args.images)], theirs, args.batch_size, device, args.workers)
    name = runtime.device_name(device)
    result = {
        "pipeline": "hflip + crop(32, padding=4) + HSV jitter + fancy PCA, 32x32 RGB",
        "device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "dataloader_workers": args.workers,
        "images": args.images, "per_sample_images": min(args.per_sample_images, args.images), "batch_size": args.batch_size, "torch": torch.__version__,
        "course_lib_images_per_s": round(batched, 1), "torchvision_images_per_s": round(per_sample, 1),
        "speedup": round(batched / per_sample, 2),
    }
    print(f"device: {device} ({name}), {os.cpu_count()} CPU cores, batch size {args.batch_size}")
    print(f"course_lib batched on {device}:                  {batched:12,.0f} images/s")
    print(f"torchvision v2 per sample, DataLoader x{args.workers} workers: {per_sample:12,.0f} images/s")
    print(f"ratio: {batched / per_sample:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
