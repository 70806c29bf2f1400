"""Data-parallel training with ``torch.distributed`` (chapter 04; seed 002, "use several GPUs").

Every process (rank) holds a full copy of the model. At each step the same global mini-batch is cut
into ``world_size`` equal shards, rank ``r`` computes the loss and gradient on shard ``r``, and
``DistributedDataParallel`` averages the gradients over the ranks (an all-reduce) during the backward
pass. Because the loss is a mean, the average of the shard gradients *is* the gradient of the global
batch, so every rank takes the same step as one process would on the whole batch:

    g = (1/B) sum_{i in batch} grad l_i = (1/W) sum_r (1/(B/W)) sum_{i in shard r} grad l_i

Run it with torchrun (NCCL on GPUs, one GPU per process; gloo on CPUs)::

    torchrun --standalone --nproc_per_node=2 -m course_lib.distributed --steps 50 --out result.pt

Without torchrun it trains in one process, which is the reference the 2-process run must equal
(tests/test_distributed.py). Rank 0 saves a dict with the final weights, the global loss per step and
timings to ``--out``.

Expect no speed-up from 2 gloo processes on a 2-core CPU (notebook 04h measures it): the ranks share the
cores with each other and with the launching process, every step pays a gloo all-reduce over the
loopback network, and a small model's step is mostly overhead that halving the batch does not halve. The
gain appears with one GPU per rank (NCCL) and enough work per step.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import data, models
from .release import reference


@reference("04_training", "shard")
def shard(global_batch: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that ``rank`` of ``world_size`` computes: contiguous equal shards.

    ``global_batch`` must be divisible by ``world_size`` (equal shards make the mean of the shard
    gradients equal the global gradient).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if global_batch % world_size:
        raise ValueError(f"the global batch {global_batch} is not divisible by world_size {world_size}")
    size = global_batch // world_size
    return slice(rank * size, (rank + 1) * size)


def build_model(kind: str, input_shape, num_classes: int) -> torch.nn.Module:
    """The chapter's model without batch norm (BN statistics would be per process): an MLP or a SmallCNN."""
    if kind == "mlp":
        return models.MLP(math.prod(input_shape), num_classes, depth=2, width=128)
    if kind == "cnn":
        return models.SmallCNN(input_shape[0], num_classes, widths=(16, 32), norm=None)
    raise ValueError(f"model must be 'mlp' or 'cnn', got {kind!r}")


@reference("08_ensembles", "disjoint_shards")
def global_batches(n: int, global_batch: int, steps: int, seed: int):
    """``steps`` index tensors of ``global_batch`` rows, from one reshuffle per epoch of a generator
    seeded with ``seed``: identical on every rank."""
    gen = torch.Generator().manual_seed(seed)
    per_epoch = n // global_batch
    if per_epoch < 1:
        raise ValueError(f"{n} training samples are fewer than one global batch of {global_batch}")
    perm = None
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=gen)
        k = step % per_epoch
        yield perm[k * global_batch:(k + 1) * global_batch]


