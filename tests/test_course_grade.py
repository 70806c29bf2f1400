"""Every chapter through ``course grade`` for real: sandbox, policies, trusted verdicts, experiments skipped.

Per chapter, in its own copy of the course, four submissions:
- ``solution``: the instructor's answers, which must get full marks;
- ``alternative``: the independently written answers of ``tests/alternatives/<chapter>/`` (the instructor's
  where a chapter has none for an exercise), which must get full marks too;
- ``blank``: the released notebooks, which must get 0;
- ``shortcut``: the instructor's answers except one exercise answered by its first declared shortcut (a call
  of the reference), which must lose that exercise's points, with the policy's reason (exercises that call
  the shortcut's function may lose theirs too, through the in-kernel guard), and keep others;
- ``ran-<i>`` (chapters whose policies list ``ran_shortcuts``): the instructor's answers with every such exercise
  answered by its i-th runtime shortcut, an indirection that the names do not show (``torch.functional.torch``,
  a module that re-exports ``torch.nn.init``, a computed method name, pandas' crosstab under its own module).
  Each must lose the points of its tests that run the student's function under ``call_without_reference``,
  with the reason that a forbidden operation ran (``forbid_ran``), while the solution keeps full marks;
- ``cheater``: every exercise that declares two shortcuts or more answered by its last one (the policies put
  their indirect routes there: aliases, getattr by string, sys.modules, internals, method forms), which must
  score 0 on every test of those exercises, each exercise named in the report's findings ("for review").
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


def _cheats(chapter: str, nb_name: str) -> dict[str, str]:
    """grade_id -> last declared shortcut, for the exercises of ``nb_name`` that declare two or more (the first
    is the ``shortcut`` submission's)."""
    src = policy.trusted(nbformat.read(ROOT / "solutions" / chapter / nb_name, as_version=4))
    return {gid: ex.shortcuts[-1] for gid, ex in policy.load(ROOT / "policies" / chapter).items()
            if gid in src.cells and len(ex.shortcuts) > 1}


def _ran_shortcuts(chapter: str) -> dict[str, list[str]]:
    """The runtime shortcuts of the chapter's exercises (grade_id -> sources)."""
    return {gid: ex.ran_shortcuts for gid, ex in policy.load(ROOT / "policies" / chapter).items() if ex.ran_shortcuts}


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
        ran = _ran_shortcuts(chapter)
        for i in range(max((len(v) for v in ran.values()), default=0)):  # every notebook, replaced or not
            answers = _answers(chapter, release.name, "solution")
            replaced = {gid: codes[i] for gid, codes in ran.items() if i < len(codes) and gid in answers}
            subs[f"ran-{i}"] = build.fill(blank, {**answers, **replaced})
        cheats = _cheats(chapter, release.name)
        subs["cheater"] = build.fill(blank, {**_answers(chapter, release.name, "solution"), **cheats})
        for student, nb in subs.items():
            dest = root / "build" / "submitted" / student / chapter
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / release.name)
    proc = subprocess.run([str(Path(sys.executable).parent / "course"), "grade", chapter, "--workers", "1"],
                          cwd=root, capture_output=True, text=True, timeout=3000)
    with Gradebook(f"sqlite:///{root / 'build' / 'gradebook.db'}") as gb:
        cells = {s.student_id: {g.name: (g.score, g.max_score) for nb in s.notebooks for g in nb.grades}
                 for s in gb.assignment_submissions(chapter)}
    cheats = {gid: code for nb in (root / "notebooks" / chapter).glob("*.ipynb")
              for gid, code in _cheats(chapter, nb.name).items()}
    review = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("| cheater |"))
    return {"cells": cells, "shortcut": shortcut, "cheats": cheats, "review": review,
            "output": proc.stdout[-4000:] + proc.stderr[-2000:],
            "errors": _grading_errors(root / "build" / "autograded", chapter)}


def _ran_checked(chapter: str) -> set[str]:
    """The graded cells of a chapter that call ``call_without_reference``, directly or through
    ``assert_follows`` (they report what ran)."""
    out = set()
    for path in (ROOT / "solutions" / chapter).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and ("call_without_reference" in cell.source or "assert_follows" in cell.source):
                out.add(meta["grade_id"])
    return out


def _grading_errors(folder: Path, chapter: str) -> dict:
    """student -> graded cell -> the GradingError the verdict gave it (the autograded notebooks)."""
    out = {}
    for path in sorted(folder.glob(f"*/{chapter}/*.ipynb")):
        student = path.parts[-3]
        for cell in nbformat.read(path, as_version=4).cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error" and o.get("ename") == "GradingError":
                    out.setdefault(student, {})[gid] = o.get("evalue", "")
    return out


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


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_last_shortcut_scores_zero_with_its_reason(chapters, chapter):
    """The cheater: every exercise answered by its last declared shortcut, all in one submission."""
    got = chapters[chapter]
    exercises = policy.load(ROOT / "policies" / chapter)
    cells = got["cells"]["cheater"]
    for gid in got["cheats"]:
        scored = {t: cells[t] for t in exercises[gid].tests if cells[t][0] > 0}
        assert not scored, f"{chapter}: {gid}'s last shortcut scored {scored}:\n{got['cheats'][gid]}\n{got['output']}"
        assert gid in got["review"], f"{chapter}: the report's findings for the cheater do not name {gid}:\n{got['review']}"


RAN_CHAPTERS = [c for c in CHAPTERS if _ran_shortcuts(c)]


@pytest.mark.parametrize("chapter", RAN_CHAPTERS)
def test_runtime_shortcuts_lose_their_checked_tests_with_what_ran(chapters, chapter):
    """Each runtime shortcut passes the static policy (tests/test_ran.py) and scores 0 on every test that
    runs it under call_without_reference, with the reason naming what ran."""
    got = chapters[chapter]
    exercises, reporting = policy.load(ROOT / "policies" / chapter), _ran_checked(chapter)
    for gid, codes in _ran_shortcuts(chapter).items():
        for i in range(len(codes)):
            student = f"ran-{i}"
            assert student in got["cells"], got["output"]
            cells, errors = got["cells"][student], got["errors"].get(student, {})
            checked = [t for t in exercises[gid].tests if t in reporting]
            assert checked, f"{chapter}: {gid} declares ran_shortcuts but none of its tests call call_without_reference"
            for test in checked:
                assert cells[test][0] == 0, (gid, i, test, cells[test], got["output"])
                assert "ran, which this exercise forbids" in errors.get(test, ""), (gid, i, test, errors, got["output"])
