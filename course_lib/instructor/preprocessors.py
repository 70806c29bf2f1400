"""The nbgrader preprocessors that ``course grade`` and ``course feedback`` add to nbgrader's pipelines.

- :class:`CopiedCells` (autograde, before ``DeduplicateIds``): a copied or pasted nbgrader cell is
  ignored, and the original graded (nbgrader would fail the whole submission, or grade the copy);
- :class:`RestoreCellMetadata` (autograde, before ``OverwriteCells``): the source's nbgrader metadata back
  on cells a student edited;
- :class:`SkipExperiments` (autograde, before ``Execute``): cells tagged ``experiment`` in the source do
  not run, since no grade depends on them;
- :class:`Verdict` (autograde, after ``Execute``): the policy check of the student's source and the
  comparison of what the student's code returned with the trusted expected values, outside the kernel
  (see :mod:`course_lib.instructor.verdict`);
- :class:`HideHiddenTests` (feedback): hidden tests' results without their code (nbgrader issue #917).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Unicode

from . import policy, verdict

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def note_findings(path: str, notebook: str, findings: list[dict]) -> None:
    """Append findings (``kind``, ``message``, ...) of one notebook to the submission's findings file."""
    if path and findings:
        with open(path, "a", encoding="utf-8") as f:
            for item in findings:
                f.write(json.dumps({"notebook": notebook, **item}) + "\n")


def _grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def _disorder(ids: list, at: int, rank: dict) -> int:
    """How many cells with a known grade_id stand on the wrong side of position ``at`` (source order)."""
    r = rank[ids[at]]
    return (sum(1 for g in ids[:at] if g in rank and g != ids[at] and rank[g] > r)
            + sum(1 for g in ids[at + 1:] if g in rank and g != ids[at] and rank[g] < r))


class CopiedCells(NbGraderPreprocessor):
    """A cell copied or pasted in JupyterLab keeps its nbgrader metadata, ``grade_id`` included. nbgrader then
    grades the last copy, or fails the whole submission (``KeyError: 'grade_id'`` in ``OverwriteCells``).

    Here, of the cells that share a ``grade_id``, the original is the one in the source notebook's order
    (the fewest cells on the wrong side of it; the first of equals). A copy of an instructor's cell (a test
    or read-only cell) is removed: nbgrader restores the original's source anyway. A copy of a solution cell
    is the student's code: it stays, as an ordinary cell. Each copy is noted in ``findings_file``.
    """

    source_dir = Unicode("", help="the assignment's folder of source notebooks").tag(config=True)
    findings_file = Unicode("", help="where to note the copies (JSON lines); empty: nowhere").tag(config=True)

    def preprocess(self, nb, resources):
        source = _source_notebook(self.source_dir, resources)
        rank = {g: i for i, g in enumerate(_grade_id(c) for c in source.cells) if g}
        solution = {_grade_id(c) for c in source.cells if (c.metadata.get("nbgrader") or {}).get("solution")}
        ids = [_grade_id(c) for c in nb.cells]
        copies, notes = set(), []
        for gid in {g for g in ids if g in rank and ids.count(g) > 1}:
            where = [i for i, g in enumerate(ids) if g == gid]
            keep = min(where, key=lambda i: (_disorder(ids, i, rank), i))
            for i in where:
                if i != keep:
                    copies.add(i)
                    what = "kept as an ordinary cell" if gid in solution else "removed"
                    notes.append({"kind": "copied", "message": f"cell {i} is a copy of {gid} (cell {keep}): the "
                                  f"original is graded, the copy is ignored ({what})"})
        for i in sorted(copies, reverse=True):
            if ids[i] in solution:
                del nb.cells[i].metadata["nbgrader"]
            else:
                del nb.cells[i]
        note_findings(self.findings_file, resources["nbgrader"]["notebook"], sorted(notes, key=str))
        return nb, resources


