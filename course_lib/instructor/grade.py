"""``course grade``: nbgrader's autograde, in parallel, sandboxed, resumable.

How a run works (:func:`grade`):

1. the submissions are nbgrader's ``submitted/<student>/<assignment>/`` folders; each is checked
   (:func:`preflight`: notebooks that are not JSON, nested too deeply, too large) and staged into
   ``<gradebook folder>/grading/<assignment>/staging/`` without symlinks and without files larger than
   nbgrader's ``CourseDirectory.max_file_size`` (each skipped file is reported);
2. the trusted expected values of the assignment's checks are recorded once, by grading the instructor's
   solution notebooks the same way (:mod:`course_lib.instructor.verdict`), and cached; that run takes the
   first worker while the others start on submissions, whose verdicts wait for its records (if it fails,
   the run stops and the submissions beside it are tried again next time);
3. ``N`` worker processes (forked, nbgrader already imported) each run nbgrader's ``AutogradeApp`` on one
   submission at a time, against a *private copy* of the gradebook (:mod:`course_lib.instructor.autograde`);
4. the parent process alone writes the real gradebook (:func:`~.gradebook.merge`), one submission at a time;
5. after each merge a line goes to ``journal.jsonl``; a rerun skips submissions whose files and options
   are unchanged and already merged. A submission is marked as started before it is graded, so one that
   crashed the grader twice is reported as an error instead of being retried forever.
"""
from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from . import policy, verdict
from .autograde import Job, autograde_one, record_trusted
from .gradebook import Course, Journal, copy_db, load_course, merge
from .sandbox import Limits, die_with_parent

TRUSTED = "__instructor__"  # the trusted run's student id (its own gradebook copy and folders)


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
    peak_mb: float | None = None  # the grading worker's peak resident memory while it graded this submission


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


MAX_DEPTH = 64  # JSON nesting; real notebooks stay under 20, and deeper ones crash parsers (RecursionError)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(raw: bytes, chunk: int = 1 << 20) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, without parsing it (no recursion), a chunk
    at a time (the grader's memory stays about twice the file's size)."""
    import numpy as np

    brackets = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(brackets), chunk):
        part = brackets[start:start + chunk]
        step = np.isin(part, (ord("["), ord("{"))).astype(np.int64) - np.isin(part, (ord("]"), ord("}")))
        running = np.cumsum(step) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def preflight(staged: Path, notebooks: list[str]) -> str | None:
    """A reason not to start a kernel for this submission (nbgrader could not read it), or None."""
    for name in notebooks:
        path = staged / f"{name}.ipynb"
        if path.exists():
            depth = json_depth(path.read_bytes())
            if depth > MAX_DEPTH:
                return f"{name}.ipynb is nested {depth} levels deep (a notebook needs fewer than {MAX_DEPTH})"
    return None


def diagnose(staged: Path, notebooks: list[str], log: Path) -> str:
    """A one-line reason why nbgrader could not grade a submission; never raises."""
    try:
        return preflight(staged, notebooks) or _diagnose(staged, notebooks, log)
    except Exception as err:  # noqa: BLE001 - whatever the bytes, the run goes on
        return f"the submission could not be read ({type(err).__name__}: {str(err)[:200]}); see {log}"


def _diagnose(staged: Path, notebooks: list[str], log: Path) -> str:
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


def _cells(db_url: str, assignment: str, student: str) -> tuple[float, float, dict]:
    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        cells = {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades}
        return sub.score, sub.max_score, cells


@dataclass
class Trusted:
    """The trusted run of an assignment: where its records go, and the job that makes them (``None``: cached)."""

    expected: Path
    job: Job | None = None
    fingerprint: str = ""

    @property
    def stamp(self) -> Path:
        """Written, with the fingerprint, once the records are complete."""
        return self.expected.parent / "fingerprint"

    @property
    def failed(self) -> Path:
        """Written if the run fails."""
        return self.expected.parent / "failed"


def _trusted(course: Course, assignment: str, state: Path, options: dict) -> Trusted:
    """The trusted run's records if they are up to date, else a fresh folder and the job that fills it."""
    source = Path(course.root, course.source, assignment)
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for p in sorted(source.glob("*.ipynb")) + sorted(q for q in package.rglob("*.py") if "instructor" not in q.parts):
        h.update(p.name.encode() + p.read_bytes())
    h.update(os.environ.get("COURSE_PROFILE", "").encode())
    folder = state / "trusted"
    cached = Trusted(folder / "expected")
    if cached.stamp.exists() and cached.stamp.read_text() == h.hexdigest():
        check_trusted(cached)
        return cached
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "expected").mkdir(parents=True)
    staging = folder / "submitted"
    for nb in source.glob("*.ipynb"):
        (staging / TRUSTED / assignment).mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, staging / TRUSTED / assignment / nb.name)
    db = folder / "gradebook.db"
    copy_db(course.db_path, db)
    job = Job(str(course.root), assignment, TRUSTED, str(staging), str(db), str(folder / "trusted.log"),
              options["sandbox"], options["timeout"], Limits(**options["limits"]), 0, str(folder / "expected"),
              autograded=str(folder / "autograded"), skip_experiments=options["skip_experiments"], record=True)
    return Trusted(folder / "expected", job, h.hexdigest())


