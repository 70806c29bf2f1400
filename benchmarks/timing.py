"""Timing for the benchmarks: wall-clock time next to CUDA-event time, and their ratio.

GPU kernels run asynchronously. The wall clock (``time.perf_counter``, with the device synchronised at
both ends) measures what the host waited; two CUDA events recorded on the stream at the start and the
end measure the span the stream took. ``wall / events`` near 1 means the stream was busy, or idle only
between kernels, for the whole timed span; well above 1 means time spent outside the stream (start-up,
synchronisations, host work after the last kernel). Idle gaps *between* kernels, the mark of a
launch-bound run, are inside both spans: compare the events time with the work's own bound (bytes moved
at the memory bandwidth, FLOPs at the peak) or count kernels with the profiler to see them. On a CPU
only the wall clock exists.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from course_lib.runtime import synchronize


class Stopwatch:
    """``with Stopwatch(device) as sw: ...`` then ``sw.wall_s`` and, on CUDA, ``sw.event_s`` (else ``None``).

    The device is synchronised before the start and after the end, so the wall time includes every
    queued kernel.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.wall_s: float = float("nan")
        self.event_s: float | None = None

    def __enter__(self) -> "Stopwatch":
        synchronize(self.device)
        if self.cuda:
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self._events[1].record()
        synchronize(self.device)
        self.wall_s = time.perf_counter() - self._start
        if self.cuda:
            self.event_s = self._events[0].elapsed_time(self._events[1]) / 1000

    def record(self) -> dict:
        """``{"wall_s", "event_s", "wall_over_event"}`` (the last two ``None`` off CUDA)."""
        ratio = self.wall_s / self.event_s if self.event_s else None
        return {"wall_s": self.wall_s, "event_s": self.event_s, "wall_over_event": ratio}


def best_of(fn: Callable[[], object], device, repeats: int) -> dict:
    """Run ``fn`` ``repeats`` times under a :class:`Stopwatch`; the record of the fastest run (by wall time)."""
    records = []
    for _ in range(max(1, repeats)):
        with Stopwatch(device) as sw:
            fn()
        records.append(sw.record())
    return min(records, key=lambda r: r["wall_s"])


def describe(record: dict) -> str:
    """``"0.123 s wall"``, plus ``", 0.120 s CUDA events (wall/events 1.03)"`` where events were recorded."""
    text = f"{record['wall_s']:.3f} s wall"
    if record.get("event_s") is not None:
        text += f", {record['event_s']:.3f} s CUDA events (wall/events {record['wall_over_event']:.2f})"
    return text