class RestoreCellMetadata(NbGraderPreprocessor):
    """Give every cell whose ``grade_id`` is in the gradebook the source's nbgrader metadata.

    nbgrader's ``OverwriteCells`` restores a locked cell's source and points, but a student who sets
    ``grade: false`` on a test cell makes it fail with "Inconsistent checksums", and a renamed
    ``grade_id`` leaves a locked cell nbgrader cannot validate. Here the flags (grade, solution, locked,
    task, points) come from the source; a cell with an unknown ``grade_id`` becomes an ordinary cell, so
    that ``OverwriteCells.add_missing_cells`` puts the real one back. A submission that did not edit
    metadata is left exactly as it is.
    """

    def preprocess(self, nb, resources):
        nb_id, assignment = resources["nbgrader"]["notebook"], resources["nbgrader"]["assignment"]
        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            try:
                source = gb.find_notebook(nb_id, assignment)
            except MissingEntry:
                return nb, resources
            self._cells = {c.name: c for c in source.source_cells}
            self._grade = {c.name: c.max_score for c in source.grade_cells}
            self._solution = {c.name for c in source.solution_cells}
            self._task = {c.name for c in source.task_cells}
            return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader")
        if meta is not None and "grade_id" not in meta:  # e.g. a copy that nbgrader's DeduplicateIds emptied
            del cell.metadata["nbgrader"]
        if not meta or "grade_id" not in meta:
            return cell, resources
        gid = meta["grade_id"]
        if gid not in self._cells:
            self.log.warning("Cell with unknown grade_id %r: treated as an ordinary cell", gid)
            del cell.metadata["nbgrader"]
            return cell, resources
        want = {"grade": gid in self._grade, "solution": gid in self._solution, "task": gid in self._task,
                "locked": bool(self._cells[gid].locked)}
        if want["grade"]:
            want["points"] = float(self._grade[gid])
        changed = {k: v for k, v in want.items() if meta.get(k) != v and not (k == "points" and
                   _float(meta.get(k)) == v)}
        if changed:
            self.log.warning("Cell %s: nbgrader metadata %s restored from the source", gid, sorted(changed))
            meta.update(changed)
            if not want["grade"]:
                meta.pop("points", None)
        return cell, resources