def check_trusted(trusted: Trusted) -> None:
    """Stop the run if a trusted record no longer matches its checksum (never grade against it)."""
    try:
        verdict.check_records(trusted.expected)
    except verdict.TrustedRecordChanged as err:
        raise SystemExit(f"course grade: {err}") from None


def _trusted_done(trusted: Trusted, code: int, seconds: float, echo) -> None:
    """Mark the trusted run complete (the submissions beside it may now compare), or stop the run."""
    if code != 0:
        trusted.failed.write_text("failed")
        log = Path(trusted.job.log).read_text(encoding="utf-8", errors="replace").splitlines()
        reason = next((ln for ln in reversed(log) if "[course grade | ERROR]" in ln), "see " + trusted.job.log)
        raise SystemExit(f"course grade: the trusted run of {trusted.job.assignment} failed: {reason}")
    check_trusted(trusted)
    trusted.stamp.write_text(trusted.fingerprint)
    echo(f"  trusted values recorded in {seconds:.1f} s")


def review(findings: Path) -> list[str]:
    """The policy findings of one submission, one line each (for the report)."""
    if not findings.exists():
        return []
    lines = []
    for raw in findings.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            f = json.loads(raw)
            lines.append(f"{f['kind']}: {f['notebook']}: {f['message']}")
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(set(lines))


