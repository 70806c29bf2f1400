"""The course's folders, nbgrader's gradebook and the grading journal.

The parent process of ``course grade`` is the only writer of the real gradebook: :func:`merge` copies
what nbgrader's autograde wrote into a worker's private copy, one submission at a time. The
:class:`Journal` records each merged submission so that a rerun resumes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry


@dataclass
class Course:
    """The folders nbgrader uses, read from the course's ``nbgrader_config.py``."""

    root: Path
    config: object
    db_url: str
    db_path: Path
    submitted: str
    autograded: str
    source: str
    max_file_size_kb: int
    exchange_root: str  # nbgrader's exchange, as nbgrader's own commands see it here
    exchange_cache: str  # nbgrader's cache of submitted assignments

    def path(self, folder: str, student: str, assignment: str) -> Path:
        return Path(os.path.join(self.root, folder, student, assignment))


def nbgrader_config(root: Path):
    """The configuration an nbgrader command run in ``root`` sees: every Jupyter config folder's
    ``nbgrader_config.py`` (``jupyter --paths``), then the one in ``root``, merged by nbgrader's own loader."""
    from nbgrader.apps.baseapp import NbGrader

    cwd = os.getcwd()
    os.chdir(root)  # nbgrader reads the current folder's nbgrader_config.py last
    try:
        app = NbGrader()
        app.load_config_file()
        return app.config
    finally:
        os.chdir(cwd)


def load_course(root: Path) -> Course:
    """Read the course's configuration the way nbgrader does (paths, the gradebook, the exchange)."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.exchange import Exchange

    root = Path(root).resolve()
    if not (root / "nbgrader_config.py").exists():
        raise SystemExit(f"no nbgrader_config.py in {root}: run this in the course root or pass --root")
    cfg = nbgrader_config(root)
    cfg.CourseDirectory.root = str(root)
    cd = CourseDirectory(config=cfg)
    db_url = cd.db_url
    if not db_url.startswith("sqlite:///"):
        raise SystemExit(f"course grade needs an SQLite gradebook, not {db_url}")
    exchange = Exchange(config=cfg)
    return Course(root, cfg, db_url, Path(db_url[len("sqlite:///"):]), cd.submitted_directory,
                  cd.autograded_directory, cd.source_directory, cd.max_file_size, str(exchange.root),
                  str(exchange.cache))


def snapshot(db_url: str, assignment: str) -> dict:
    """Everything autograding decides for ``assignment``, by student, notebook and cell (no ids).

    Used to compare gradebooks: timestamps, late penalties, auto scores, manual-grading flags,
    auto comments and totals.
    """
    out = {}
    with Gradebook(db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            nbs = {}
            for nb in sub.notebooks:
                nbs[nb.name] = {
                    "penalty": nb.late_submission_penalty,
                    "grades": {g.name: [g.auto_score, g.manual_score, g.needs_manual_grade] for g in nb.grades},
                    "comments": {c.name: c.auto_comment for c in nb.comments}}
            out[sub.student_id] = {"timestamp": str(sub.timestamp), "score": sub.score,
                                   "max_score": sub.max_score, "notebooks": nbs}
    return out


def copy_db(src: Path, dest: Path) -> None:
    """A consistent copy of an SQLite database (the backup API), also while nobody else writes it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(dest) as b:
        a.backup(b)
    a.close()
    b.close()


def merge(main_url: str, private_url: str, assignment: str, student: str) -> bool:
    """Copy what nbgrader's autograde wrote for ``student`` from the private gradebook into the real one.

    Returns False when nbgrader created no submission (nothing to copy). One commit.
    """
    with Gradebook(private_url) as src:
        try:
            sub = src.find_submission(assignment, student)
        except MissingEntry:
            return False
        data = {"timestamp": sub.timestamp,
                "notebooks": {nb.name: (nb.late_submission_penalty,
                                        {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
                                        {c.name: c.auto_comment for c in nb.comments}) for nb in sub.notebooks}}
    with Gradebook(main_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy autoflush warnings
        gb.update_or_create_student(student)
        target = gb.update_or_create_submission(assignment, student)
        target.timestamp = data["timestamp"]
        for nb in target.notebooks:
            penalty, grades, comments = data["notebooks"][nb.name]
            nb.late_submission_penalty = penalty
            for g in nb.grades:
                g.auto_score, g.needs_manual_grade = grades[g.name]
            for c in nb.comments:
                c.auto_comment = comments[c.name]
        gb.db.commit()
    return True


class Journal:
    """``journal.jsonl``: one JSON line per merged submission (with its ``outcome``), a ``started`` line before
    each attempt, and a ``cancelled`` line for an attempt the grader stopped itself (it ends the count of
    starts, but is no outcome: the last real outcome stays). A torn last line is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict] = {}
        self.started: dict[tuple[str, str], int] = {}  # (student, fingerprint) -> starts since the last finish
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    self._note(json.loads(line))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue

    def _note(self, entry: dict) -> None:
        key = (entry["student"], entry.get("fingerprint"))
        if entry["status"] == "started":
            self.started[key] = self.started.get(key, 0) + 1
        else:
            self.started.pop(key, None)
            if "outcome" in entry:
                self.done[entry["student"]] = entry

    def crashes(self, student: str, fingerprint: str) -> int:
        """How many times grading this submission started and never finished (the grader died)."""
        return self.started.get((student, fingerprint), 0)

    def record(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._note(entry)
