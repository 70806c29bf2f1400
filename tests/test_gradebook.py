"""The grading journal, the preflight of a submission and the course's nbgrader configuration, without kernels."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="the grader needs nbgrader (pip install -e . installs it)")

from course_lib.instructor.grade import MAX_DEPTH, json_depth, preflight  # noqa: E402
from course_lib.instructor.gradebook import Journal, load_course  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_the_exchange_is_the_one_nbgrader_uses(tmp_path, monkeypatch):
    """The grader hides nbgrader's exchange as nbgrader's own commands see it: its default when nothing
    sets it (``/usr/local/share/nbgrader/exchange`` in nbgrader 0.9), and a value set in any Jupyter config
    folder, not only the course's ``nbgrader_config.py``."""
    from nbgrader.exchange.default.exchange import Exchange

    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter"))
    default = Exchange.class_traits()["root"].default_value
    assert load_course(course).exchange_root == default
    (tmp_path / "jupyter").mkdir()
    (tmp_path / "jupyter" / "nbgrader_config.py").write_text(f"c.Exchange.root = {str(tmp_path / 'ex')!r}\n")
    assert load_course(course).exchange_root == str(tmp_path / "ex")
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"c.Exchange.root = {str(tmp_path / 'course-ex')!r}\n")
    assert load_course(course).exchange_root == str(tmp_path / "course-ex")  # the course's own file wins


def test_the_journal_counts_starts_that_never_finished(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.record({"student": "a", "fingerprint": "f1", "status": "started"})
    j.record({"student": "a", "fingerprint": "f1", "status": "started"})
    j.record({"student": "b", "fingerprint": "f2", "status": "started"})
    j.record({"student": "b", "fingerprint": "f2", "status": "graded", "outcome": {}})
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"student": "c", "fingerp')  # a line torn by a kill
    again = Journal(tmp_path / "journal.jsonl")
    assert again.crashes("a", "f1") == 2 and again.crashes("a", "other") == 0
    assert again.crashes("b", "f2") == 0 and "b" in again.done and "a" not in again.done


def test_a_cancelled_attempt_ends_the_starts_but_keeps_the_last_outcome(tmp_path):
    """The grader cancels the submissions beside a failed trusted run: not a crash, and no outcome either
    (a rerun resumes from the last merged outcome instead of reading one that does not exist)."""
    j = Journal(tmp_path / "journal.jsonl")
    j.record({"student": "a", "fingerprint": "f1", "status": "graded", "outcome": {"student": "a", "status": "graded"}})
    for _ in range(3):
        j.record({"student": "a", "fingerprint": "f1", "status": "started"})
        j.record({"student": "a", "fingerprint": "f1", "status": "cancelled"})
    again = Journal(tmp_path / "journal.jsonl")
    assert again.crashes("a", "f1") == 0
    assert again.done["a"]["outcome"] == {"student": "a", "status": "graded"}


def test_nesting_is_measured_without_parsing(tmp_path):
    deep = '{"cells": [], "x": "[[[ in a string {{{", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert json_depth(deep.encode()) == 100_001
    assert json_depth(deep.encode(), chunk=7) == 100_001  # measured a chunk at a time, the depth carried over
    assert json_depth(json.dumps({"a": [[1], {"b": "]]]"}]}).encode()) == 3
    (tmp_path / "hw.ipynb").write_text(deep)
    assert f"nested 100001 levels deep (a notebook needs fewer than {MAX_DEPTH})" in preflight(tmp_path, ["hw"])
    (tmp_path / "hw.ipynb").write_text('{"cells": []}')
    assert preflight(tmp_path, ["hw"]) is None
