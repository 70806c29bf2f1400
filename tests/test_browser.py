"""A day in JupyterLab, in a real browser: the student's Validate and the instructor's Formgrader.

Real parts throughout: the course's own start commands (``python -m course_lib.lab student|instructor``,
what ``make lab`` and ``make lab-instructor`` run) on a temporary copy of the course, on free ports,
without a token; Playwright driving Debian's Chromium. Screenshots of a failed step go to
``build/browser-test/``.

- The student works in the student release (``course release``, its wheel installed in a fresh virtual
  environment, no answers in it): opens chapter 03, answers exercise 1 right and exercise 2 wrong, runs the
  cells one by one, saves, clicks Validate and reads that exercise 2's test failed and why; the server keeps
  answering while Validate runs.
- The notebook is closed and reopened: its progress bars are text, with no widget error.
- The instructor opens Formgrader, sees every assignment and previews one.
- Neither the browser console nor either server's log holds an error.
"""
from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "build" / "browser-test"
CHAPTER = "03_initialization"
COPIED = ["nbgrader_config.py", "notebooks", "solutions", "policies", "course_lib"]
RIGHT = '''def fans(weight):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as Python ints."""
    if weight.dim() < 2:
        raise ValueError("need at least 2 dimensions")
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive
'''
WRONG = '''def count_distinct_units(weight, tol=1e-6):
    """Number of rows (units) of `weight` that differ from every earlier row by more than `tol`."""
    return weight.shape[0]
'''
SERVER_ERRORS = re.compile(r"^\[(E|C) .*|Traceback|Unwritable", re.M)


