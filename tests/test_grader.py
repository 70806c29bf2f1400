"""``course grade``, ``course feedback``, ``course export`` for real, on a tiny dedicated assignment.

- the adversarial corpus (``tests/adversarial/cases.py``) graded in one sandboxed run, next to a correct
  submission: every case gets its expected per-cell points or its per-submission error, nothing is
  read, written or reached that should not be, and no process outlives the run;
- the feedback shows hidden tests' results and messages, never their code;
- on a benign corpus, ``course grade --workers 2`` gives exactly the gradebook of nbgrader's own
  sequential ``nbgrader autograde``, and so does a run killed with SIGKILL part way and rerun.

Every test here runs bubblewrap, nbgrader and Jupyter kernels for real, so the module is ``slow``.
"""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="the grader's tests need nbgrader (pip install -e . installs it)")

import nbformat  # noqa: E402

from adversarial import (ASSIGNMENT, BIN, HIDDEN_MARKERS, env, make_course, run, student_notebook,  # noqa: E402
                         submit)
from adversarial.cases import CASES  # noqa: E402
from course_lib.instructor import gradebook, sandbox, verdict  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_required")]
EQUALITY = ["correct", "wrong_hidden", "deleted_test", "edited_test", "stderr_noise", "os_exit", "invalid_json"]


def _journal(course: Path) -> dict:
    path = course / "build" / "grading" / ASSIGNMENT / "journal.jsonl"
    return {e["student"]: e["outcome"] for e in map(json.loads, path.read_text().splitlines())
            if e["status"] != "started"}


def _finished(journal: Path) -> int:
    """Submissions the journal records as merged (not the "started" marks)."""
    return sum(json.loads(line)["status"] != "started" for line in journal.read_text().splitlines() if line.strip())


