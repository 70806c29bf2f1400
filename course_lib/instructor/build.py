"""The instructor solution run (``make course``), built from nbgrader's own commands.

For every chapter (a folder of ``solutions/``, one nbgrader assignment):

1. ``nbgrader generate_assignment`` regenerates the student notebooks in ``notebooks/``;
2. the solution notebooks execute with nbclient in the chosen profile and device, into ``build/executed/``;
3. ``nbgrader autograde`` grades two submissions: the executed solutions (student ``solution``, which
   must get full marks) and the untouched student notebooks (student ``blank``, which must get 0);
4. a summary table gives chapter, device, profile, seconds and points for both runs.

Run it as ``course build [CHAPTER ...]`` (``make course``), or ``python -m course_lib.instructor.build``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


SOLUTION, BLANK = "solution", "blank"


@dataclass
class RunResult:
    """One row of the summary table."""

    chapter: str
    run: str
    device: str
    profile: str
    seconds: float
    score: float
    max_score: float
    error: str = ""


def chapters(root: Path) -> list[str]:
    """The assignment ids: the folders of ``solutions/`` that hold a notebook, in order."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader(root: Path, *args: str, log: Path) -> None:
    """Run ``nbgrader ARGS`` in the course root (where ``nbgrader_config.py`` is), logging to ``log``.

    Raises ``RuntimeError`` with the log's tail when nbgrader fails.
    """
    bindir = Path(sys.executable).parent  # nbgrader runs alembic by name: put the environment first
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(bindir / "nbgrader") if (bindir / "nbgrader").exists() else "nbgrader", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"nbgrader {' '.join(args)} failed with exit code {code}; see {log}\n{tail}")


def generate(root: Path, chapter: str, log: Path) -> None:
    """Regenerate ``notebooks/<chapter>/`` from ``solutions/<chapter>/`` (and register it in the gradebook)."""
    nbgrader(root, "generate_assignment", chapter, "--force", log=log)


def execute_notebook(path: Path, out_path: Path, timeout: int = 3600) -> float:
    """Execute the notebook at ``path`` in its own folder with nbclient; save it with outputs to ``out_path``.

    Returns the seconds it took. Raises ``CellExecutionError`` on the first failing cell (the
    partly executed notebook is saved all the same, to look at).
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_path)
    return time.perf_counter() - started


def fill(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of a released notebook whose solution cells hold ``answers`` (grade_id -> source)."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def solution_cells(source: nbformat.NotebookNode) -> dict[str, str]:
    """grade_id -> source of every solution cell of an instructor notebook."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def submit(root: Path, student: str, chapter: str, notebooks: list[Path]) -> None:
    """Place ``notebooks`` as ``student``'s submission of ``chapter`` (nbgrader's ``submitted/`` layout)."""
    dest = root / "build" / "submitted" / student / chapter
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for nb in notebooks:
        shutil.copy2(nb, dest / nb.name)


def autograde(root: Path, chapter: str, student: str, log: Path) -> float:
    """``nbgrader autograde CHAPTER --student STUDENT``; returns the seconds it took."""
    started = time.perf_counter()
    nbgrader(root, "autograde", chapter, "--student", student, "--force", log=log)
    return time.perf_counter() - started


def score(root: Path, chapter: str, student: str) -> tuple[float, float]:
    """``(score, max_score)`` of ``student``'s submission of ``chapter``, read from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'build' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(chapter, student)
        return sub.score, sub.max_score


def run_chapter(root: Path, chapter: str, device: str, profile: str) -> list[RunResult]:
    """Steps 1-3 for one chapter; returns its two rows of the summary table."""
    log = root / "build" / "logs" / f"{chapter}.log"
    log.unlink(missing_ok=True)
    generate(root, chapter, log)
    executed, errors, seconds = [], [], 0.0
    for nb in sorted((root / "solutions" / chapter).glob("*.ipynb")):
        out = root / "build" / "executed" / chapter / nb.name
        print(f"[{chapter}] executing {nb.name} ({profile}, {device})", flush=True)
        try:
            seconds += execute_notebook(nb, out)
        except CellExecutionError as err:
            errors.append(f"{nb.name}: {str(err).strip().splitlines()[-1]}")
        executed.append(out)
    rows = []
    for student, notebooks in ((SOLUTION, executed),
                               (BLANK, sorted((root / "notebooks" / chapter).glob("*.ipynb")))):
        submit(root, student, chapter, notebooks)
        print(f"[{chapter}] autograding the {student} notebooks", flush=True)
        graded_seconds = autograde(root, chapter, student, log)
        points, possible = score(root, chapter, student)
        rows.append(RunResult(chapter, student, device, profile,
                              seconds if student == SOLUTION else graded_seconds, points, possible,
                              "; ".join(errors) if student == SOLUTION else ""))
    return rows


def device_and_profile() -> tuple[str, str]:
    """What ``course_lib.runtime`` picks here, asked of a child process (this side never imports torch)."""
    out = subprocess.check_output([sys.executable, "-c", "from course_lib import runtime; "
                                   "print(runtime.get_device(), runtime.profile())"], text=True)
    device, profile = out.split()[-2:]
    return device, profile


def problems(rows: list[RunResult]) -> list[str]:
    """What is wrong with a run: solutions must execute and get full marks, blanks must get 0."""
    found = []
    for r in rows:
        if r.error:
            found.append(f"{r.chapter}: the solution raised an error: {r.error}")
        if r.run == SOLUTION and r.score != r.max_score:
            found.append(f"{r.chapter}: the solution scored {r.score:g} of {r.max_score:g}")
        if r.run == BLANK and r.score != 0:
            found.append(f"{r.chapter}: the blank notebook scored {r.score:g} of {r.max_score:g}, not 0")
    return found


def summary_table(rows: list[RunResult]) -> str:
    """The summary as a markdown table."""
    lines = ["| chapter | run | device | profile | seconds | points |", "|---|---|---|---|---:|---:|"]
    lines += [f"| {r.chapter} | {r.run} | {r.device} | {r.profile} | {r.seconds:.1f} | "
              f"{r.score:g} / {r.max_score:g} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course repository (default: .)")
    parser.add_argument("--chapters", nargs="*", help="chapter ids to run (default: all)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    # Kernels inherit the environment: fix the device and profile once, for every notebook.
    device, profile = device_and_profile()
    os.environ["COURSE_DEVICE"], os.environ["COURSE_PROFILE"] = device, profile
    wanted = args.chapters or chapters(root)
    unknown = sorted(set(wanted) - set(chapters(root)))
    if unknown:
        parser.error(f"no such chapter(s): {', '.join(unknown)}; available: {', '.join(chapters(root))}")
    rows = [row for chapter in wanted for row in run_chapter(root, chapter, device, profile)]
    table = summary_table(rows)
    (root / "build" / "summary.md").write_text(table + "\n", encoding="utf-8")
    print("\n" + table)
    found = problems(rows)
    for p in found:
        print(f"PROBLEM: {p}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
