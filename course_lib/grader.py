"""``course grade``: nbgrader's autograde, in parallel, sandboxed, resumable; feedback without hidden tests.

How a run works (``grade``):

1. the submissions are nbgrader's ``submitted/<student>/<assignment>/`` folders; each is staged into
   ``<gradebook folder>/grading/<assignment>/staging/`` without symlinks and without files larger than
   nbgrader's ``CourseDirectory.max_file_size`` (each skipped file is reported);
2. ``N`` worker processes (forked once, nbgrader already imported) each run nbgrader's own
   ``AutogradeApp`` on one submission at a time, against a *private copy* of the gradebook, with two
   changes to nbgrader's pipeline: :class:`RestoreCellMetadata` puts the source's nbgrader metadata back
   on cells a student edited (before nbgrader's ``OverwriteCells``), and ``Execute`` runs the kernel in
   the bubblewrap sandbox of :mod:`course_lib.sandbox` (``--no-sandbox``: nbgrader's plain ``Execute``);
3. the parent process alone writes the real gradebook: it copies what nbgrader wrote for that student
   (submission timestamp, each grade's ``auto_score`` and ``needs_manual_grade``, each comment's
   ``auto_comment``, each notebook's late penalty) from the private copy, one submission at a time;
4. after each merge a line goes to ``journal.jsonl``; a rerun skips submissions whose files and options
   are unchanged and already merged. A run killed at any point loses at most the merges in flight,
   which the rerun redoes: every merge overwrites, so it can be repeated.

``feedback`` is nbgrader's ``generate_feedback`` with :class:`HideHiddenTests` added, which keeps each
hidden test's result and failure message but not its source (nbgrader issue #917). ``export`` is
nbgrader's ``export``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader import utils as nbutils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    GetGrades, IgnorePattern, LimitOutput, NbGraderPreprocessor, OverwriteCells,
                                    OverwriteKernelspec, SaveAutoGrades)

from . import pipeline

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


# ----------------------------------------------------------------------------------------------------
# nbgrader preprocessors
# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# course paths and the gradebook
# ----------------------------------------------------------------------------------------------------
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
    exchange_root: str

    def path(self, folder: str, student: str, assignment: str) -> Path:
        return Path(os.path.join(self.root, folder, student, assignment))


def load_course(root: Path) -> Course:
    """Read ``nbgrader_config.py`` of ``root`` the way nbgrader does (for paths and the gradebook)."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    if not (root / "nbgrader_config.py").exists():
        raise SystemExit(f"no nbgrader_config.py in {root}: run this in the course root or pass --root")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cfg.CourseDirectory.root = str(root)
    cd = CourseDirectory(config=cfg)
    db_url = cd.db_url
    if not db_url.startswith("sqlite:///"):
        raise SystemExit(f"course grade needs an SQLite gradebook, not {db_url}")
    exchange = cfg.Exchange.root if "root" in cfg.Exchange else "/srv/nbgrader/exchange"
    return Course(root, cfg, db_url, Path(db_url[len("sqlite:///"):]), cd.submitted_directory,
                  cd.autograded_directory, cd.source_directory, cd.max_file_size, str(exchange))


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


def _copy_db(src: Path, dest: Path) -> None:
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


