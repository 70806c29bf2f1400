"""Every chapter through ``course grade`` for real: sandbox, policies, trusted verdicts, experiments skipped.

Per chapter, in its own copy of the course, four submissions:
- ``solution``: the instructor's answers, which must get full marks;
- ``alternative``: the independently written answers of ``tests/alternatives/<chapter>/`` (the instructor's
  where a chapter has none for an exercise), which must get full marks too;
- ``blank``: the released notebooks, which must get 0;
- ``shortcut``: the instructor's answers except one exercise answered by its first declared shortcut (a call
  of the reference), which must lose that exercise's points, with the policy's reason (exercises that call
  the shortcut's function may lose theirs too, through the in-kernel guard), and keep others.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="course grade needs nbgrader (pip install -e . installs it)")

import nbformat  # noqa: E402

from conftest import quick_profile  # noqa: E402
from course_lib.instructor import build, policy  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]
ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = build.chapters(ROOT)


def _answers(chapter: str, nb_name: str, which: str) -> dict[str, str]:
    source = nbformat.read(ROOT / "solutions" / chapter / nb_name, as_version=4)
    answers = build.solution_cells(source)
    if which == "alternative":
        for gid in answers:
            alt = ROOT / "tests" / "alternatives" / chapter / f"{gid}.py"
            if alt.exists():
                answers[gid] = alt.read_text(encoding="utf-8")
    return answers


def _shortcut(chapter: str):
    """(notebook name, exercise, its tests, the shortcut) of the chapter's first exercise with a shortcut."""
    exercises = policy.load(ROOT / "policies" / chapter)
    for path in sorted((ROOT / "solutions" / chapter).glob("*.ipynb")):
        src = policy.trusted(nbformat.read(path, as_version=4))
        for gid, ex in exercises.items():
            if gid in src.cells and ex.shortcuts:
                return path.name, gid, ex.tests, ex.shortcuts[0]
    return None


def _grade_chapter(root: Path, chapter: str) -> dict:
    from nbgrader.api import Gradebook

    root.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / chapter, root / "solutions" / chapter)
    if (ROOT / "policies" / chapter).exists():
        shutil.copytree(ROOT / "policies" / chapter, root / "policies" / chapter)
    log = root / "build" / "logs" / "test.log"
    build.generate(root, chapter, log)
    shortcut = _shortcut(chapter)
    for release in sorted((root / "notebooks" / chapter).glob("*.ipynb")):
        blank = nbformat.read(release, as_version=4)
        subs = {"blank": blank, **{w: build.fill(blank, _answers(chapter, release.name, w))
                                   for w in ("solution", "alternative")}}
        answers = _answers(chapter, release.name, "solution")
        if shortcut and shortcut[0] == release.name:
            answers[shortcut[1]] = shortcut[3]
        subs["shortcut"] = build.fill(blank, answers)
        for student, nb in subs.items():
            dest = root / "build" / "submitted" / student / chapter
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / release.name)
    proc = subprocess.run([str(Path(sys.executable).parent / "course"), "grade", chapter, "--workers", "1"],
                          cwd=root, capture_output=True, text=True, timeout=3000)
    with Gradebook(f"sqlite:///{root / 'build' / 'gradebook.db'}") as gb:
        cells = {s.student_id: {g.name: (g.score, g.max_score) for nb in s.notebooks for g in nb.grades}
                 for s in gb.assignment_submissions(chapter)}
    return {"cells": cells, "shortcut": shortcut, "output": proc.stdout[-4000:] + proc.stderr[-2000:]}


@pytest.fixture(scope="session")
def chapters(tmp_path_factory):
    base = tmp_path_factory.mktemp("course-grade")
    with quick_profile(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {c: pool.submit(_grade_chapter, base / c, c) for c in CHAPTERS}
        return {c: f.result() for c, f in futures.items()}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_and_alternative_get_full_marks_and_blank_zero(chapters, chapter):
    got = chapters[chapter]
    for student in ("solution", "alternative"):
        assert student in got["cells"], got["output"]
        lost = {k: v for k, v in got["cells"][student].items() if v[0] != v[1]}
        assert not lost, f"{chapter}: the {student} lost points on {lost}\n{got['output']}"
    assert all(score == 0 for score, _ in got["cells"]["blank"].values()), got["cells"]["blank"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_shortcut_loses_its_exercise_with_the_reason(chapters, chapter):
    got = chapters[chapter]
    assert got["shortcut"], f"{chapter} declares no shortcut"
    _, gid, tests, _ = got["shortcut"]
    cells = got["cells"]["shortcut"]
    assert all(cells[t][0] == 0 for t in tests), (gid, {t: cells[t] for t in tests}, got["output"])
    kept = [k for k, v in cells.items() if k not in tests and v[0] == v[1] > 0]
    assert kept, f"{chapter}: the shortcut for {gid} cost every other exercise too: {cells}"
    assert "forbidden" in got["output"] and gid in got["output"], got["output"]
