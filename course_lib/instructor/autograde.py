"""One submission, graded in a worker process by nbgrader's own ``AutogradeApp``.

nbgrader's pipeline with five changes: :class:`~.preprocessors.CopiedCells` before ``DeduplicateIds``,
:class:`~.preprocessors.RestoreCellMetadata` before ``OverwriteCells``, :class:`~.preprocessors.SkipExperiments`
before execution, the kernel started by :class:`~.sandbox.SandboxProvisioner` (in a scratch copy of its
folder, so nbgrader's own folder is never one the kernel had) through :class:`~.execute.GuardedExecute`
(outputs bounded), and :class:`~.preprocessors.Verdict` after execution.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

from course_lib.grading.report import ENV as REPORT_ENV

from . import sandbox, verdict
from .execute import GuardedExecute
from .gradebook import load_course
from .preprocessors import CopiedCells, RestoreCellMetadata, SkipExperiments, Verdict


@dataclass
class Job:
    """What a worker needs to grade one submission (or, with ``record``, the instructor's trusted run)."""

    root: str
    assignment: str
    student: str
    staging: str  # replaces CourseDirectory.submitted_directory
    db: str  # the private gradebook
    log: str
    sandbox: bool
    timeout: int | None
    limits: sandbox.Limits
    slot: int
    expected_dir: str  # the trusted run's records (read, or written with record=True)
    findings: str = ""  # where the policy findings go (JSON lines)
    autograded: str = ""  # replaces CourseDirectory.autograded_directory (the trusted run's own folder)
    skip_experiments: bool = True
    record: bool = False
    ready_file: str = ""  # exists once the trusted run beside this one has recorded its values ("": it has)
    failed_file: str = ""  # exists if that trusted run failed


def config(job: Job):
    """nbgrader's autograde pipeline with this course's four changes, and the sandbox's limits."""
    from traitlets.config import Config

    course = load_course(Path(job.root))
    source_dir = str(Path(job.root, course.source, job.assignment))
    cfg = Config()
    cfg.Autograde.sanitize_preprocessors = [ClearOutput, CopiedCells, DeduplicateIds, OverwriteKernelspec,
                                            RestoreCellMetadata, OverwriteCells, CheckCellMetadata]
    cfg.CopiedCells.update(source_dir=source_dir, findings_file=job.findings)
    cfg.Autograde.autograde_preprocessors = (
        [SkipExperiments, GuardedExecute] + ([] if job.record else [Verdict])
        + [IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata])
    cfg.SkipExperiments.source_dir = source_dir if job.skip_experiments else ""
    cfg.GuardedExecute.shutdown_kernel = "immediate"  # every output is in: no graceful exit to wait for
    cfg.Verdict.update(source_dir=source_dir, policy_dir=str(Path(job.root, "policies", job.assignment)),
                       expected_dir=job.expected_dir, findings_file=job.findings, ready_file=job.ready_file,
                       failed_file=job.failed_file)
    lim = job.limits
    cfg.SandboxProvisioner.update(memory=lim.memory, processes=lim.processes, cpu_seconds=lim.cpu_seconds,
                                  run_uid=sandbox.SANDBOX_UID + job.slot,
                                  hide=[job.root, os.path.expanduser("~"), course.exchange_root,
                                        course.exchange_cache, str(course.db_path.parent)])
    return cfg


def _reset_peak_memory() -> None:
    """Start measuring this process's peak resident memory afresh (Linux: ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float | None:
    """This process's peak resident memory (``VmHWM``) since :func:`_reset_peak_memory`, in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kb / 1024, 1)


def autograde_one(job: Job) -> tuple[int, float, float | None]:
    """Run nbgrader's ``AutogradeApp`` on one submission; returns (exit status, seconds, the worker's peak
    memory in MB while it graded this submission)."""
    from nbgrader.apps.autogradeapp import AutogradeApp

    started = time.perf_counter()
    _reset_peak_memory()
    os.chdir(job.root)
    os.environ[REPORT_ENV] = "1"  # the kernel's checks report their values (course_lib.grading.report)
    if job.sandbox:
        sandbox.use_sandbox()
    argv = [job.assignment, "--student", job.student, "--force", f"--CourseDirectory.db_url=sqlite:///{job.db}",
            f"--CourseDirectory.submitted_directory={job.staging}"]
    if job.autograded:
        argv.append(f"--CourseDirectory.autograded_directory={job.autograded}")
    if job.timeout:
        argv.append(f"--Execute.timeout={job.timeout}")
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
        app.update_config(config(job))
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
        peak = peak_memory_mb()
        print(f"[course grade | INFO] the grader's peak memory for this submission: {peak} MB", flush=True)
        sys.stderr.flush()
    return code, time.perf_counter() - started, peak


def record_trusted(job: Job) -> tuple[int, float, float | None]:
    """The trusted run: grade the instructor's notebooks, keep each graded cell's check reports.

    Writes ``<expected_dir>/<notebook>.json`` (grade_id -> checks). Fails (exit status 1, the reason in
    the log) if a graded cell of the solution does not pass: its values could not be trusted.
    """
    import nbformat

    code, seconds, peak = autograde_one(job)
    if code != 0:
        return code, seconds, peak
    folder = Path(job.autograded, job.student, job.assignment)
    problems, records = [], {}
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        checks = {}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade"):
                checks[meta["grade_id"]] = verdict.trusted_checks(verdict.reports(cell))
                errors = [o for o in cell.outputs if o.output_type == "error"]
                if errors:
                    problems.append(f"{path.stem}/{meta['grade_id']}: {errors[0].ename}: {errors[0].evalue}"[:300])
        records[path.stem] = checks
    verdict.write_records(Path(job.expected_dir), records)
    if problems:
        with open(job.log, "a", encoding="utf-8") as f:
            f.write("[course grade | ERROR] the instructor's solution fails its own tests, so its values "
                    "cannot be trusted: " + "; ".join(problems) + "\n")
        return 1, seconds, peak
    return 0, seconds, peak