# ----------------------------------------------------------------------------------------------------
# one submission (runs in a worker process)
# ----------------------------------------------------------------------------------------------------
@dataclass
class Job:
    """What a worker needs to grade one submission."""

    root: str
    assignment: str
    student: str
    staging: str  # replaces CourseDirectory.submitted_directory
    db: str  # the private gradebook
    log: str
    sandbox: bool
    timeout: int | None
    memory: int
    processes: int
    cpu_seconds: int
    slot: int


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: this process gets SIGKILL when the grader dies (also by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def autograde_one(job: Job) -> tuple[int, float]:
    """Run nbgrader's ``AutogradeApp`` on one submission; returns (exit status, seconds)."""
    from nbgrader.apps.autogradeapp import AutogradeApp
    from traitlets.config import Config

    from . import sandbox

    started = time.perf_counter()
    os.chdir(job.root)
    argv = [job.assignment, "--student", job.student, "--force", f"--CourseDirectory.db_url=sqlite:///{job.db}",
            f"--CourseDirectory.submitted_directory={job.staging}"]
    if job.timeout:
        argv.append(f"--Execute.timeout={job.timeout}")
    cfg = Config()
    execute = sandbox.SandboxedExecute if job.sandbox else sandbox.GuardedExecute
    cfg.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreCellMetadata,
                                            OverwriteCells, CheckCellMetadata]
    cfg.Autograde.autograde_preprocessors = [execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                             SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    course = load_course(Path(job.root))
    cfg.SandboxedKernelManager.update(memory=job.memory, processes=job.processes, cpu_seconds=job.cpu_seconds,
                                      run_uid=60000 + job.slot,
                                      hide=[job.root, os.path.expanduser("~"), course.exchange_root,
                                            str(course.db_path.parent)])
    code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    logfd = os.open(job.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(logfd, 1)  # this worker's output, nbgrader's log and the kernel's own output: the job's log
    os.dup2(logfd, 2)
    os.close(logfd)
    app = AutogradeApp()
    try:
        app.initialize(argv)
        app.update_config(cfg)
        app.start()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - a worker reports, it never dies with the run
        logging.getLogger("course.grade").exception("worker error")
        with open(job.log, "a", encoding="utf-8") as f:
            f.write(f"[course grade | ERROR] {type(exc).__name__}: {exc}\n")
        code = 1
    finally:
        left = sandbox.reap()
        if left:
            print(f"[course grade | WARNING] killed {left} sandbox(es) left running", flush=True)
        try:
            app.deinit_logging()
        except Exception:  # noqa: BLE001
            pass
        AutogradeApp.clear_instance()
        sys.stdout.flush()
        sys.stderr.flush()
    return code, time.perf_counter() - started


# ----------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One line of the run's report."""

    student: str
    status: str  # graded | error | resumed
    seconds: float = 0.0
    score: float | None = None
    max_score: float | None = None
    cells: dict = field(default_factory=dict)
    message: str = ""
    notes: list = field(default_factory=list)


def _fingerprint(folder: Path, options: dict) -> str:
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def stage(src: Path, dest: Path, max_bytes: int) -> list[str]:
    """Copy a submission folder for grading: no symlinks, no file over ``max_bytes``; returns notes."""
    notes = []
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_symlink():
            notes.append(f"skipped {rel}: a symbolic link")
        elif p.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
        elif p.is_file():
            size = p.stat().st_size
            if size > max_bytes:
                notes.append(f"skipped {rel}: {size / 1024 ** 2:.0f} MB is over the {max_bytes / 1000 ** 2:.0f} MB "
                             "limit (CourseDirectory.max_file_size)")
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)
    return notes


def diagnose(staged: Path, notebooks: list[str], log: Path) -> str:
    """A one-line reason why nbgrader could not grade a submission."""
    import nbformat

    present = sorted(p.name for p in staged.glob("*.ipynb"))
    for name in notebooks:
        path = staged / f"{name}.ipynb"
        if not path.exists():
            if not any(f"{n}.ipynb" in present for n in notebooks):
                return f"no {name}.ipynb in the submission (found: {', '.join(present) or 'no notebook'})"
            continue
        raw = path.read_bytes()
        if not raw.strip():
            return f"{name}.ipynb is an empty file"
        try:
            json.loads(raw)
        except ValueError as err:
            return f"{name}.ipynb is not valid JSON ({err})"
        try:
            nbformat.validate(nbformat.reads(raw.decode("utf-8", "replace"), as_version=4))
        except Exception as err:  # noqa: BLE001 - nbformat raises several kinds
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return f"{name}.ipynb is not a valid nbformat 4 notebook: {first}"
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    if "Kernel died" in text or "DeadKernelError" in text:
        return "the kernel died (os._exit, a crash or a resource limit); see " + str(log)
    errors = [ln.strip() for ln in text.splitlines() if re.match(r"\s*\w*(Error|Exception)\b.*:", ln)]
    return (errors[-1] if errors else "nbgrader autograde failed") + f"; see {log}"


class Journal:
    """``journal.jsonl``: one JSON line per merged submission; a torn last line is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self.done[entry["student"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue

    def record(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[entry["student"]] = entry


def _cells(db_url: str, assignment: str, student: str) -> tuple[float, float, dict]:
    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        cells = {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades}
        return sub.score, sub.max_score, cells


def grade(root: Path, assignment: str, *, workers: int | None = None, timeout: int | None = None,
          memory: int = 4 * 1024 ** 3, processes: int = 256, cpu_seconds: int = 3600, sandbox: bool = True,
          force: bool = False, students: list[str] | None = None, echo=print) -> list[Outcome]:
    """Grade every submission of ``assignment`` into the course's gradebook; returns one outcome each."""
    course = load_course(root)
    workers = workers or os.cpu_count() or 1
    with Gradebook(course.db_url) as gb:
        try:
            notebooks = [nb.name for nb in gb.find_assignment(assignment).notebooks]
        except MissingEntry:
            raise SystemExit(f"assignment {assignment!r} is not in the gradebook {course.db_path}: "
                             f"run `nbgrader generate_assignment {assignment}` first") from None
    subs = sorted(p for p in Path(course.root, course.submitted).glob(f"*/{assignment}") if p.is_dir())
    if students:
        subs = [p for p in subs if p.parent.name in set(students)]
    state = course.db_path.parent / "grading" / assignment
    journal = Journal(state / "journal.jsonl")
    options = {"sandbox": sandbox, "timeout": timeout, "memory": memory, "processes": processes,
               "cpu": cpu_seconds, "notebooks": notebooks}
    outcomes, todo = [], []
    with Gradebook(course.db_url) as gb:
        merged = {s.student_id for s in gb.assignment_submissions(assignment)}
    for sub in subs:
        student = sub.parent.name
        fp = _fingerprint(sub, options)
        entry = journal.done.get(student)
        if not force and entry and entry.get("fingerprint") == fp and (student in merged or entry["status"] == "error"):
            outcomes.append(Outcome(**{**entry["outcome"], "status": "resumed"}))
            continue
        todo.append((student, sub, fp))
    if not todo:
        echo(f"nothing to grade: {len(outcomes)} submission(s) already graded (use --force to regrade)")
        return outcomes
    template = state / "template.db"
    _copy_db(course.db_path, template)  # the one snapshot; workers never touch the real gradebook
    echo(f"grading {len(todo)} submission(s) of {assignment} with {workers} worker(s), "
         f"sandbox {'on' if sandbox else 'OFF'}" + (f"; {len(outcomes)} already graded" if outcomes else ""))
    max_bytes = course.max_file_size_kb * 1000
    jobs, notes = {}, {}
    for i, (student, sub, fp) in enumerate(todo):
        staged = state / "staging" / student / assignment
        notes[student] = stage(sub, staged, max_bytes)
        for n in notes[student]:
            echo(f"  {student}: {n}")
        db = state / "db" / f"{student}.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(template, db)
        log = state / "logs" / f"{student}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        jobs[student] = (Job(str(course.root), assignment, student, str(state / "staging"), str(db), str(log),
                             sandbox, timeout, memory, processes, cpu_seconds, 0), fp, staged)
    slots = list(range(workers))
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"), initializer=_die_with_parent)
    try:
        pending = {}
        queue = list(jobs)
        def submit_next():
            student = queue.pop(0)
            job = jobs[student][0]
            job.slot = slots.pop(0)
            pending[pool.submit(autograde_one, job)] = student
        while queue and slots:
            submit_next()
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                student = pending.pop(fut)
                job, fp, staged = jobs[student]
                slots.append(job.slot)
                try:
                    code, seconds = fut.result()
                except Exception as exc:  # noqa: BLE001 - a broken worker costs one submission
                    code, seconds = 1, 0.0
                    with open(job.log, "a", encoding="utf-8") as f:
                        f.write(f"[course grade | ERROR] worker failed: {exc!r}\n")
                outcome = _finish(course, assignment, job, code, seconds, staged, notebooks, notes[student])
                journal.record({"student": student, "fingerprint": fp, "status": outcome.status,
                                "outcome": asdict(outcome)})
                outcomes.append(outcome)
                echo(_line(outcome))
                if queue:
                    if isinstance(pool, cf.ProcessPoolExecutor) and getattr(pool, "_broken", False):
                        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                                      initializer=_die_with_parent)
                    submit_next()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    outcomes.sort(key=lambda o: o.student)
    return outcomes


