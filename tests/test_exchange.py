"""The instructor workflow of the README, end to end through nbgrader's exchange.

A temporary exchange directory, one instructor course directory and two student directories (alice,
bob): ``nbgrader release_assignment`` -> students ``fetch_assignment``, solve, ``submit`` ->
``nbgrader collect`` -> ``course grade`` -> ``course feedback`` -> ``nbgrader release_feedback`` ->
students ``fetch_feedback`` -> ``course export``.
"""
from __future__ import annotations

import csv
import os

import pytest

pytest.importorskip("nbgrader", reason="the instructor workflow needs nbgrader (pip install -e . installs it)")

import nbformat  # noqa: E402

from adversarial import ASSIGNMENT, NOTEBOOK, SOLUTIONS, make_course, run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]
COURSE_ID = "dnn-tricks"  # nbgrader_config.py's CourseDirectory.course_id


def test_release_fetch_submit_collect_grade_feedback_export(tmp_path):
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    os.chmod(exchange, 0o777)
    course = make_course(tmp_path / "instructor", extra_config=f"c.Exchange.root = {str(exchange)!r}\n")
    run(["nbgrader", "release_assignment", ASSIGNMENT], cwd=course)

    answers = {"alice": dict(SOLUTIONS), "bob": {**SOLUTIONS, "square": "def square(x):\n    return x * abs(x)"}}
    homes = {}
    for student, solved in answers.items():
        home = homes[student] = tmp_path / student
        home.mkdir()
        (home / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n")
        who = {"USER": student, "LOGNAME": student, "HOME": str(home)}  # each student its own nbgrader cache
        run(["nbgrader", "fetch_assignment", ASSIGNMENT, "--course", COURSE_ID], cwd=home, env=who)
        path = home / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in solved:
                cell.source = solved[gid]
        nbformat.write(nb, path)
        run(["nbgrader", "submit", ASSIGNMENT, "--course", COURSE_ID, "--student", student], cwd=home, env=who)

    run(["nbgrader", "collect", ASSIGNMENT], cwd=course)
    for student in answers:
        assert (course / "build" / "submitted" / student / ASSIGNMENT / "timestamp.txt").exists()

    graded = run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=course)
    assert "| alice | graded | 4 / 4 |" in graded.stdout and "| bob | graded | 3 / 4 |" in graded.stdout, graded.stdout

    run(["course", "feedback", ASSIGNMENT], cwd=course)
    run(["nbgrader", "release_feedback", ASSIGNMENT], cwd=course)
    for student, home in homes.items():
        run(["nbgrader", "fetch_feedback", ASSIGNMENT, "--course", COURSE_ID, "--student", student], cwd=home,
            env={"USER": student, "LOGNAME": student, "HOME": str(home)})
        pages = list((home / ASSIGNMENT / "feedback").glob(f"*/{NOTEBOOK}.html"))
        assert len(pages) == 1, f"{student} got no feedback"
        text = pages[0].read_text(encoding="utf-8")
        assert "HIDDEN_SQ_PROBE_4417" not in text
        if student == "bob":
            assert "square of a negative number is wrong" in text

    run(["course", "export", "--to", "grades.csv"], cwd=course)
    rows = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv", encoding="utf-8"))}
    assert float(rows["alice"]["raw_score"]) == 4 and float(rows["bob"]["raw_score"]) == 3