def train(*, steps: int = 50, global_batch: int = 64, lr: float = 0.05, momentum: float = 0.9, seed: int = 0,
          model: str = "mlp", dataset: str = "digits", n_train: int | None = 4096,
          device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1) -> dict:
    """Train for ``steps`` steps of SGD on global batches of ``global_batch`` (one reshuffle per epoch, as
    :func:`global_batches` draws them); rank ``rank`` of ``world_size`` computes its :func:`shard`. With ``world_size > 1`` a process group must be initialized (torchrun).

    Returns ``state_dict`` (CPU), ``losses`` (the global-batch loss of each step), ``seconds`` (the
    training loop alone), ``samples_per_second``, ``allreduce_ms`` (one all-reduce of a gradient-sized
    buffer, 0 in one process), ``n_params`` and the settings.
    """
    device = torch.device(device)
    ds = data.load_dataset(dataset, device="cpu", verbose=False)
    ds = ds.subset(n_train or None, 0, generator=torch.Generator().manual_seed(seed))
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    torch.manual_seed(seed)
    net = build_model(model, ds.input_shape, ds.num_classes).to(device)
    parallel = world_size > 1
    ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if parallel else net
    opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=momentum)
    if not 0 <= rank < world_size or global_batch % world_size:
        raise ValueError(f"rank {rank} of {world_size}: the global batch {global_batch} must split into {world_size} "
                         f"equal shards")
    per_epoch = len(x) // global_batch
    if per_epoch < 1:
        raise ValueError(f"{len(x)} training samples are fewer than one global batch of {global_batch}")
    gen = torch.Generator().manual_seed(seed)  # the same reshuffle per epoch on every rank
    losses = []
    _sync(device, parallel)
    started = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(len(x), generator=gen)
        index = perm[(step % per_epoch) * global_batch:(step % per_epoch + 1) * global_batch]
        local = index.tensor_split(world_size)[rank].to(device)  # this rank's contiguous, equal shard
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(ddp(x[local]), y[local])
        loss.backward()  # DDP all-reduces (averages) the gradients here
        opt.step()
        losses.append(loss.detach())
    _sync(device, parallel)
    seconds = time.perf_counter() - started
    losses = torch.stack(losses)
    if parallel:  # one all-reduce at the end, not one per step: the mean of the shard losses
        dist.all_reduce(losses)
        losses /= world_size
    n_params = sum(p.numel() for p in net.parameters())
    return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "losses": losses.cpu().tolist(), "seconds": seconds, "samples_per_second": steps * global_batch / seconds,
            "allreduce_ms": allreduce_ms(n_params, device) if parallel else 0.0, "n_params": n_params,
            "world_size": world_size, "backend": dist.get_backend() if parallel else "none",
            "device": str(device), "steps": steps, "global_batch": global_batch, "model": model, "dataset": ds.name}


def _sync(device: torch.device, parallel: bool) -> None:
    """Wait for the device and (in a group) for every rank, so timings start and stop together."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if parallel:
        dist.barrier()


def allreduce_ms(numel: int, device, repeats: int = 10) -> float:
    """Milliseconds of one all-reduce of ``numel`` float32 values across the group (median of ``repeats``):
    the communication every data-parallel step pays, whatever the batch size."""
    buf = torch.ones(numel, device=device)
    times = []
    for _ in range(repeats + 1):
        _sync(torch.device(device), True)
        t = time.perf_counter()
        dist.all_reduce(buf)
        _sync(torch.device(device), True)
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Data-parallel training with DistributedDataParallel (run under torchrun).")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--global-batch", type=int, nargs="+", default=[64],
                        help="samples per step, over all processes; several values: one run each, saved as a list")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--dataset", default="digits", choices=data.NAMES)
    parser.add_argument("--n-train", type=int, default=4096, help="training samples (0: all)")
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if CUDA, else cpu), cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: leave as is)")
    parser.add_argument("--out", default="", help="where rank 0 saves the result (torch.save)")
    return parser.parse_args(argv)


def _shutdown() -> None:
    """Leave the process group together: free the DDP reducers (they hold the group), wait for every rank,
    then destroy it. A rank that tears gloo down while its peer is still inside a collective can abort
    (SIGABRT) at exit."""
    gc.collect()
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(argv=None) -> int:
    """Entry point for ``torchrun ... -m course_lib.distributed`` (or plain ``python -m``, one process)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group(backend_for(device))
    try:
        results = [train(steps=args.steps, global_batch=batch, lr=args.lr, momentum=args.momentum,
                         seed=args.seed, model=args.model, dataset=args.dataset, n_train=args.n_train,
                         device=device, rank=rank, world_size=world_size) for batch in args.global_batch]
    finally:
        if world_size > 1:
            _shutdown()
    if rank == 0 and args.out:
        torch.save(results[0] if len(results) == 1 else results, args.out)
    for result in results if rank == 0 else []:
        print(f"course_lib.distributed: {world_size} process(es), backend {result['backend']}, {result['device']}: "
              f"{result['steps']} steps of {result['global_batch']} in {result['seconds']:.2f} s "
              f"({result['samples_per_second']:.0f} samples/s), final loss {result['losses'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
