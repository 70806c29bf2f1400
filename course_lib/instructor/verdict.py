"""The verdict of a graded cell, decided outside the kernel.

The checks of a graded test cell report the student's values (:mod:`course_lib.grading.report`). The
expected values come from a *trusted run*: the instructor's solution notebook, graded the same way
(same sandbox, same seeds, experiments skipped), whose reports :func:`record` keeps once per
assignment. :func:`compare` then decides, in the grader's process:

- the cell must report exactly the checks the trusted run reported, in the same order and with the same
  names (a skipped, silenced or short-circuited check reports nothing and fails);
- each value must equal the trusted one within the trusted run's tolerances, by ``numpy.isclose``'s rule
  ``|actual - expected| <= atol + rtol * |expected|`` (NaN equals NaN); a check that an exercise's
  policy lists in ``self_checks`` compares with the expected value of the student's own run instead
  (its expected value is derived from the student's code, e.g. two draws with one seed);
- an ``assert_raises`` check must have raised;
- a ``ran`` report (what ran while ``call_without_reference`` ran the student's function,
  :mod:`course_lib.grading.ran`) must come where the trusted run's came, say that the recorder stayed in
  place, and hold no name that the exercise's ``forbid_ran`` globs match (less ``allow_ran``): a report that
  is missing, tampered with or unreadable scores 0, like a forbidden operation.

A graded cell whose trusted run reported no check keeps nbgrader's in-kernel verdict only.

The records (:func:`write_records`, one ``<notebook>.json`` each) carry their SHA-256 in
``SHA256SUMS.json`` beside them, and every read (:func:`read_record`, :func:`check_records`) compares it:
a record that changed after the trusted run wrote it raises :class:`TrustedRecordChanged`, which stops the
run; it never falls back to the kernel's own verdict.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from course_lib.grading.report import MIME, decode


def reports(cell) -> list[dict]:
    """The check reports among a cell's outputs, in order."""
    out = []
    for o in cell.get("outputs", []):
        payload = o.get("data", {}).get(MIME) if o.get("output_type") == "display_data" else None
        if isinstance(payload, dict):
            out.append(payload)
    return out


def strip_reports(cell) -> None:
    """Remove the check reports from a cell's outputs (they are for the grader only)."""
    cell["outputs"] = [o for o in cell.get("outputs", [])
                       if not (o.get("output_type") == "display_data" and MIME in o.get("data", {}))]


def trusted_checks(payloads: list[dict]) -> list[dict]:
    """What to keep of the trusted run's reports: kind, name, tolerances, the expected value."""
    keep = []
    for p in payloads:
        entry = {"kind": p.get("kind"), "name": p.get("name")}
        if p.get("kind") == "close":
            entry.update(rtol=p["rtol"], atol=p["atol"], expected=p["expected"])
        elif p.get("kind") == "ran":
            pass  # what the solution ran is not compared: the policy's forbid_ran is
        else:
            entry["raised"] = p.get("raised")
        keep.append(entry)
    return keep


def _describe(actual: np.ndarray, want: np.ndarray, ok: np.ndarray, rtol: float, atol: float, name: str) -> str:
    err = np.where(ok, 0.0, np.nan_to_num(np.abs(actual - want), nan=np.inf))
    flat = int(np.argmax(err))
    index = tuple(int(i) for i in np.unravel_index(flat, want.shape)) if want.ndim else ()
    e, a = float(want.reshape(-1)[flat]), float(actual.reshape(-1)[flat])
    values = f"expected {e:.6g}, got {a:.6g} (relative error {abs(a - e) / max(abs(e), 1e-12):.3g})"
    if want.size == 1:  # a single number reads plainly, as in the kernel's own message
        return f"{name}: differs from the instructor's solution (rtol={rtol:g}, atol={atol:g}): {values}"
    return (f"{name}: {int((~ok).sum())} of {ok.size} elements differ from the instructor's solution "
            f"(rtol={rtol:g}, atol={atol:g}); worst at index {index}: {values}")


def _close(trusted: dict, got: dict, own_expected: bool) -> str | None:
    name = trusted["name"]
    try:
        actual = decode(got["actual"])
    except (KeyError, TypeError, ValueError) as err:
        return f"{name}: the value returned could not be compared ({err})"
    try:
        want = decode(got["expected"] if own_expected else trusted["expected"])
    except (KeyError, TypeError, ValueError) as err:
        return f"{name}: no expected value to compare with ({err})"
    if actual.shape != want.shape:
        return f"{name}: expected shape {want.shape}, got shape {actual.shape}"
    ok = np.isclose(actual, want, rtol=trusted["rtol"], atol=trusted["atol"], equal_nan=True)
    return None if ok.all() else _describe(actual, want, ok, trusted["rtol"], trusted["atol"], name)