def grade(root: Path, assignment: str, *, workers: int | None = None, timeout: int | None = None,
          limits: Limits = Limits(), sandbox: bool = True, force: bool = False, students: list[str] | None = None,
          skip_experiments: bool = True, echo=print) -> list[Outcome]:
    """Grade every submission of ``assignment`` into the course's gradebook; returns one outcome each."""
    course = load_course(root)
    workers = workers or os.cpu_count() or 1
    with Gradebook(course.db_url) as gb:
        try:
            notebooks = [nb.name for nb in gb.find_assignment(assignment).notebooks]
        except MissingEntry:
            raise SystemExit(f"assignment {assignment!r} is not in the gradebook {course.db_path}: "
                             f"run `nbgrader generate_assignment {assignment}` first") from None
    try:
        policy.load(Path(course.root, "policies", assignment))  # a broken policy stops the run before any kernel
    except policy.PolicyError as err:
        raise SystemExit(f"course grade: {err}") from None
    subs = sorted(p for p in Path(course.root, course.submitted).glob(f"*/{assignment}") if p.is_dir())
    if students:
        subs = [p for p in subs if p.parent.name in set(students)]
    state = course.db_path.parent / "grading" / assignment
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)  # the grader's own state: no other user (a sandbox uid included) may even look
    journal = Journal(state / "journal.jsonl")
    policies = sorted(Path(course.root, "policies", assignment).glob("*.yml"))
    options = {"sandbox": sandbox, "timeout": timeout, "limits": asdict(limits), "notebooks": notebooks,
               "skip_experiments": skip_experiments,  # a changed policy regrades every submission
               "policy": hashlib.sha256(b"".join(q.name.encode() + q.read_bytes() for q in policies)).hexdigest()}
    outcomes, todo = [], []
    with Gradebook(course.db_url) as gb:
        merged = {s.student_id for s in gb.assignment_submissions(assignment)}
    for sub in subs:
        student = sub.parent.name
        fp = _fingerprint(sub, options)
        entry = journal.done.get(student)
        if not force and entry and entry.get("fingerprint") == fp and (student in merged or entry["status"] == "error"):
            outcomes.append(Outcome(**{**entry["outcome"], "status": "resumed"}))
        elif not force and journal.crashes(student, fp) >= 2:
            outcome = Outcome(student, "error", message="grading this submission stopped the grader twice; "
                              "it is not tried again (look at it, then use --force)")
            journal.record({"student": student, "fingerprint": fp, "status": "error", "outcome": asdict(outcome)})
            outcomes.append(outcome)
        else:
            todo.append((student, sub, fp))
    if not todo:
        echo(f"nothing to grade: {len(outcomes)} submission(s) already graded (use --force to regrade)")
        return outcomes
    # nbgrader's apps take about 1.5 s to import: once here, and every forked worker inherits them
    import nbgrader.apps.autogradeapp  # noqa: F401

    trusted = _trusted(course, assignment, state, options)
    if trusted.job:
        echo(f"recording the trusted values: grading the instructor's {assignment} notebooks, "
             "beside the first submissions (their verdicts wait for it)")
    template = state / "template.db"
    copy_db(course.db_path, template)  # the one snapshot; workers never touch the real gradebook
    echo(f"grading {len(todo)} submission(s) of {assignment} with {workers} worker(s), "
         f"sandbox {'on' if sandbox else 'OFF'}, experiments {'skipped' if skip_experiments else 'run'}"
         + (f"; {len(outcomes)} already graded" if outcomes else ""))
    max_bytes = course.max_file_size_kb * 1000
    jobs, notes = {}, {}
    for student, sub, fp in todo:
        staged = state / "staging" / student / assignment
        notes[student] = stage(sub, staged, max_bytes)
        for n in notes[student]:
            echo(f"  {student}: {n}")
        problem = preflight(staged, notebooks)
        if problem:  # nbgrader never sees it; the student is still in the gradebook (and the export), at 0
            with Gradebook(course.db_url) as gb:
                gb.update_or_create_student(student)
            outcome = Outcome(student, "error", message=problem, notes=notes[student])
            journal.record({"student": student, "fingerprint": fp, "status": "error", "outcome": asdict(outcome)})
            outcomes.append(outcome)
            echo(_line(outcome))
            continue
        db = state / "db" / f"{student}.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(template, db)
        log = state / "logs" / f"{student}.log"
        findings = state / "findings" / f"{student}.jsonl"
        for path in (log, findings):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
        jobs[student] = (Job(str(course.root), assignment, student, str(state / "staging"), str(db), str(log),
                             sandbox, timeout, limits, 0, str(trusted.expected), str(findings),
                             skip_experiments=skip_experiments,
                             ready_file=str(trusted.stamp) if trusted.job else "",
                             failed_file=str(trusted.failed) if trusted.job else ""), fp, staged)
    _run(course, assignment, jobs, notebooks, notes, journal, workers, outcomes, echo, trusted)
    outcomes.sort(key=lambda o: o.student)
    return outcomes


