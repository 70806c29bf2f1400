"""A tiny nbgrader course for the grader's tests, and the adversarial corpus (``cases.py``).

``make_course(path)`` writes a course directory with its own ``nbgrader_config.py`` (the repository's,
with a short cell timeout appended) and one assignment, ``hw``: a notebook ``hw.ipynb`` with three
exercises, each followed by a graded test cell with visible and hidden tests (4 points in all), and
runs ``nbgrader generate_assignment``. ``student_notebook(answers)`` is the released notebook with
the given solution-cell sources filled in.

The hidden tests use names that appear nowhere else (``HIDDEN_MARKERS``), so a test can look for them in
the generated feedback.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT, NOTEBOOK = "hw", "hw"
TIMEOUT = 45  # seconds per cell: on a loaded 2-core machine the torch import alone has taken 15 s
POINTS = {"test_square": 1.0, "test_scale": 2.0, "test_mean": 1.0}
HIDDEN_MARKERS = ["HIDDEN_SQ_PROBE_4417", "HIDDEN_SC_PROBE_9051", "HIDDEN_MEAN_PROBE_2290", "-4417.25"]
BIN = Path(sys.executable).parent

SOLUTIONS = {
    "square": "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
    "scale": "def scale(t, a):\n    ### BEGIN SOLUTION\n    return a * t\n    ### END SOLUTION",
    "mean": "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION",
}
TESTS = {
    "test_square": ('assert square(3) == 9, "square(3) should be 9"\n'
                    "### BEGIN HIDDEN TESTS\n"
                    "HIDDEN_SQ_PROBE_4417 = square(-4)\n"
                    'assert HIDDEN_SQ_PROBE_4417 == 16, "square of a negative number is wrong"\n'
                    "### END HIDDEN TESTS"),
    "test_scale": ("grading.assert_close(scale(torch.ones(3), 2.0), torch.full((3,), 2.0), name='scale(ones, 2)')\n"
                   "### BEGIN HIDDEN TESTS\n"
                   "HIDDEN_SC_PROBE_9051 = torch.arange(5.0) - 2\n"
                   'assert torch.allclose(scale(HIDDEN_SC_PROBE_9051, -3.0), -3.0 * HIDDEN_SC_PROBE_9051), '
                   '"scale with a negative factor is wrong"\n'
                   "grading.assert_close(scale(HIDDEN_SC_PROBE_9051, 0.5), 0.5 * HIDDEN_SC_PROBE_9051, name='half')\n"
                   "### END HIDDEN TESTS"),
    "test_mean": ("def reference_mean(xs):\n    return sum(xs) / len(xs)\n"
                  "grading.assert_close(mean([1, 2, 3]), reference_mean([1, 2, 3]), name='mean([1, 2, 3])')\n"
                  'assert mean([1, 2, 3]) == 2, "mean([1, 2, 3]) should be 2"\n'
                  "### BEGIN HIDDEN TESTS\n"
                  "HIDDEN_MEAN_PROBE_2290 = mean([-4417.25, 4417.25, 3.0])\n"
                  'assert HIDDEN_MEAN_PROBE_2290 == 1.0, "mean of a mixed list is wrong"\n'
                  "### END HIDDEN TESTS"),
}
# Test-course config: the repository's, with a short per-cell timeout.
CONFIG_EXTRA = (f"\n# tests: a short per-cell timeout; room for late output on a loaded machine\n"
                f"c.Execute.timeout = {TIMEOUT}\nc.Execute.iopub_timeout = 30\n"
                "# stderr noise may arrive in several messages, some holding only a newline: ignore those too\n"
                "c.IgnorePattern.pattern = r'(?i)warn|\\d+%\\||it/s\\]|s/it\\]|^\\s*$'\n")


# What each exercise may not call (policies/hw/<exercise>.yml), with the shortcuts the tests try.
POLICIES = {
    "square": {"tests": ["test_square"], "forbid": ["torch.square", "numpy.square", "math.pow", ".square"],
               "shortcuts": ["def square(x):\n    return torch.square(torch.tensor(x)).item()"]},
    "scale": {"tests": ["test_scale"], "forbid": ["torch.mul", ".mul", "torch.Tensor.mul"],
              "shortcuts": ["def scale(t, a):\n    return torch.mul(t, a)", "def scale(t, a):\n    return t.mul(a)"]},
    "mean": {"tests": ["test_mean"], "forbid": ["statistics.*", "numpy.mean", "torch.mean", ".mean"],
             "shortcuts": ["import statistics\ndef mean(xs):\n    return statistics.mean(xs)",
                           "def mean(xs):\n    return reference_mean(xs)"]},
}


def _meta(grade_id, *, solution=False, grade=False, locked=False, points=None):
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def source_notebook() -> nbformat.NotebookNode:
    """The instructor notebook of ``hw``: setup, then three exercise + test pairs."""
    cells = [new_markdown_cell("# A tiny assignment"), new_code_cell("import torch\nfrom course_lib import grading")]
    cells[0].metadata, cells[1].metadata = _meta("intro", locked=True), _meta("setup", locked=True)
    for (sol, src), (test, tsrc) in zip(SOLUTIONS.items(), TESTS.items()):
        s, t = new_code_cell(src), new_code_cell(tsrc)
        s.metadata, t.metadata = _meta(sol, solution=True), _meta(test, grade=True, locked=True, points=POINTS[test])
        cells += [s, t]
    nb = new_notebook(cells=cells)
    for c in nb.cells:
        c.id = c.metadata["nbgrader"]["grade_id"]
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    return nb


def env() -> dict:
    """Environment for nbgrader/course commands: this virtual environment first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def run(cmd: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command of this environment (``nbgrader``, ``course``) in ``cwd``; output captured."""
    exe = BIN / cmd[0]
    proc = subprocess.run([str(exe) if exe.exists() else cmd[0], *cmd[1:]], cwd=cwd, env={**env(), **kw.pop("env", {})},
                          capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_course(path: Path, extra_config: str = "") -> Path:
    """A fresh course directory at ``path`` with assignment ``hw`` generated; returns ``path``."""
    (path / "build").mkdir(parents=True, exist_ok=True)  # the gradebook lives there
    config = (REPO / "nbgrader_config.py").read_text(encoding="utf-8") + CONFIG_EXTRA + extra_config
    (path / "nbgrader_config.py").write_text(config, encoding="utf-8")
    (path / "solutions" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(), path / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    (path / "policies" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    for name, policy in POLICIES.items():
        (path / "policies" / ASSIGNMENT / f"{name}.yml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    run(["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=path)
    return path


def released(course: Path) -> nbformat.NotebookNode:
    return nbformat.read(course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)


def student_notebook(course: Path, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The released notebook with solution cells replaced by ``answers`` (default: the correct ones)."""
    nb = copy.deepcopy(released(course))
    answers = SOLUTIONS if answers is None else {**SOLUTIONS, **answers}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def submit(course: Path, student: str, files: dict[str, object], timestamp: str | None = None) -> Path:
    """Place a submission: ``files`` maps file names to notebooks, bytes, str or ``("sparse", size)``."""
    dest = course / "build" / "submitted" / student / ASSIGNMENT
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name, content in files.items():
        target = dest / name
        if isinstance(content, nbformat.NotebookNode):
            nbformat.write(content, target)
        elif isinstance(content, tuple) and content[0] == "sparse":
            with open(target, "wb") as f:
                f.truncate(content[1])
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(str(content), encoding="utf-8")
    if timestamp:
        (dest / "timestamp.txt").write_text(timestamp)
    return dest


def nb_json(nb: nbformat.NotebookNode) -> dict:
    return json.loads(nbformat.writes(nb))