def _sandbox_processes(course: Path) -> list[str]:
    """Processes of ours still alive: anything whose command line names the course, a kernel run folder,
    or that runs as one of the sandbox uids."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = int(re.search(r"^Uid:\s+(\d+)", (proc / "status").read_text(), re.M).group(1))
        except (OSError, AttributeError):
            continue
        if str(course) in cmd or "/cg-" in cmd or sandbox.SANDBOX_UID <= uid < sandbox.SANDBOX_UID + 100:
            found.append(f"{proc.name} uid={uid}: {cmd[:200]}")
    return found


def _wait_for_no_processes(course: Path, seconds: float = 20) -> list[str]:
    deadline = time.time() + seconds
    while True:
        left = _sandbox_processes(course)
        if not left or time.time() > deadline:
            return left
        time.sleep(0.5)


HOST_TEXT, SECRET_TEXT = "a host file no submission may change\n", "ROOT-ONLY-SECRET-5521\n"


def _visible_folder(tag: str) -> Path:
    """A folder a sandboxed kernel can see (outside /tmp, the homes and the course, which it never sees):
    the targets of the link attacks and an exchange configured there."""
    base = "/var/lib" if os.access("/var/lib", os.W_OK) else sys.prefix
    folder = Path(base) / tag
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "host.txt").write_text(HOST_TEXT)
    os.chmod(folder / "host.txt", 0o644)
    (folder / "secret.txt").write_text(SECRET_TEXT)
    os.chmod(folder / "secret.txt", 0o600)
    planted = folder / "exchange" / "dnn-tricks" / "inbound" / f"alice+{ASSIGNMENT}+2031-01-01 10:00:00 UTC"
    planted.mkdir(parents=True)
    (planted / "hw.ipynb").write_text("alice's submission")
    (folder / "jupyter").mkdir()  # a Jupyter config folder: nbgrader reads it before the course's config
    (folder / "jupyter" / "nbgrader_config.py").write_text(f"c.Exchange.root = {str(folder / 'exchange')!r}\n")
    return folder


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    """The whole corpus graded in one sandboxed run; returns (course, outcomes, ctx, completed process)."""
    course = make_course(tmp_path_factory.mktemp("adv") / "course")
    home = Path(os.path.expanduser("~"))
    tag = f"course-grade-test-{os.getpid()}"
    visible = _visible_folder(tag)
    expected = course / "build" / "grading" / ASSIGNMENT / "trusted" / "expected"
    ctx = {"home_secret": str(home / f".{tag}-secret"), "home_marker": str(home / f".{tag}-pwned"),
           "tmp_marker": f"/tmp/{tag}-pwned", "visible": str(visible), "host_file": str(visible / "host.txt"),
           "root_only": str(visible / "secret.txt"), "exchange": str(visible / "exchange"),
           "trusted": str(expected / "hw.json"), "trusted_sums": str(expected / verdict.SUMS),
           "gradebook": str(course / "build" / "gradebook.db")}
    Path(ctx["home_secret"]).write_text("the instructor's secret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    ctx["port"] = server.getsockname()[1]
    for case in CASES:
        submit(course, case.name, case.build(course, ctx), timestamp="2031-01-01 10:00:00.000000 UTC")
    started = time.perf_counter()
    try:
        proc = run(["course", "grade", ASSIGNMENT, "--workers", "2", "--memory", "2G", "--processes", "64"], cwd=course,
                   check=False, timeout=1500, env={"JUPYTER_CONFIG_DIR": str(visible / "jupyter")})
    finally:
        server.close()
        Path(ctx["home_secret"]).unlink(missing_ok=True)
    print(f"adversarial run: {time.perf_counter() - started:.0f} s\n{proc.stdout}")
    yield course, _journal(course), ctx, proc
    for p in (ctx["home_marker"], ctx["tmp_marker"]):
        Path(p).unlink(missing_ok=True)
    shutil.rmtree(visible, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adversarial_case(adversarial, case):
    course, outcomes, _, proc = adversarial
    assert case.name in outcomes, f"{case.name} missing from the run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    got = outcomes[case.name]
    if case.error:
        assert got["status"] == "error", got
        assert case.error.lower() in got["message"].lower(), got
    else:
        assert got["status"] == "graded", got
        assert got["cells"] == case.expect, (case.what, got)
    if case.note:
        assert any(case.note in n for n in got["notes"]), got


def test_adversarial_run_as_a_whole(adversarial):
    """The run finished with a report, graded every case, and wrote nowhere it should not."""
    course, outcomes, ctx, proc = adversarial
    assert set(outcomes) == {c.name for c in CASES}
    assert proc.returncode == 1 and "could not be graded" in proc.stdout  # the error cases, reported
    for path in (ctx["tmp_marker"], ctx["home_marker"], course / "PWNED",
                 course / "build" / "submitted" / "correct" / ASSIGNMENT / "PWNED"):
        assert not Path(path).exists(), f"a submission wrote {path}"
    # the kernel wrote in its own scratch copy (write_outside scored FULL), which is not kept
    assert not (course / "build" / "autograded" / "write_outside" / ASSIGNMENT / "mine.txt").exists()
    assert not (course / "build" / "autograded" / "huge_file" / ASSIGNMENT / "weights.bin").exists()
    assert not _wait_for_no_processes(course), "processes outlived the run"


def test_no_submission_changes_a_file_outside_its_graded_copy(adversarial):
    """The a_link_* cases left links to a host file, the trusted records, the gradebook and a root-only file
    where nbgrader writes and chmods: every target is intact, and nbgrader's folders hold no link."""
    course, outcomes, ctx, proc = adversarial
    host, secret = Path(ctx["host_file"]), Path(ctx["root_only"])
    assert host.read_text() == HOST_TEXT and host.stat().st_mode & 0o777 == 0o644
    assert secret.read_text() == SECRET_TEXT and secret.stat().st_mode & 0o777 == 0o600
    verdict.check_records(Path(ctx["trusted"]).parent)  # raises if a record changed
    assert json.loads(Path(ctx["trusted"]).read_text()).keys() == {"test_square", "test_scale", "test_mean"}
    with sqlite3.connect(ctx["gradebook"]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert os.stat(ctx["gradebook"]).st_mode & 0o222, "the gradebook was made read-only"
    grades = gradebook.snapshot(f"sqlite:///{ctx['gradebook']}", ASSIGNMENT)
    assert grades["correct"]["score"] == 4 and grades["zz_read_root_only"]["score"] == 4, proc.stdout[-3000:]
    links = [p for p in (course / "build").rglob("*") if p.is_symlink()]
    assert not links, f"links in the grader's folders: {links[:5]}"


def test_a_flood_of_output_costs_its_cell_not_the_graders_memory(adversarial):
    """1 GB of display output: the submission is graded, its notebook is small, and the grading worker's
    peak memory stays within 100 MB of the worker that graded the correct submission."""
    course, outcomes, _, _ = adversarial
    flood, correct = outcomes["output_flood"], outcomes["correct"]
    print(f"grader peak memory: flood {flood['peak_mb']} MB, correct {correct['peak_mb']} MB")
    assert flood["peak_mb"] is not None and correct["peak_mb"] is not None, (flood, correct)
    assert flood["peak_mb"] < correct["peak_mb"] + 100, (flood["peak_mb"], correct["peak_mb"])
    graded = course / "build" / "autograded" / "output_flood" / ASSIGNMENT / "hw.ipynb"
    assert graded.stat().st_size < 15 * 1000 ** 2
    assert "OutputLimitExceeded" in graded.read_text(encoding="utf-8")


def test_feedback_shows_results_not_hidden_code(adversarial):
    course, outcomes, _, _ = adversarial
    proc = run(["course", "feedback", ASSIGNMENT], cwd=course, check=False)
    pages = sorted((course / "build" / "feedback").glob(f"*/{ASSIGNMENT}/hw.html"))
    graded = [s for s, o in outcomes.items() if o["status"] == "graded"]
    assert {p.parent.parent.name for p in pages} >= set(graded), proc.stdout + proc.stderr
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        for marker in HIDDEN_MARKERS:
            assert marker not in text, f"{page}: hidden test code ({marker}) leaked into the feedback"
    wrong = html.unescape(re.sub(r"<[^>]+>", "", (course / "build" / "feedback" / "wrong_hidden" / ASSIGNMENT /
                                                  "hw.html").read_text(encoding="utf-8")))
    assert "square of a negative number is wrong" in wrong  # the hidden test's failure message
    assert "hidden tests: their results are below" in wrong
    assert "square(3) should be 9" in wrong  # visible tests stay visible


def test_export_writes_csv(adversarial):
    course, outcomes, _, _ = adversarial
    run(["course", "export", "--to", "grades.csv"], cwd=course)
    rows = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv", encoding="utf-8"))}
    assert set(rows) == set(outcomes)
    assert float(rows["correct"]["raw_score"]) == 4 and float(rows["wrong_hidden"]["raw_score"]) == 3
    assert rows["correct"]["review"] == ""
    assert "tamper" in rows["input_transformer"]["review"] and "get_ipython" in rows["input_transformer"]["review"]
    assert "forbidden" in rows["delegate_library"]["review"] and "torch.mul" in rows["delegate_library"]["review"]
    assert "flag" in rows["network"]["review"] and "socket" in rows["network"]["review"]


def test_feedback_says_why_a_policy_cell_scored_zero(adversarial):
    course, _, _, _ = adversarial
    run(["course", "feedback", ASSIGNMENT, "--student", "delegate_library"], cwd=course, check=False)
    page = course / "build" / "feedback" / "delegate_library" / ASSIGNMENT / "hw.html"
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    assert "uses torch.mul" in text and "which this exercise forbids" in text


def test_a_hung_cell_costs_only_that_cell_within_a_bounded_time(adversarial):
    """The kernel that ignores interrupts is restarted: its submission is graded, in bounded time."""
    _, outcomes, _, _ = adversarial
    got = outcomes["ignores_interrupt"]
    assert got["status"] == "graded" and got["cells"] == {"test_square": 1.0, "test_scale": 2.0, "test_mean": 1.0}
    assert got["seconds"] < 3 * 45 + 60, got  # timeout + grace + restart, not a timeout per later cell


def test_refuses_without_bubblewrap_and_warns_without_sandbox(tmp_path):
    course = tmp_path / "empty"
    course.mkdir()
    shutil.copy(Path(__file__).parents[1] / "nbgrader_config.py", course)
    proc = subprocess.run([str(BIN / "course"), "grade", ASSIGNMENT], cwd=course, capture_output=True, text=True,
                          env={**env(), "PATH": str(tmp_path / "nothing")})
    assert proc.returncode == 2 and "apt-get install bubblewrap" in proc.stderr and "--no-sandbox" in proc.stderr
    proc = subprocess.run([str(BIN / "course"), "grade", ASSIGNMENT, "--no-sandbox"], cwd=course,
                          capture_output=True, text=True, env=env())
    assert "WARNING: --no-sandbox" in proc.stderr


# ----------------------------------------------------------------------------------------------------
# exactly nbgrader's grades, also after SIGKILL
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    """Three identical copies of a course with the benign corpus submitted."""
    base = tmp_path_factory.mktemp("eq")
    course = make_course(base / "seq")
    for i, case in enumerate(c for c in CASES if c.name in EQUALITY):
        submit(course, case.name, case.build(course, {}), timestamp=f"2031-01-0{1 + i % 3} 10:00:00.000000 UTC")
    for name in ("par", "killed"):
        shutil.copytree(course, base / name, symlinks=True)
        cfg = base / name / "nbgrader_config.py"  # the config names its own folder: nothing to change
        assert cfg.exists()
    return base


def test_parallel_grades_equal_sequential_nbgrader(benign):
    seq, par = benign / "seq", benign / "par"
    run(["nbgrader", "autograde", ASSIGNMENT, "--force"], cwd=seq, check=False)  # exits 1: two bad submissions
    run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=par, check=False)
    want = gradebook.snapshot(f"sqlite:///{seq / 'build' / 'gradebook.db'}", ASSIGNMENT)
    got = gradebook.snapshot(f"sqlite:///{par / 'build' / 'gradebook.db'}", ASSIGNMENT)
    assert set(want) == set(EQUALITY)
    assert got == want
    assert want["correct"]["score"] == 4 and want["wrong_hidden"]["score"] == 3  # not a vacuous comparison