def forbidden_ran(names, forbid_ran=(), allow_ran=()) -> list[str]:
    """The names that ``forbid_ran`` matches and ``allow_ran`` does not (globs), the shortest first (an
    operator or an entry point before the library's internals)."""
    return sorted((n for n in names if any(fnmatch.fnmatchcase(n, p) for p in forbid_ran)
                   and not any(fnmatch.fnmatchcase(n, p) for p in allow_ran)), key=lambda n: (n.count("."), len(n), n))


def _ran(got: dict, forbid_ran, allow_ran, test: str) -> str | None:
    """The reason a ``ran`` report fails, or None."""
    function, names = got.get("function"), got.get("names")
    if not isinstance(function, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"{test}: the report of what ran in your function is unreadable (a check that cannot see what ran scores 0)"
    if got.get("intact") is not True:
        from course_lib.grading.ran import tampered

        how = ", ".join(tampered(names)[:5]) or "the recorder was removed"
        return (f"while {test} ran your {function}, the recording of what ran was turned off or bypassed ({how}): "
                "a check that cannot see what ran scores 0")
    bad = forbidden_ran(names, forbid_ran, allow_ran)
    if bad:
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        return (f"while {test} ran your {function}, {', '.join(bad[:6])}{more} ran, which this exercise forbids "
                "(a library computed the answer, whatever name reached it): write the computation yourself")
    return None


def compare(trusted: list[dict] | None, got: list[dict], self_checks=(), forbid_ran=(), allow_ran=(),
            test: str = "the test") -> str | None:
    """``None`` if the student's reports pass the trusted checks, else the first reason they do not.

    ``forbid_ran`` / ``allow_ran``: the exercise's globs over what ran (``ran`` reports); ``test`` names
    the graded cell in the reason."""
    if not trusted:
        return None
    if len(got) < len(trusted):
        missing = trusted[len(got)]["name"]
        return (f"the test made {len(got)} of its {len(trusted)} checks; the first one missing is {missing!r} "
                "(a check that does not run scores 0)")
    if len(got) > len(trusted):
        return f"the test reported {len(got)} checks instead of {len(trusted)}: extra reports came from the code"
    for t, g in zip(trusted, got):
        if not isinstance(g, dict) or g.get("kind") != t["kind"] or g.get("name") != t["name"]:
            return f"the check {t['name']!r} ran differently (got {g.get('name') if isinstance(g, dict) else g!r})"
        if t["kind"] == "close":
            problem = _close(t, g, any(fnmatch.fnmatchcase(t["name"], p) for p in self_checks))
            if problem:
                return problem
        elif t["kind"] == "ran":
            problem = _ran(g, forbid_ran, allow_ran, test)
            if problem:
                return problem
        elif g.get("raised") is not True or t.get("raised") is not True:
            return f"{t['name']}: the expected exception was not raised"
    return None


SUMS = "SHA256SUMS.json"


class TrustedRecordChanged(RuntimeError):
    """A trusted record that does not match the checksum written with it (or is missing)."""


def _read_nofollow(path: Path) -> bytes:
    """A file's bytes, refusing a symbolic link in its last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_records(folder: Path, records: dict[str, dict]) -> None:
    """Write each notebook's trusted checks (``<notebook>.json``, read-only) and their checksums."""
    folder = Path(folder)
    sums = {}
    for name, checks in sorted(records.items()):
        data = json.dumps(checks).encode()
        path = folder / f"{name}.json"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        sums[path.name] = hashlib.sha256(data).hexdigest()
    (folder / SUMS).unlink(missing_ok=True)
    fd = os.open(folder / SUMS, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(sums, f)


def _changed(path: Path, why: str) -> TrustedRecordChanged:
    return TrustedRecordChanged(
        f"the trusted record {path} {why}: it changed after the trusted run wrote it, so no verdict can rely on "
        f"it. Find out what changed it, then delete {path.parent.parent} and grade again (the trusted run is redone)")


def _sums(folder: Path) -> dict:
    try:
        sums = json.loads(_read_nofollow(Path(folder) / SUMS))
    except (OSError, ValueError) as err:
        raise _changed(Path(folder) / SUMS, f"cannot be read ({err})") from None
    if not isinstance(sums, dict):
        raise _changed(Path(folder) / SUMS, "is not a mapping of checksums")
    return sums


def read_record(folder: Path, notebook: str) -> dict:
    """The trusted checks of one notebook (grade_id -> checks), after checking the record's checksum."""
    path = Path(folder) / f"{notebook}.json"
    want = _sums(folder).get(path.name)
    if want is None:
        raise RuntimeError(f"the trusted run recorded nothing for the notebook {notebook}: no verdict")
    try:
        data = _read_nofollow(path)
    except OSError as err:
        raise _changed(path, f"cannot be read ({err})") from None
    if hashlib.sha256(data).hexdigest() != want:
        raise _changed(path, "does not match its SHA-256")
    return json.loads(data)


def check_records(folder: Path) -> None:
    """Raise :class:`TrustedRecordChanged` unless every trusted record matches its checksum."""
    for name in _sums(folder):
        read_record(folder, Path(name).stem)
