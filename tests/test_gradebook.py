"""The grading journal and the preflight of a submission, without kernels."""
from __future__ import annotations

import json

from course_lib.instructor.grade import MAX_DEPTH, json_depth, preflight
from course_lib.instructor.gradebook import Journal


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
    assert json_depth(json.dumps({"a": [[1], {"b": "]]]"}]}).encode()) == 3
    (tmp_path / "hw.ipynb").write_text(deep)
    assert f"nested 100001 levels deep (a notebook needs fewer than {MAX_DEPTH})" in preflight(tmp_path, ["hw"])
    (tmp_path / "hw.ipynb").write_text('{"cells": []}')
    assert preflight(tmp_path, ["hw"]) is None
