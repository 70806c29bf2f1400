"""``course feedback`` and ``course export``: nbgrader's own commands, hidden tests' code removed from feedback."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades

from .build import nbgrader
from .grade import review
from .gradebook import load_course
from .preprocessors import HideHiddenTests


def feedback(root: Path, assignment: str, student: str | None = None) -> int:
    """nbgrader ``generate_feedback`` with :class:`HideHiddenTests`; returns nbgrader's exit status."""
    from nbgrader.apps.generatefeedbackapp import GenerateFeedbackApp
    from traitlets.config import Config

    course = load_course(root)
    cwd = os.getcwd()
    os.chdir(course.root)
    cfg = Config()
    cfg.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    app = GenerateFeedbackApp()
    try:
        app.initialize([assignment, "--force"] + (["--student", student] if student else []))
        app.update_config(cfg)
        app.start()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)


def export(root: Path, to: Path) -> Path:
    """nbgrader ``export`` (CSV of every grade) to ``to``, plus a ``review`` column; returns the path.

    ``review`` holds the policy findings of ``course grade`` for that student and assignment (forbidden
    references and tampering, which scored 0, and flags, which did not), for the instructor to look at.
    """
    course = load_course(root)
    to = Path(to).resolve()
    nbgrader(course.root, "export", "--to", str(to), log=course.db_path.parent / "logs" / "export.log")
    with open(to, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    grading = course.db_path.parent / "grading"
    for row in rows:
        row["review"] = " | ".join(review(grading / row["assignment"] / "findings" / f"{row['student_id']}.jsonl"))
    with open(to, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["review"])
        writer.writeheader()
        writer.writerows(rows)
    return to