def _run(course, assignment, jobs, notebooks, notes, journal, workers, outcomes, echo, trusted: Trusted) -> None:
    """Grade ``jobs`` in ``workers`` forked processes; merge and journal each as it finishes.

    If the trusted run must be made, it takes the first worker, and the submissions start beside it: a
    submission's verdict waits for its records (:class:`~.preprocessors.Verdict`), so no core sits idle."""
    slots, queue, pending = list(range(workers)), list(jobs), {}
    new_pool = lambda: cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                              initializer=die_with_parent, initargs=(os.getpid(),))
    pool = new_pool()

    def submit_next():
        student = queue.pop(0)
        job, fp, _ = jobs[student]
        job.slot = slots.pop(0)
        journal.record({"student": student, "fingerprint": fp, "status": "started"})
        pending[pool.submit(autograde_one, job)] = student
    trusted_run, tries = None, 0
    try:
        if trusted.job:
            trusted.job.slot = slots.pop(0)
            trusted_run, tries = pool.submit(record_trusted, trusted.job), 1
            pending[trusted_run] = TRUSTED
        while queue and slots:
            submit_next()
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                student = pending.pop(fut)
                if fut is trusted_run:
                    try:
                        code, seconds, _ = fut.result()
                    except BrokenProcessPool:  # a submission's worker died and took the pool along: once more
                        if tries >= 2:
                            code, seconds = 1, 0.0
                        else:
                            pool = new_pool()
                            trusted_run, tries = pool.submit(record_trusted, trusted.job), tries + 1
                            pending[trusted_run] = TRUSTED
                            continue
                    except Exception:  # noqa: BLE001 - a worker that failed: the run cannot be trusted
                        code, seconds = 1, 0.0
                    slots.append(trusted.job.slot)
                    if code != 0:  # the submissions beside it are not finished: they are tried again next time
                        for other in pending.values():
                            journal.record({"student": other, "fingerprint": jobs[other][1], "status": "cancelled"})
                    _trusted_done(trusted, code, seconds, echo)
                    if queue and slots:
                        if getattr(pool, "_broken", False):
                            pool = new_pool()
                        submit_next()
                    continue
                job, fp, staged = jobs[student]
                slots.append(job.slot)
                try:
                    code, seconds, peak = fut.result()
                except Exception as exc:  # noqa: BLE001 - a broken worker costs one submission
                    code, seconds, peak = 1, 0.0, None
                    with open(job.log, "a", encoding="utf-8") as f:
                        f.write(f"[course grade | ERROR] worker failed: {exc!r}\n")
                if not trusted.job or trusted.stamp.exists():  # before its grade is merged
                    _stop_if_trusted_changed(trusted, pending, jobs, journal, student)
                try:
                    outcome = _finish(course, assignment, job, code, seconds, staged, notebooks, notes[student])
                except Exception as exc:  # noqa: BLE001 - one submission's error never stops the run
                    outcome = Outcome(student, "error", round(seconds, 1), message=f"could not record the grade: "
                                      f"{type(exc).__name__}: {str(exc)[:200]}", notes=list(notes[student]))
                outcome.peak_mb = peak
                journal.record({"student": student, "fingerprint": fp, "status": outcome.status,
                                "outcome": asdict(outcome)})
                outcomes.append(outcome)
                echo(_line(outcome))
                if queue:
                    if getattr(pool, "_broken", False):
                        pool = new_pool()
                    submit_next()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_if_trusted_changed(trusted: Trusted, pending: dict, jobs: dict, journal: Journal, student: str) -> None:
    """After each submission: if a trusted record changed, cancel what runs and stop (no grade is kept from
    a run whose expected values cannot be trusted; the submissions are graded again next time)."""
    try:
        verdict.check_records(trusted.expected)
    except verdict.TrustedRecordChanged as err:
        for other in [student, *pending.values()]:
            if other in jobs:
                journal.record({"student": other, "fingerprint": jobs[other][1], "status": "cancelled"})
        raise SystemExit(f"course grade: {err}") from None


def _finish(course: Course, assignment: str, job: Job, code: int, seconds: float, staged: Path,
            notebooks: list[str], notes: list[str]) -> Outcome:
    """Merge one finished submission (the single writer) and describe it."""
    merged = merge(course.db_url, f"sqlite:///{job.db}", assignment, job.student)
    outcome = Outcome(job.student, "graded" if code == 0 else "error", round(seconds, 1),
                      notes=list(notes) + review(Path(job.findings)))
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
    """The run's summary as a markdown table (policy findings under "for review")."""
    lines = ["| student | status | points | seconds | message | for review |", "|---|---|---:|---:|---|---|"]
    for o in outcomes:
        score = f"{o.score:g} / {o.max_score:g}" if o.score is not None else "-"
        review = [n for n in o.notes if n.split(":")[0] in ("forbidden", "tamper", "flag")]
        msg = "; ".join(([o.message] if o.message else []) + [n for n in o.notes if n not in review])
        lines.append(f"| {o.student} | {o.status} | {score} | {o.seconds:.1f} | {msg} | {'; '.join(review)} |")
    return "\n".join(lines)
