"""What a check reports to ``course grade``: the student's value, as a display output of the test cell.

Each check of a graded test cell (:func:`course_lib.grading.assert_close`, :func:`~course_lib.grading.assert_raises`)
publishes one ``display_data`` output of MIME type :data:`MIME` while ``COURSE_GRADING_REPORT=1``. The
grader reads them, in order, and compares each value with the one the instructor's solution reported for
the same check (:mod:`course_lib.instructor.verdict`). A test the kernel skips, silences or short-circuits
reports nothing, and so scores 0; a value that is not a plain number, sequence, NumPy array or tensor is
reported as unreadable, and fails. Outside grading nothing is reported.

Payload: ``{"kind": "close", "name", "rtol", "atol", "actual", "expected"}`` with each value as
``{"shape", "data"}`` (float64, little-endian, zlib, base64) or ``{"error": why}``; or
``{"kind": "raises", "name", "raised": bool}``; or, after each
:func:`course_lib.grading.call_without_reference`, ``{"kind": "ran", "name": RAN, "function", "names": [...],
"intact": bool}``: the operators and library functions that ran in the student's function
(:mod:`course_lib.grading.ran`), and whether the recorder stayed in place.
"""
from __future__ import annotations

import base64
import os
import zlib

import numpy as np

MIME = "application/vnd.course-lib.check+json"
MAX_ELEMENTS = 32 * 1024 ** 2  # a reported value larger than this (256 MB of float64) is refused
ENV = "COURSE_GRADING_REPORT"
RAN = "what ran in the graded function"  # the name of every "ran" report (the function's own name may differ)
_PLAIN = (bool, int, float)


def enabled() -> bool:
    """True while ``course grade`` runs this kernel."""
    return os.environ.get(ENV) == "1"


def _plain(value):
    """``value`` as a float64 array, accepting only exact built-in, NumPy and torch types."""
    import torch

    if type(value) in _PLAIN or isinstance(value, np.generic):
        return np.asarray(float(value), dtype=np.float64)
    if type(value) in (torch.Tensor, torch.nn.Parameter):  # not a subclass: it could override detach() or to()
        return value.detach().to("cpu", torch.float64).numpy()
    if type(value) is np.ndarray:
        return np.array(value, dtype=np.float64)
    if type(value) in (list, tuple):
        parts = [_plain(v) for v in value]
        if parts and any(p.shape != parts[0].shape for p in parts):
            raise ValueError("a ragged sequence")
        return np.stack(parts) if parts else np.zeros((0,), dtype=np.float64)
    raise ValueError(f"a {type(value).__module__}.{type(value).__qualname__}")


def encode(value) -> dict:
    """``{"shape", "data"}`` for a value, or ``{"error": why}`` when it is not a plain numeric value."""
    try:
        arr = np.ascontiguousarray(_plain(value), dtype="<f8")
    except (ValueError, TypeError, RuntimeError) as err:
        return {"error": f"not a plain number or array: {err}"}
    return {"shape": list(arr.shape), "data": base64.b64encode(zlib.compress(arr.tobytes(), 6)).decode("ascii")}


def decode(entry: dict) -> np.ndarray:
    """The array of :func:`encode`'s output (raises ``ValueError`` for an error entry or bad data)."""
    if "error" in entry:
        raise ValueError(str(entry["error"]))
    shape = tuple(int(n) for n in entry["shape"])
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if not 0 <= size <= MAX_ELEMENTS or any(n < 0 for n in shape):
        raise ValueError(f"a value of shape {shape} is too large to compare")
    raw = zlib.decompressobj().decompress(base64.b64decode(entry["data"]), 8 * size + 1)
    if len(raw) != 8 * size:
        raise ValueError(f"the data does not hold {size} numbers")
    return np.frombuffer(raw, dtype="<f8").reshape(shape)


def _publish(payload: dict) -> None:
    from IPython.display import display

    display({MIME: payload}, raw=True)


def close(name: str, actual, expected, *, rtol: float, atol: float) -> None:
    """Report one ``assert_close`` check."""
    _publish({"kind": "close", "name": str(name), "rtol": float(rtol), "atol": float(atol),
              "actual": encode(actual), "expected": encode(expected)})


def raised(name: str, did_raise: bool) -> None:
    """Report one ``assert_raises`` check."""
    _publish({"kind": "raises", "name": str(name), "raised": bool(did_raise)})


def ran(function: str, names, intact: bool) -> None:
    """Report what ran in one :func:`course_lib.grading.call_without_reference` call."""
    _publish({"kind": "ran", "name": RAN, "function": str(function), "names": sorted(str(n) for n in names),
              "intact": bool(intact)})
