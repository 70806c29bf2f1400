"""``course release``: what an instructor hands to students, without the answers.

The release folder (``build/release`` by default) holds:

- ``notebooks/``: the student notebooks of every chapter, each with its ``recorded.json`` (the values the
  instructor's solution returned in the visible tests, which those tests compare with);
- ``wheels/course_lib-*.whl``: the students' course_lib, in which every reference implementation marked
  ``@reference(chapter)`` (:mod:`course_lib.release`) has its body, docstring included, replaced by a line
  that raises :class:`course_lib.release.Unreleased`, except the chapters passed with ``--released``;
- ``requirements.txt``, ``nbgrader_config.py`` (Validate skips the experiments), ``README.md`` (the
  students' set-up) and ``RELEASE.json`` (what was left out, from which commit, and which unmarked helpers
  the left-out references call: an answer moved into one stays readable, so review them).

It holds no ``solutions/``, ``policies/``, ``tests/`` or ``benchmarks/``. Run it in the course root:
``course release [--released 01_augmentation ...] [--out DIR]``.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STUDENT_DEPENDENCIES = [  # what the notebooks and Validate import; the instructor's tools stay out
    "torch", "torchvision", "numpy", "pandas", "matplotlib", "tqdm", "scikit-learn", "scikit-image",
    "jupyterlab", "nbgrader", "ipykernel", "ipywidgets", "pyyaml",
]


def _chapter_of(decorator: ast.expr) -> str | None:
    """The chapter of a ``@reference("...")`` decorator (any spelling ending in ``reference``), else None."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name != "reference" or not decorator.args or not isinstance(decorator.args[0], ast.Constant):
        return None
    return decorator.args[0].value


def marked(source: str, module: str) -> list[tuple[str, str, ast.AST]]:
    """``(qualified name, chapter, node)`` of every ``@reference`` definition in ``source`` (outermost only)."""
    found = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = f"{prefix}.{child.name}"
                chapters = [c for c in map(_chapter_of, child.decorator_list) if c]
                if chapters:
                    found.append((qualname, chapters[0], child))
                else:
                    walk(child, qualname)
    walk(ast.parse(source), module)
    return found


def strip(source: str, module: str, released=()) -> tuple[str, list[tuple[str, str]]]:
    """``source`` with the body of every reference of an unreleased chapter replaced by a raise.

    Returns the new source and the ``(qualified name, chapter)`` of what was stripped. A function's
    body becomes ``raise Unreleased(name, chapter)``; a class's body an ``__init__`` that raises it.
    """
    lines = source.splitlines(keepends=True)
    stripped = []
    for qualname, chapter, node in sorted(marked(source, module), key=lambda m: -m[2].lineno):
        if chapter in released:
            continue
        first = node.body[0]
        if first.lineno == node.lineno:
            raise ValueError(f"{module}: {qualname} has its body on its `def` line; the release cannot strip it")
        indent = re.match(r"\s*", lines[first.lineno - 1]).group(0)
        note = f'"""Left out of the student release: the answer to an exercise of {chapter}."""'
        error = f"__import__('course_lib.release').release.Unreleased({qualname!r}, {chapter!r})"
        if isinstance(node, ast.ClassDef):
            body = [f"{indent}{note}\n\n", f"{indent}def __init__(self, *args, **kwargs):\n",
                    f"{indent}    raise {error}\n"]
        else:
            body = [f"{indent}{note}\n", f"{indent}raise {error}\n"]
        lines[first.lineno - 1:node.end_lineno] = body
        stripped.append((qualname, chapter))
    return "".join(lines), stripped[::-1]


def unmarked_helpers(source: str, module: str, min_lines: int = 5) -> dict[str, list[str]]:
    """For each reference in ``source``, the module's unmarked top-level functions of at least ``min_lines``
    lines that its body calls by name. They stay in the release, and an answer moved into one stays readable."""
    tree = ast.parse(source)
    refs = marked(source, module)
    taken = {q.rsplit(".", 1)[-1] for q, _, _ in refs}
    helpers = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name not in taken and n.end_lineno - n.lineno + 1 >= min_lines}
    found = {}
    for qualname, _, node in refs:
        called = sorted({n.func.id for n in ast.walk(node) if isinstance(n, ast.Call)
                         and isinstance(n.func, ast.Name) and n.func.id in helpers})
        if called:
            found[qualname] = [f"{module}.{name}" for name in called]
    return found


