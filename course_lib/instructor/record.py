"""``course record``: the expected values of the visible tests, recorded from the instructor's solution.

For each chapter, every solution notebook executes (quick profile, CPU, experiments skipped: no test
depends on them) with ``COURSE_RECORD_TO`` pointing at ``solutions/<chapter>/recorded.json``; each
:func:`course_lib.grading.assert_recorded` of a test cell writes its value there instead of comparing
(:mod:`course_lib.grading.recorded`). ``nbgrader generate_assignment`` then copies the file next to the
student notebooks. ``make notebooks`` runs both; a chapter without such checks gets no file.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ..grading.recorded import FILE, RECORD_ENV


def _hidden_recorded(nb) -> list[str]:
    """Test cells whose hidden part records a value (it would ship the hidden test's answer to students)."""
    bad = []
    for cell in nb.cells:
        source = cell.source if cell.cell_type == "code" else ""
        start = source.find("### BEGIN HIDDEN TESTS")
        if start >= 0 and "assert_recorded" in source[start:]:
            bad.append(cell.metadata.get("nbgrader", {}).get("grade_id", "?"))
    return bad


def record(root: Path, chapter: str) -> Path | None:
    """Record ``chapter``'s values into ``solutions/<chapter>/recorded.json``; return it (None if no check records)."""
    folder = root / "solutions" / chapter
    target = folder / FILE
    target.unlink(missing_ok=True)
    saved = {k: os.environ.get(k) for k in (RECORD_ENV, "COURSE_PROFILE", "COURSE_DEVICE")}
    os.environ.update({RECORD_ENV: str(target), "COURSE_PROFILE": "quick", "COURSE_DEVICE": "cpu"})
    try:
        for path in sorted(folder.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            bad = _hidden_recorded(nb)
            if bad:
                raise ValueError(f"{path.name}: assert_recorded in the hidden tests of {', '.join(bad)}; "
                                 "hidden tests compare with the trusted run, never with a shipped value")
            started = time.perf_counter()
            NotebookClient(nb, timeout=1800, kernel_name="python3", skip_cells_with_tag="experiment",
                           resources={"metadata": {"path": str(folder)}}).execute()
            print(f"recorded {path.name} in {time.perf_counter() - started:.0f} s")
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return target if target.exists() else None
