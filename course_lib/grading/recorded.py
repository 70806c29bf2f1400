"""Expected values recorded from the instructor's solution, shipped with the notebooks (cs231n style).

A visible test that has no torch equivalent or invariant to compare with calls
:func:`course_lib.grading.assert_recorded`, which compares the student's value with the one the
instructor's solution returned for the same named check. ``course record`` (run by ``make notebooks``)
executes each solution notebook with ``COURSE_RECORD_TO`` set and collects every such value into the
chapter's ``recorded.json``, ``{name: {"shape": [...], "values": [...]}}``; nbgrader copies it next to the
student notebooks. A check's name says its input, so a failure reads "expected ... for which input".

While ``course grade`` runs, the file is not read at all: the check reports the student's value and the
grader compares it with the trusted run's (:mod:`course_lib.grading.report`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FILE = "recorded.json"
RECORD_ENV = "COURSE_RECORD_TO"
_cache: dict = {}


def recording() -> Path | None:
    """The file being recorded into (``course record``), or None."""
    path = os.environ.get(RECORD_ENV)
    return Path(path) if path else None


def record(name: str, value) -> None:
    """Add ``name``'s value to the file being recorded; a name recorded twice with another value is an error."""
    from .report import _plain

    path = recording()
    arr = np.asarray(_plain(value), dtype=np.float64)
    entry = {"shape": list(arr.shape), "values": arr.reshape(-1).tolist()}
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if name in data and data[name] != entry:
        raise ValueError(f"two checks of this chapter are named {name!r} and record different values: rename one")
    data[name] = entry
    path.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")


def expected(name: str, folder: Path | None = None) -> np.ndarray:
    """The recorded value of the check ``name``, from ``recorded.json`` in ``folder`` (the kernel's folder)."""
    path = Path(folder or Path.cwd()) / FILE
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise AssertionError(f"{name}: the recorded values this test compares with are missing: no {FILE} "
                             f"next to the notebook (in {path.parent}). Keep the file the notebook came with.") from None
    if _cache.get("key") != (path, stamp):
        _cache.update(key=(path, stamp), data=json.loads(path.read_text(encoding="utf-8")))
    entry = _cache["data"].get(name)
    if entry is None:
        raise AssertionError(f"{name}: no value is recorded for this check in {path}; the file does not belong "
                             "to this version of the notebook. Ask your instructor for the matching recorded.json.")
    return np.asarray(entry["values"], dtype=np.float64).reshape(entry["shape"])