def stage_package(root: Path, dest: Path, released=()) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """Copy course_lib from ``root`` into ``dest`` (a project folder), references stripped; return them, and
    the unmarked helpers each stripped reference calls (:func:`unmarked_helpers`)."""
    shutil.copytree(root / "course_lib", dest / "course_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stripped, helpers = [], {}
    for path in sorted((dest / "course_lib").rglob("*.py")):
        module = ".".join(path.relative_to(dest).with_suffix("").parts)
        text = path.read_text(encoding="utf-8")
        if "reference(" in text:
            new, found = strip(text, module, set(released))
            path.write_text(new, encoding="utf-8")
            stripped += found
            helpers.update({q: h for q, h in unmarked_helpers(text, module).items() if q in dict(found)})
    version = re.search(r'^__version__ = "(.+)"', (root / "course_lib" / "__init__.py").read_text(), re.M).group(1)
    deps = ",\n".join(f'    "{d}"' for d in STUDENT_DEPENDENCIES)
    (dest / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "course-lib"\nversion = "{version}"\n'
        'description = "The students\' course_lib: helpers for the notebooks, without the answers"\n'
        f'requires-python = ">=3.10"\ndependencies = [\n{deps},\n]\n\n'
        '[tool.setuptools]\npackages = ["course_lib", "course_lib.grading", "course_lib.instructor"]\n', encoding="utf-8")
    return stripped, helpers


def build_wheel(project: Path, out: Path) -> Path:
    """``pip wheel`` of ``project`` into ``out`` (no dependencies, no network); returns the wheel's path."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(project)], check=True)
    (wheel,) = out.glob("course_lib-*.whl")
    return wheel


def _commit(root: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


STUDENT_README = """# {course}: the student release

This folder is everything you need for the course: the notebooks, and `course_lib`, the helpers they
import. The answers to the exercises are not in it.

## Set up once

    python3 -m venv .venv
    .venv/bin/pip install wheels/*.whl

## Work

    .venv/bin/python -m course_lib.lab student

(JupyterLab on `notebooks/`; run it in this folder, where `nbgrader_config.py` is.)

Open a chapter's notebook, fill in the cells marked `YOUR CODE HERE`, and run the test cell under each
exercise: a failing test says what was expected, for which input, and what came back. The values it
compares with are in the chapter's `recorded.json`, recorded from the instructor's solution. The button
**Validate** runs every test of the notebook (it skips the long experiments). Your grade comes from more
tests than those you see, so a function that only reproduces the visible values will not score.

Chapters whose answers are included in this release: {released}.
"""


def build(root: Path, out: Path, released=()) -> dict:
    """Build the student release of the course at ``root`` into ``out`` (replaced); returns its manifest."""
    from .build import chapters

    unknown = sorted(set(released) - set(chapters(root)))
    if unknown:
        raise ValueError(f"no such chapter: {', '.join(unknown)} (chapters: {', '.join(chapters(root))})")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(root / "notebooks", out / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with tempfile.TemporaryDirectory() as tmp:
        stripped, helpers = stage_package(root, Path(tmp), released)
        wheel = build_wheel(Path(tmp), out / "wheels")
    (out / "requirements.txt").write_text("\n".join(STUDENT_DEPENDENCIES) + "\n", encoding="utf-8")
    shutil.copy(Path(__file__).with_name("student_nbgrader_config.py"), out / "nbgrader_config.py")
    (out / "README.md").write_text(STUDENT_README.format(
        course="Practical tricks for training deep networks",
        released=", ".join(released) if released else "none"), encoding="utf-8")
    manifest = {"commit": _commit(root), "released": sorted(released), "wheel": wheel.name,
                "left_out": [{"name": n, "chapter": c} for n, c in stripped],
                "calls_unmarked_helpers": helpers}
    (out / "RELEASE.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(root: Path, out: Path, released=()) -> int:
    """``course release``: build, then say what is in it."""
    manifest = build(root, out, released)
    chapters = sorted({r["chapter"] for r in manifest["left_out"]})
    print(f"student release in {out}: notebooks/, wheels/{manifest['wheel']}, requirements.txt, README.md")
    print(f"{len(manifest['left_out'])} reference implementations left out, of chapters {', '.join(chapters) or 'none'}; "
          f"released: {', '.join(manifest['released']) or 'none'}")
    if manifest["calls_unmarked_helpers"]:
        print(f"check: {len(manifest['calls_unmarked_helpers'])} of them call unmarked helpers of 5 lines or more, which "
              "stay in the release and may hold their formula (RELEASE.json, calls_unmarked_helpers)")
    return 0