def _float(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: keep each hidden test's result and failure message, drop its source (nbgrader #917).

    In a graded cell, the ``BEGIN HIDDEN TESTS`` ... ``END HIDDEN TESTS`` block becomes one comment
    line, and an error's traceback (whose context lines quote the failing test) shrinks to its last
    line, ``ExceptionName: message``. Any output line, in any cell, that quotes a hidden test line is
    dropped too (a student's code could print its caller's source).
    """

    placeholder = "# [hidden tests: their results are below, their code is not shown]"

    def preprocess(self, nb, resources):
        self._hidden = set()
        for cell in nb.cells:
            if HIDDEN_BEGIN in cell.source:
                inside = False
                for line in cell.source.splitlines():
                    if HIDDEN_BEGIN in line:
                        inside = True
                    elif HIDDEN_END in line:
                        inside = False
                    elif inside and len(line.strip()) >= 6:
                        self._hidden.add(line.strip())
        return super().preprocess(nb, resources)

    def _scrub(self, text: str) -> str:
        return "\n".join(ln for ln in text.split("\n") if not any(h in ln for h in self._hidden))

    def preprocess_cell(self, cell, resources, index):
        had_hidden = HIDDEN_BEGIN in cell.source
        if had_hidden:
            out, inside = [], False
            for line in cell.source.split("\n"):
                if HIDDEN_BEGIN in line:
                    inside = True
                    out.append(line[:len(line) - len(line.lstrip())] + self.placeholder)
                elif HIDDEN_END in line:
                    inside = False
                elif not inside:
                    out.append(line)
            cell.source = "\n".join(out)
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                if had_hidden or any(any(h in t for h in self._hidden) for t in output.traceback):
                    output.traceback = [f"{output.ename}: {self._scrub(str(output.evalue))}"]
                output.evalue = self._scrub(str(output.evalue))
            elif output.output_type == "stream":
                output.text = self._scrub(output.text)
            elif "data" in output:
                for mime in ("text/plain", "text/html", "text/markdown"):
                    if mime in output.data:
                        value = output.data[mime]
                        output.data[mime] = self._scrub("".join(value) if isinstance(value, list) else value)
        return cell, resources


EXPERIMENT_TAG = "experiment"
SKIPPED = "# experiment: not run while grading (no grade depends on it)"


def _source_notebook(folder: str, resources):
    import nbformat

    return nbformat.read(os.path.join(folder, resources["nbgrader"]["notebook"] + ".ipynb"), as_version=4)


class SkipExperiments(NbGraderPreprocessor):
    """Replace each cell tagged ``experiment`` *in the source notebook* by a comment, so it does not run.

    The tags are read from the instructor's notebook by ``grade_id`` (every cell of a source notebook has
    one), never from the submission, so a student cannot skip a cell by tagging it.
    """

    source_dir = Unicode("", help="the assignment's folder of source notebooks; empty: skip nothing").tag(config=True)

    def preprocess(self, nb, resources):
        if not self.enabled or not self.source_dir:
            return nb, resources
        source = _source_notebook(self.source_dir, resources)
        skip = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
                if EXPERIMENT_TAG in c.metadata.get("tags", []) and "grade_id" in c.metadata.get("nbgrader", {})}
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") in skip:
                cell.source = SKIPPED
        return nb, resources


class Verdict(NbGraderPreprocessor):
    """After execution: a graded cell that breaks the policy or fails a trusted check gets an error output.

    nbgrader's ``SaveAutoGrades`` then gives it 0, and feedback shows the reason. The findings of the
    policy check go to ``findings_file`` (JSON) for the grade report and the export.
    """

    source_dir = Unicode(help="the assignment's folder of source notebooks").tag(config=True)
    policy_dir = Unicode(help="policies/<assignment>/").tag(config=True)
    expected_dir = Unicode(help="the trusted run's records, one <notebook>.json each").tag(config=True)
    findings_file = Unicode("", help="where to write the policy findings (JSON); empty: nowhere").tag(config=True)
    ready_file = Unicode("", help="a file that exists once the trusted run is complete; empty: it is").tag(config=True)
    failed_file = Unicode("", help="a file that exists if the trusted run failed").tag(config=True)
    wait_seconds = Float(7200.0, help="how long to wait for the trusted run").tag(config=True)

    def _wait_for_trusted(self) -> None:
        """The trusted run may still be running beside this submission (``course grade`` starts both at once):
        wait for its records; no verdict without them."""
        deadline = time.monotonic() + self.wait_seconds
        while self.ready_file and not os.path.exists(self.ready_file):
            if (self.failed_file and os.path.exists(self.failed_file)) or time.monotonic() > deadline:
                raise RuntimeError("the trusted run of the instructor's notebooks did not complete: no verdict")
            time.sleep(0.05)

    def preprocess(self, nb, resources):
        name = resources["nbgrader"]["notebook"]
        source = policy.trusted(_source_notebook(self.source_dir, resources))
        exercises = policy.load(Path(self.policy_dir))
        findings = policy.check(nb, source, exercises)
        zero = policy.verdicts(findings, source, exercises)
        self._wait_for_trusted()
        expected = verdict.read_record(Path(self.expected_dir), name)
        self_checks = {t: ex.self_checks for ex in exercises.values() for t in ex.tests}
        forbid_ran = {t: ex.forbid_ran for ex in exercises.values() for t in ex.tests}
        allow_ran = {t: ex.allow_ran for ex in exercises.values() for t in ex.tests}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade"):
                continue
            gid = meta.get("grade_id")
            if gid not in expected:
                raise RuntimeError(f"the trusted record of {name} has no entry for the graded cell {gid}: no verdict")
            got = verdict.reports(cell)
            verdict.strip_reports(cell)
            reason = zero.get(gid) or verdict.compare(expected.get(gid), got, self_checks.get(gid, ()),
                                                      forbid_ran.get(gid, ()), allow_ran.get(gid, ()), gid)
            if reason and not any(o.output_type == "error" for o in cell.outputs):
                cell.outputs.append(NotebookNode(output_type="error", ename="GradingError", evalue=reason,
                                                 traceback=[f"GradingError: {reason}"]))
        note_findings(self.findings_file, name, [{**asdict(item), "message": item.message()} for item in findings])
        return nb, resources