def _finish(course: Course, assignment: str, job: Job, code: int, seconds: float, staged: Path,
            notebooks: list[str], notes: list[str]) -> Outcome:
    """Merge one finished submission (the single writer) and describe it."""
    merged = merge(course.db_url, f"sqlite:///{job.db}", assignment, job.student)
    outcome = Outcome(job.student, "graded" if code == 0 else "error", round(seconds, 1), notes=list(notes))
    if code != 0:
        outcome.message = diagnose(staged, notebooks, Path(job.log))
    if merged:
        outcome.score, outcome.max_score, outcome.cells = _cells(course.db_url, assignment, job.student)
    Path(job.db).unlink(missing_ok=True)
    return outcome


def _line(o: Outcome) -> str:
    score = f"{o.score:g} / {o.max_score:g}" if o.score is not None else "-"
    text = f"  {o.student:<24} {o.status:<8} {score:>12} {o.seconds:7.1f} s"
    return text + (f"  {o.message}" if o.message else "")


def report(outcomes: list[Outcome]) -> str:
    """The run's summary as a markdown table."""
    lines = ["| student | status | points | seconds | message |", "|---|---|---:|---:|---|"]
    for o in outcomes:
        score = f"{o.score:g} / {o.max_score:g}" if o.score is not None else "-"
        msg = "; ".join(([o.message] if o.message else []) + o.notes)
        lines.append(f"| {o.student} | {o.status} | {score} | {o.seconds:.1f} | {msg} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# feedback and export: nbgrader's own commands
# ----------------------------------------------------------------------------------------------------
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
    """nbgrader ``export`` (CSV of every grade) to ``to``; returns the path."""
    course = load_course(root)
    to = Path(to).resolve()
    pipeline.nbgrader(course.root, "export", "--to", str(to), log=course.db_path.parent / "logs" / "export.log")
    return to


def _main(argv=None) -> int:  # pragma: no cover - debugging entry: python -m course_lib.grader ROOT ASSIGNMENT
    p = argparse.ArgumentParser()
    p.add_argument("root", type=Path)
    p.add_argument("assignment")
    a = p.parse_args(argv)
    print(report(grade(a.root, a.assignment)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