def test_sigkill_then_rerun_gives_the_same_gradebook(benign):
    killed, seq = benign / "killed", benign / "seq"
    journal = killed / "build" / "grading" / ASSIGNMENT / "journal.jsonl"
    proc = subprocess.Popen([str(BIN / "course"), "grade", ASSIGNMENT, "--workers", "2"], cwd=killed, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and _finished(journal) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _finished(journal)
    assert 2 <= done_before < len(EQUALITY)
    assert not _wait_for_no_processes(killed), "workers or kernels outlived the killed grader"
    rerun = run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=killed, check=False)
    assert rerun.stdout.count(" resumed ") >= done_before, rerun.stdout
    final = gradebook.snapshot(f"sqlite:///{killed / 'build' / 'gradebook.db'}", ASSIGNMENT)
    want = gradebook.snapshot(f"sqlite:///{seq / 'build' / 'gradebook.db'}", ASSIGNMENT)
    if not want:
        pytest.skip("the sequential run has not run (run the whole module)")
    assert final == want
    entries = [json.loads(line)["student"] for line in journal.read_text().splitlines()]
    assert sorted(set(entries)) == sorted(EQUALITY)


_ORPHAN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from course_lib.instructor.sandbox import die_with_parent
marker, case = sys.argv[2], sys.argv[3]
middle = os.getpid()
if os.fork() == 0:                       # the child: a worker, or a kernel's bwrap
    if case == "parent died first":
        time.sleep(1.0)                  # the parent is gone before the child asks
    die_with_parent(middle)
    time.sleep(2.0)
    open(marker, "w").write("outlived its parent")
    os._exit(0)
