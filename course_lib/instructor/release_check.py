"""``course release --check``: the student release, installed in a fresh virtual environment and run.

1. The release's course_lib wheel goes into a new virtual environment (``pip install --no-deps``). Its
   third-party dependencies (torch, JupyterLab, ...) are this environment's, reached through a ``.pth``
   path line that makes them importable without running this environment's own ``.pth`` hooks, so the
   instructor's (editable) course_lib stays out of reach. The check fails unless ``course_lib`` resolves
   into the new environment.
2. Every exercise's reference, called there, must raise :class:`course_lib.release.Unreleased`.
3. Each chapter's student notebooks execute in a kernel of that environment, in the release's folder:
   - with the instructor's solutions filled in, every cell must run, experiments included;
   - blank, with the experiments skipped, every graded test cell must fail with a message.
"""
from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = "course-release"


def make_env(release: Path, env: Path) -> Path:
    """A fresh virtual environment at ``env`` with the release's wheel installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(env)], check=True)
    python = env / "bin" / "python"
    (wheel,) = (release / "wheels").glob("course_lib-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_instructor_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    spec = env / "share" / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "course release", "language": "python"}))
    return python


def where_course_lib(python: Path) -> str:
    """The folder ``course_lib`` is imported from by ``python``."""
    return subprocess.run([str(python), "-c", "import course_lib; print(course_lib.__path__[0])"],
                          capture_output=True, text=True, check=True, cwd="/").stdout.strip()


CALL_EACH = r"""
import inspect, json
from course_lib import release
out = []
for ref in release.references():
    name = f"{ref.__module__}.{ref.__qualname__}"
    try:
        params = inspect.signature(ref).parameters.values()
        args = [None for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        ref(*args)
        out.append((name, ref.__course_reference__, "returned"))
    except release.Unreleased as err:
        out.append((name, ref.__course_reference__, "unreleased: " + str(err)))
    except Exception as err:
        out.append((name, ref.__course_reference__, f"{type(err).__name__}: {err}"))
print(json.dumps(out))
"""


def call_references(python: Path) -> list[tuple[str, str, str]]:
    """``(name, chapter, what happened)`` for every reference of the release, called with ``None`` arguments."""
    proc = subprocess.run([str(python), "-c", CALL_EACH], capture_output=True, text=True, check=True, cwd="/")
    return [tuple(row) for row in json.loads(proc.stdout.splitlines()[-1])]


def _execute(nb, folder: Path, env: Path, skip_experiments: bool):
    """Execute ``nb`` in ``folder`` with a kernel of the release environment ``env``, errors allowed."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager(kernel_dirs=[str(env / "share" / "jupyter" / "kernels")], ensure_native_kernel=False)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=1800, kernel_name=KERNEL, allow_errors=True,
                            skip_cells_with_tag="experiment" if skip_experiments else "skip-execution",
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it was handed running
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def _errors(nb) -> list[tuple[str, str]]:
    """``(grade_id or cell index, "Error: message")`` of every cell with an error output."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.output_type == "error":
                found.append((cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {i}"),
                              f"{out.ename}: {out.evalue}"))
    return found


def check_chapter(root: Path, release: Path, env: Path, chapter: str) -> list[str]:
    """Run ``chapter``'s notebooks in the release environment; return the problems found (none: it works)."""
    from .build import fill, solution_cells

    problems = []
    folder = release / "notebooks" / chapter
    for path in sorted(folder.glob("*.ipynb")):
        blank = nbformat.read(path, as_version=4)
        answers = solution_cells(nbformat.read(root / "solutions" / chapter / path.name, as_version=4))
        solved = _execute(fill(blank, answers), folder, env, skip_experiments=False)
        problems += [f"{path.name} with the solutions: {where} raised {what}" for where, what in _errors(solved)]
        tests = [c.metadata["nbgrader"]["grade_id"] for c in blank.cells
                 if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
        failed = dict(_errors(_execute(nbformat.from_dict(json.loads(json.dumps(blank))), folder, env, True)))
        problems += [f"{path.name} blank: test {t} did not fail" for t in tests if t not in failed]
        problems += [f"{path.name} blank: test {t} failed without a message ({failed[t]})"
                     for t in tests if t in failed and failed[t].endswith(": ")]
    return problems


def check(root: Path, release: Path, env: Path, chapters: list[str]) -> list[str]:
    """The whole check of :mod:`this module <course_lib.instructor.release_check>`; returns the problems."""
    python = make_env(release, env)
    problems = []
    where = where_course_lib(python)
    if not where.startswith(str(env)):
        problems.append(f"course_lib is imported from {where}, not from the release environment {env}")
    for name, chapter, what in call_references(python):
        if not what.startswith("unreleased") and chapter not in json.loads((release / "RELEASE.json").read_text())["released"]:
            problems.append(f"{name} ({chapter}) is in the release: calling it {what}")
    for chapter in chapters:
        found = check_chapter(root, release, env, chapter)
        print(f"{chapter}: {'ok' if not found else f'{len(found)} problem(s)'}", flush=True)
        problems += found
    return problems
