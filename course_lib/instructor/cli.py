"""The ``course`` command: the instructor's side of the course, on top of nbgrader.

- ``course build [CHAPTER ...]``: the instructor solution run (``make course``): generate, execute,
  autograde, summarise (see :mod:`course_lib.instructor.build`);
- ``course record [CHAPTER ...]``: record the visible tests' expected values from the instructor's
  solution into ``solutions/<chapter>/recorded.json`` (``make notebooks`` runs it before generating);
- ``course release [--released CHAPTER ...]``: the student release, without the answers (see
  :mod:`course_lib.instructor.release`);
- ``course data``: make sure a dataset is available (Debian's Fashion-MNIST, a download, or the fallback);
- ``course grade ASSIGNMENT``: autograde every submission in ``submitted/<student>/<assignment>/`` in
  parallel, each kernel in a bubblewrap sandbox, each verdict decided outside the kernel, into nbgrader's
  gradebook (see :mod:`course_lib.instructor.grade`);
- ``course feedback ASSIGNMENT``: nbgrader's ``generate_feedback``, hidden tests' code removed;
- ``course export``: nbgrader's ``export`` to a CSV file, with the policy findings for review.

Run it in the course root (the folder of ``nbgrader_config.py``), or pass ``--root``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .sandbox import Limits, bwrap_problem, parse_size


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    limits = Limits()
    p = argparse.ArgumentParser(prog="course", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path.cwd(), help="the course root (default: the current folder)")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="the instructor solution run: generate, execute, autograde, summarise")
    b.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    r = sub.add_parser("record", help="record the visible tests' expected values from the instructor's solution")
    r.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    rel = sub.add_parser("release", help="build the student release: notebooks and a course_lib without the answers")
    rel.add_argument("--released", nargs="*", default=[], metavar="CHAPTER",
                     help="chapters whose reference answers to include (their deadline has passed; default: none)")
    rel.add_argument("--out", type=Path, default=Path("build/release"), help="the release folder (default build/release)")
    rel.add_argument("--check", nargs="*", metavar="CHAPTER",
                     help="then install it in a fresh virtual environment (build/release-env) and run these "
                          "chapters' notebooks there, solved and blank (no chapter given: all)")
    sub.add_parser("data", help="make sure a dataset is available")
    g = sub.add_parser("grade", help="autograde every submission of an assignment (parallel, sandboxed)")
    g.add_argument("assignment")
    g.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="submissions graded at once (default: the number of cores, %(default)s here)")
    g.add_argument("--timeout", type=_positive, default=None,
                   help="seconds per cell (default: Execute.timeout of nbgrader_config.py)")
    g.add_argument("--memory", type=parse_size, default=limits.memory,
                   help="memory per submission, e.g. 4G, 512M (default 4G)")
    g.add_argument("--processes", type=_positive, default=limits.processes,
                   help="processes and threads per submission (%(default)s)")
    g.add_argument("--cpu-time", type=_positive, default=limits.cpu_seconds,
                   help="CPU seconds per kernel process (%(default)s)")
    g.add_argument("--run-experiments", action="store_true",
                   help="also run the cells tagged `experiment` (by default they are skipped: no grade depends on them)")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run student code WITHOUT isolation, as you, with access to everything you can read")
    g.add_argument("--force", action="store_true", help="regrade submissions already graded by an earlier run")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")
    f = sub.add_parser("feedback", help="nbgrader generate_feedback, without the hidden tests' code")
    f.add_argument("assignment")
    f.add_argument("--student", help="only this student")
    e = sub.add_parser("export", help="nbgrader export: every grade to a CSV file, with findings for review")
    e.add_argument("--to", type=Path, default=Path("grades.csv"), help="the CSV file (default grades.csv)")
    return p


def _grade(args, root: Path) -> int:
    from . import grade

    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code runs unisolated, as this user: it can read the gradebook, "
              "the solutions and other submissions, use the network and write anywhere you can.", file=sys.stderr)
    else:
        problem = bwrap_problem()
        if problem:
            print(f"course grade: {problem}", file=sys.stderr)
            return 2
    limits = Limits(memory=args.memory, processes=args.processes, cpu_seconds=args.cpu_time)
    outcomes = grade.grade(root, args.assignment, workers=args.workers, timeout=args.timeout, limits=limits,
                           sandbox=not args.no_sandbox, force=args.force, students=args.student,
                           skip_experiments=not args.run_experiments)
    print("\n" + grade.report(outcomes))
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        print(f"\n{len(errors)} submission(s) could not be graded (see the messages above); "
              "the others are in the gradebook.")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bindir = os.path.dirname(sys.executable)  # nbgrader runs alembic by name
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    root = args.root.resolve()
    if args.command == "build":
        from . import build

        return build.main(["--root", str(root)] + (["--chapters", *args.chapters] if args.chapters else []))
    if args.command == "record":
        from .build import chapters
        from .record import record

        for chapter in args.chapters or chapters(root):
            path = record(root, chapter)
            print(f"{chapter}: {path.relative_to(root) if path else 'no recorded checks'}")
        return 0
    if args.command == "release":
        from . import release

        out = args.out if args.out.is_absolute() else root / args.out
        code = release.main(root, out, args.released)
        if args.check is None:
            return code
        from .build import chapters
        from .release_check import check

        problems = check(root, out, out.parent / "release-env", args.check or chapters(root))
        print("\n".join(["", f"{len(problems)} problem(s):", *problems] if problems else ["", "the release works"]))
        return 1 if problems else 0
    if args.command == "data":
        return subprocess.call([sys.executable, "-m", "course_lib.data"], cwd=root)
    if args.command == "grade":
        return _grade(args, root)
    from . import feedback

    if args.command == "feedback":
        return feedback.feedback(root, args.assignment, args.student)
    to = args.to if args.to.is_absolute() else root / args.to
    print(f"wrote {feedback.export(root, to)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
