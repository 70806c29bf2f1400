"""The clock, the step planner and commands run under a time limit (standard library only)."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def now_iso() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def clean(value):
    """JSON-safe copy: NaN and infinities become None (summary.json is strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a run killed mid-write leaves the previous version)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    """``obj`` as strict, indented JSON, atomically."""
    write_text(path, json.dumps(clean(obj), indent=2, allow_nan=False) + "\n")


def tail(text: str, n: int = 12) -> str:
    """The last ``n`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-n:])


class Clock:
    """Seconds left of the run's budget, counted from the script's start."""

    def __init__(self, budget: float, now=time.monotonic):
        self.now, self.start, self.budget = now, now(), float(budget)

    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.now() - self.start

    def left(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return self.budget - self.elapsed()


def plan(step: str, later: list[str], clock: Clock, limits: dict, reserve: float) -> tuple[float | None, str]:
    """``(timeout, "")`` for ``step``, or ``(None, reason)`` when it does not fit the time left.

    ``limits[step]`` is ``(cap, minimum)``. The timeout is the cap (None: no cap), or what is left once
    the minimums of the ``later`` steps and the final ``reserve`` are set aside, whichever is smaller.
    """
    cap, minimum = limits[step]
    kept = reserve + sum(limits[s][1] for s in later)
    available = clock.left() - kept
    if available < minimum:
        return None, (f"does not fit: needs at least {minimum} s, {max(0.0, clock.left()):.0f} s left of the "
                      f"{clock.budget:.0f} s budget ({kept:.0f} s kept for the steps after it and the results)")
    return (available if cap is None else min(cap, available)), ""


def kill_group(pid: int, sig=signal.SIGKILL) -> None:
    """Signal the process group led by ``pid`` (a child started in its own session), if it still exists."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


class Tee:
    """A file-like object that writes to several files."""

    def __init__(self, *files):
        self.files = files

    def write(self, text):
        for f in self.files:
            f.write(text)

    def flush(self):
        for f in self.files:
            f.flush()


def _pids(pid_file: Path | None) -> list[int]:
    """The process ids written to ``pid_file`` (a Jupyter kernel's), if any."""
    if not pid_file or not pid_file.is_file():
        return []
    return [int(p) for p in pid_file.read_text().split() if p.strip().isdigit()]


def _stop(proc: subprocess.Popen, pid_file: Path | None) -> int:
    """SIGTERM to the command's process group (and any kernel's), SIGKILL 5 s later; the exit status."""
    groups = [proc.pid, *_pids(pid_file)]
    for pid in groups:
        kill_group(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for pid in groups:
        kill_group(pid, signal.SIGKILL)
    return proc.wait()


def run_command(cmd: list[str], *, timeout: float, env: dict, log, cwd: Path, pid_file: Path | None = None) -> dict:
    """Run ``cmd`` (in a session of its own) for at most ``timeout`` seconds; its output goes to ``log``.

    Returns rc, timed_out, seconds and ``lines`` (``(seconds since start, line)``). On timeout the
    process group gets SIGTERM, then SIGKILL; so does the group of any pid written to ``pid_file``
    (a Jupyter kernel, which runs in a session of its own), which is also ended after a normal exit.
    """
    log.write(f"\n$ {' '.join(cmd)}   # timeout {timeout:.0f} s, {now_iso()}\n")
    log.flush()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1, start_new_session=True)
    lines: list[tuple[float, str]] = []

    def read():
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
            del lines[:-20000]
            log.write(line)
        log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        timed_out, rc = True, _stop(proc, pid_file)
    for pid in _pids(pid_file):  # a kernel left behind by a child that died: end it too
        kill_group(pid, signal.SIGKILL)
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    log.write(f"# exit {rc}{' (timed out)' if timed_out else ''} after {seconds:.1f} s\n")
    log.flush()
    return {"rc": rc, "timed_out": timed_out, "seconds": seconds, "lines": list(lines)}


def text_of(run: dict) -> str:
    """All the output lines of a :func:`run_command` result."""
    return "\n".join(line for _, line in run["lines"])