if case == "parent alive":
    time.sleep(0.5)
    os.kill(middle, 9)                   # the parent is killed after the child asked
"""


@pytest.mark.parametrize("case", ["parent died first", "parent alive"])
def test_a_process_never_outlives_the_one_that_started_it(tmp_path, case):
    """die_with_parent (a grading worker's initializer, a kernel's bwrap before exec): killed with its parent by
    PR_SET_PDEATHSIG, and gone at once if its parent died before it asked (the race in which a grader killed
    while a worker launched a kernel left that kernel running for ever, found by CI)."""
    marker = tmp_path / "marker"
    subprocess.run([sys.executable, "-c", _ORPHAN, str(Path(__file__).resolve().parents[1]), str(marker), case], timeout=30)
    time.sleep(3.5)
    assert not marker.exists(), f"{case}: the child outlived its parent"


def test_a_failing_trusted_run_stops_the_run_and_costs_no_submission(tmp_path):
    """The trusted run grades the instructor's notebooks beside the first submissions, whose verdicts wait
    for it. If the solution fails its own tests, the run stops with the reason and gives no grade; the
    submissions that had started are not counted as crashes (twice in a row here), and once the solution
    is fixed the rerun grades every one of them."""
    course = make_course(tmp_path / "course")
    for name in ("first", "second", "third"):
        submit(course, name, {f"{ASSIGNMENT}.ipynb": student_notebook(course)})
    source = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    good = source.read_text(encoding="utf-8")
    source.write_text(good.replace("return x * x", "return x + x"), encoding="utf-8")
    for _ in range(2):
        proc = run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=course, check=False, timeout=600)
        assert proc.returncode != 0, proc.stdout[-2000:]
        assert f"the trusted run of {ASSIGNMENT} failed" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "test_square" in proc.stdout + proc.stderr  # the reason names the failing cell
        assert not gradebook.snapshot(f"sqlite:///{course / 'build' / 'gradebook.db'}", ASSIGNMENT)
    source.write_text(good, encoding="utf-8")
    proc = run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=course, check=False, timeout=600)
    assert "stopped the grader" not in proc.stdout, proc.stdout
    got = gradebook.snapshot(f"sqlite:///{course / 'build' / 'gradebook.db'}", ASSIGNMENT)
    assert sorted(got) == ["first", "second", "third"], proc.stdout[-3000:]
    assert all(v["score"] == 4 for v in got.values()), got


def test_a_changed_trusted_record_stops_the_run(tmp_path):
    """A trusted record that no longer matches its checksum stops the next run with the reason, before any
    grade: no submission is ever graded on the kernel's verdict alone."""
    course = make_course(tmp_path / "course")
    submit(course, "first", {f"{ASSIGNMENT}.ipynb": student_notebook(course)})
    run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=course, timeout=600)
    record = course / "build" / "grading" / ASSIGNMENT / "trusted" / "expected" / f"{ASSIGNMENT}.json"
    record.chmod(0o644)
    record.write_text(json.dumps(dict.fromkeys(json.loads(record.read_text()), [])))  # no checks: kernel only
    submit(course, "second", {f"{ASSIGNMENT}.ipynb": student_notebook(course, {"scale": "def scale(t, a):\n    return t"})})
    proc = run(["course", "grade", ASSIGNMENT, "--workers", "2"], cwd=course, check=False, timeout=600)
    assert proc.returncode != 0 and "does not match its SHA-256" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(gradebook.snapshot(f"sqlite:///{course / 'build' / 'gradebook.db'}", ASSIGNMENT)) == ["first"]


def test_validate_in_jupyterlab_still_works(tmp_path):
    """Students' Validate button is `nbgrader validate`: it passes a right notebook, names a wrong check."""
    course = make_course(tmp_path / "course")
    right, wrong = tmp_path / "right.ipynb", tmp_path / "wrong.ipynb"
    nbformat.write(student_notebook(course), right)
    nbformat.write(student_notebook(course, {"scale": "def scale(t, a):\n    return t"}), wrong)
    ok = run(["nbgrader", "validate", str(right)], cwd=course, check=False)
    assert "Success! Your notebook passes all the tests." in ok.stdout, ok.stdout[-2000:]
    bad = run(["nbgrader", "validate", str(wrong)], cwd=course, check=False)
    assert "scale(ones, 2): 3 of 3 elements differ" in bad.stdout, bad.stdout[-2000:]
