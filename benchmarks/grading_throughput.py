"""Grading throughput: sequential ``nbgrader autograde`` against ``course grade`` (sandbox on and off).

The same submissions of one chapter (default 40 copies of the solved student notebook of
``03_initialization``, in the quick profile) are graded three ways, each in its own copy of the course:

1. ``nbgrader autograde CHAPTER`` (nbgrader's sequential autograde);
2. ``course grade CHAPTER --workers N`` (sandbox on);
3. ``course grade CHAPTER --workers N --no-sandbox``.

3 is timed only with ``--no-sandbox-run``. It prints submissions per minute for each, the speed-up of 2 over
1 (target: at least 5x on 2 cores, since ``course grade`` skips the cells tagged ``experiment``, which
nbgrader runs) and the cost of the sandbox (2 against 3; target: under 10 %), checks that the gradebooks
agree, and names the device and the machine's load average (other processes slow every figure down).

    python benchmarks/grading_throughput.py [--submissions 40] [--workers N] [--chapter 03_initialization]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from course_lib import runtime  # noqa: E402
from course_lib.instructor import build, gradebook  # noqa: E402

BIN = Path(sys.executable).parent


def solved_submission(course: Path, chapter: str) -> dict[str, nbformat.NotebookNode]:
    """Each released notebook of ``chapter`` with the solution cells of the source filled in."""
    return {rel.name: build.fill(nbformat.read(rel, as_version=4),
                                 build.solution_cells(nbformat.read(course / "solutions" / chapter / rel.name, 4)))
            for rel in sorted((course / "notebooks" / chapter).glob("*.ipynb"))}


def make_course(dest: Path, chapter: str, n: int) -> None:
    """A private copy of the course with ``chapter`` generated and ``n`` identical solved submissions."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", "build", "data", ".git", "*.egg-info",
                                                              "__pycache__", ".pytest_cache"))
    (dest / "build").mkdir()
    run(["nbgrader", "generate_assignment", chapter, "--force"], dest)
    notebooks = solved_submission(dest, chapter)
    for i in range(n):
        folder = dest / "build" / "submitted" / f"student{i:03d}" / chapter
        folder.mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / name)


def run(cmd: list[str], cwd: Path) -> float:
    """Run a command of this environment in ``cwd``; returns wall seconds (output to ``cwd/bench.log``)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("COURSE_DATA", str(ROOT / "data"))
    env.setdefault("COURSE_PROFILE", "quick")
    started = time.perf_counter()
    with open(cwd / "bench.log", "a") as log:
        code = subprocess.call([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code not in (0, 1):
        raise SystemExit(f"{cmd} failed with {code}; see {cwd / 'bench.log'}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chapter", default="03_initialization")
    p.add_argument("--submissions", type=int, default=40)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--keep", action="store_true", help="keep the temporary courses")
    p.add_argument("--no-sandbox-run", action="store_true",
                   help="also time course grade --no-sandbox (the cost of the sandbox)")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="grading-bench-"))
    load_before = os.getloadavg()
    modes = {"nbgrader autograde (sequential)": ["nbgrader", "autograde", args.chapter, "--force"],
             f"course grade --workers {args.workers}": ["course", "grade", args.chapter, "--workers", str(args.workers)],
             f"course grade --workers {args.workers} --no-sandbox": ["course", "grade", args.chapter, "--workers",
                                                                    str(args.workers), "--no-sandbox"]}
    if not args.no_sandbox_run:
        modes.popitem()
    results, books = {}, {}
    try:
        for i, (name, cmd) in enumerate(modes.items()):
            course = tmp / f"course{i}"
            make_course(course, args.chapter, args.submissions)
            seconds = run(cmd, course)
            results[name] = seconds
            books[name] = gradebook.snapshot(f"sqlite:///{course / 'build' / 'gradebook.db'}", args.chapter)
            print(f"{name}: {seconds:.1f} s, {60 * args.submissions / seconds:.2f} submissions/min", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    seq, par, *raw = results.values()
    scores = {n: sorted((s["score"], s["max_score"]) for s in b.values()) for n, b in books.items()}
    same = len({json.dumps(b, sort_keys=True, default=str) for b in
                [{k: {**v, "timestamp": None} for k, v in b.items()} for b in books.values()]}) == 1
    print(f"\ndevice: {runtime.device_name('cpu')}; load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"chapter {args.chapter}, {args.submissions} submissions, {args.workers} workers, profile "
          f"{os.environ.get('COURSE_PROFILE', 'quick')}")
    print("| mode | seconds | submissions/min |\n|---|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} | {60 * args.submissions / seconds:.2f} |")
    print(f"\nspeed-up of course grade over sequential nbgrader: {seq / par:.2f}x "
          f"(target >= 5x on 2 cores: course grade skips the cells tagged `experiment`, nbgrader runs them)")
    if raw:
        print(f"sandbox cost against --no-sandbox: {100 * (par - raw[0]) / raw[0]:+.1f} % (target < 10 %)")
    print(f"the {len(books)} gradebooks agree: {same}; scores: {scores[next(iter(scores))][:3]} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