@pytest.fixture(scope="module")
def playwright_chromium():
    """Playwright's synchronous API over Debian's Chromium; fails saying what to install if either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright's Python package: `make install` (pip install -e .)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM}: run `make system` as root, or "
                    "`apt-get install chromium` (Playwright cannot download its own browsers here)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the course, with its own exchange (as an instructor sets ``c.Exchange.root``)."""
    copy = tmp_path_factory.mktemp("course")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy(src, copy / name)
    with open(copy / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Exchange.root = {str(copy / 'exchange')!r}\n")
    return copy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read()


@pytest.fixture(scope="module")
def student_release(tmp_path_factory) -> tuple[Path, Path]:
    """``(folder, python)``: the student release, with its own exchange, and a fresh environment holding its wheel.

    The environment reaches this one's third-party packages through a path file
    (:func:`course_lib.instructor.release_check.make_env`); their Jupyter data and configuration (JupyterLab's and
    nbgrader's extensions, which ``pip install`` would put in the student's environment) through
    :data:`JUPYTER_PATHS`."""
    from course_lib.instructor import release, release_check

    folder = tmp_path_factory.mktemp("student") / "release"
    release.build(ROOT, folder)
    with open(folder / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Exchange.root = {str(folder.parent / 'exchange')!r}\n")
    python = release_check.make_env(folder, folder.parent / "venv")
    assert release_check.where_course_lib(python).startswith(str(folder.parent / "venv")), "course_lib is not the release's"
    return folder, python


# This environment's Jupyter data and configuration folders, for the release's environment.
JUPYTER_PATHS = {"JUPYTER_PATH": str(Path(sys.prefix, "share", "jupyter")),
                 "JUPYTER_CONFIG_PATH": str(Path(sys.prefix, "etc", "jupyter"))}


@contextlib.contextmanager
def lab(course: Path, role: str, log: Path, python: Path | str = sys.executable, extra_env: dict | None = None):
    """The course's own start command for ``role``, run by ``python`` in ``course``, token-less on a free port;
    yields its base URL."""
    port = _free_port()
    env = {**os.environ, "COURSE_PROFILE": "quick", "COURSE_DATA": str(ROOT / "data"), "OMP_NUM_THREADS": "1",
           "JUPYTER_CONFIG_DIR": str(course / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(course / ".runtime"),
           **(extra_env or {})}
    cmd = [str(python), "-m", "course_lib.lab", role, f"--port={port}", "--no-browser",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--LabApp.workspaces_dir={course / '.ws'}"]
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, cwd=course, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                _get(url + "/api/status")
                break
            assert server.poll() is None, f"`{' '.join(cmd)}` exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        _stop(server, url)


def _stop(server: subprocess.Popen, url: str) -> None:
    """Stop the server through its API (it shuts its kernels down too), then by signals if it lingers."""
    with contextlib.suppress(OSError):
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(url + "/lab", timeout=10).read()
        xsrf = next(c.value for c in jar if c.name == "_xsrf")
        opener.open(urllib.request.Request(url + "/api/shutdown", method="POST", headers={"X-XSRFToken": xsrf}),
                    timeout=10)
    for stop in (lambda: None, server.terminate, server.kill):  # its kernels are already shut down
        stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)
            return


@contextlib.contextmanager
def step(page, name: str):
    """Run one step of the test; on failure keep a screenshot under build/browser-test/."""
    try:
        yield
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        raise


def new_page(browser, errors: list):
    """A page that records every console error and uncaught exception into ``errors``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return page


def open_notebook(page, url: str, path: str):
    """Open ``path`` in a fresh workspace and wait until its kernel is idle."""
    page.goto(f"{url}/lab/tree/{path}?reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)


def open_nbgrader_panel(page, item: str):
    """Open ``item`` of JupyterLab's Nbgrader menu; returns the main area's current widget."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator("#jp-mainmenu-nbgrader").get_by_text(item, exact=True).click()
    return page.locator("#jp-main-dock-panel .lm-DockPanel-widget:visible").last


def shut_down_kernels(page):
    """Shut down every kernel of the server, as JupyterLab's own requests do (with its XSRF cookie)."""
    page.evaluate("""async () => {
        const xsrf = decodeURIComponent(document.cookie.match(/_xsrf=([^;]+)/)[1]);
        for (const k of await (await fetch('/api/kernels')).json()) {
            await fetch('/api/kernels/' + k.id, {method: 'DELETE', headers: {'X-XSRFToken': xsrf}});
        }
    }""")


def cells(page):
    return page.locator(".jp-Notebook .jp-Cell")


def replace_source(page, index: int, source: str):
    """Select cell ``index``, replace its source by ``source`` as typed text."""
    editor = cells(page).nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)


def run_cells(page, count: int):
    """Run the first ``count`` cells one by one (Shift+Enter), each after the previous one finished."""
    cells(page).first.click()
    page.keyboard.press("Escape")
    for i in range(count):
        page.keyboard.press("Shift+Enter")
        cell = cells(page).nth(i)
        if "jp-CodeCell" in (cell.get_attribute("class") or ""):
            prompt = cell.locator(".jp-InputArea-prompt")
            page.wait_for_function("p => /\\[\\d+\\]/.test(p.textContent)", arg=prompt.element_handle(),
                                   timeout=120_000)


def cell_index(course: Path, notebook: str, grade_id: str) -> int:
    """Index of the cell with nbgrader's ``grade_id`` in the course's ``notebook``."""
    import nbformat

    nb = nbformat.read(course / "notebooks" / notebook, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def status_latency(url: str) -> float:
    started = time.monotonic()
    _get(url + "/api/status", timeout=30)
    return time.monotonic() - started


def student_day(browser, release: tuple[Path, Path], log: Path, errors: list) -> None:
    """Chapter 03 in the student's JupyterLab, in the student release: answer, run, validate, then reopen the
    next day."""
    course, python = release
    notebook = f"{CHAPTER}/{CHAPTER}.ipynb"
    with lab(course, "student", log, python, JUPYTER_PATHS) as url:
        page = new_page(browser, errors)
        with step(page, "1-open-and-run"):
            open_notebook(page, url, notebook)
            replace_source(page, cell_index(course, notebook, "fans"), RIGHT)
            replace_source(page, cell_index(course, notebook, "count_distinct_units"), WRONG)
            run_cells(page, cell_index(course, notebook, "code-08-run") + 1)
            page.keyboard.press("Control+s")
            page.wait_for_timeout(1000)
        with step(page, "2-validate"):
            validate(page, url)
        with step(page, "3-assignment-list"):
            panel = open_nbgrader_panel(page, "Assignment List")
            panel.get_by_text("Released assignments").wait_for()
            assert "rror" not in panel.inner_text(), panel.inner_text()  # "Error fetching ...", "Unwritable ..."
        with step(page, "4-shut-down"):
            shut_down_kernels(page)  # the next day: a widget's model would have lived in this kernel only
            page.close()
        page = new_page(browser, errors)
        with step(page, "5-reopen"):
            open_notebook(page, url, notebook)
            page.wait_for_timeout(2000)  # a widget view would have tried to render by now
            body = page.locator(".jp-Notebook").text_content()
            widgets = [w for w in ("Loading widget", "Error displaying widget", "model not found") if w in body]
            assert not widgets, f"the reopened notebook shows widget placeholders or errors: {widgets}"
            bars = cells(page).nth(cell_index(course, notebook, "code-08-run")).locator(".jp-OutputArea")
            assert "all zeros: 100%" in bars.text_content(), "the progress bar's final state was not saved"
            page.close()


def validate(page, url: str) -> None:
    """Click Validate; the server keeps answering; the dialog names exercise 2's test, not exercise 1's."""
    page.locator(".jp-Toolbar-item", has_text="Validate").click()
    time.sleep(1.0)
    assert status_latency(url) < 2.0, "the server stopped answering while Validate ran"
    dialog = page.locator(".jp-Dialog", has_text="Validation Results")
    dialog.wait_for(timeout=120_000)
    text = dialog.inner_text()
    assert "Failing test cell 1 of 7" in text, text[:2000]
    assert "# Exercise 2: distinct units" in text and "AssertionError" in text, text[:3000]
    assert "# Exercise 1:" not in text, "exercise 1 was answered right but Validate lists it"
    dialog.locator("button", has_text="Ok").click()


def instructor_day(browser, course: Path, log: Path, errors: list) -> None:
    """The instructor's JupyterLab: the course list, every assignment in Formgrader, a preview."""
    with lab(course, "instructor", log) as url:
        page = new_page(browser, errors)
        with step(page, "6-course-list"):
            page.goto(f"{url}/lab?reset")
            panel = open_nbgrader_panel(page, "Course List")
            panel.get_by_text("dnn-tricks").wait_for()
            assert "rror" not in panel.inner_text(), panel.inner_text()  # "Error fetching courses!"
        with step(page, "7-formgrader"):
            open_nbgrader_panel(page, "Formgrader")
            frame = page.frame_locator("iframe[src*='formgrader']")
            assignments = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
            frame.locator("td.name", has_text=assignments[-1]).wait_for(timeout=30_000)
            listed = frame.locator("td.name").all_inner_texts()
            assert sorted(listed) == assignments, listed
        with step(page, "8-preview"):
            frame.locator("tr", has_text=CHAPTER).locator("td.preview a").click()
            crumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
            page.wait_for_function("e => e.textContent.includes('notebooks/" + CHAPTER + "')",
                                   arg=crumbs.element_handle())
            page.locator(".jp-DirListing-item", has_text=f"{CHAPTER}.ipynb").wait_for()
            page.close()


def test_student_validates_and_instructor_uses_formgrader(playwright_chromium, course, student_release):
    errors = []
    shutil.rmtree(SHOTS, ignore_errors=True)
    logs = course / "student-lab.log", course / "instructor-lab.log"
    student_day(playwright_chromium, student_release, logs[0], errors)
    instructor_day(playwright_chromium, course, logs[1], errors)
    assert not errors, "the browser console holds errors:\n" + "\n".join(errors)
    for log in logs:
        found = [m.group(0) for m in SERVER_ERRORS.finditer(log.read_text())]
        assert not found, f"{log.name} holds errors: {found}\n{log.read_text()[-5000:]}"
