"""The adversarial corpus: one submission per case, each with its expected outcome.

A case builds its submission's files from the test course (``build(course, ctx)``, where ``ctx`` holds
paths and a port the attack aims at) and states what grading must give:

- ``expect``: points per graded cell (``test_square`` 1, ``test_scale`` 2, ``test_mean`` 1), or
- ``error``: a text the per-submission error message must contain (the submission is not graded, the
  run goes on);
- ``note``: a text the submission's notes must contain (e.g. a skipped file).

``benign`` cases are safe to run without a sandbox; they form the corpus on which ``course grade`` must
give exactly the grades of nbgrader's own sequential ``nbgrader autograde``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell

from . import NOTEBOOK, SOLUTIONS, nb_json, released, student_notebook

FULL = {"test_square": 1.0, "test_scale": 2.0, "test_mean": 1.0}
NB = f"{NOTEBOOK}.ipynb"


@dataclass
class Case:
    name: str
    what: str
    build: Callable  # (course, ctx) -> {file name: content}
    expect: dict = field(default_factory=dict)
    error: str = ""
    note: str = ""
    benign: bool = False


def _answers(**kw) -> Callable:
    return lambda course, ctx: {NB: student_notebook(course, kw)}


def _edit(fn: Callable) -> Callable:
    """A correct submission, then ``fn(nb, course, ctx)`` edits it in place."""
    def build(course, ctx):
        nb = student_notebook(course)
        fn(nb, course, ctx)
        return {NB: nb}
    return build


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _delete(nb, course, ctx):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_square"]


def _assert_true(nb, course, ctx):
    _cell(nb, "scale").source = "def scale(t, a):\n    return t"
    _cell(nb, "test_scale").source = "assert True"


def _points(nb, course, ctx):
    _cell(nb, "test_mean").metadata["nbgrader"]["points"] = 100


def _grade_flag(nb, course, ctx):
    _cell(nb, "square").source = "def square(x):\n    return -1"
    _cell(nb, "test_square").metadata["nbgrader"]["grade"] = False
    _cell(nb, "test_square").source = "pass"


def _grade_id(nb, course, ctx):
    _cell(nb, "square").source = "def square(x):\n    return -1"
    cell = _cell(nb, "test_square")
    cell.metadata["nbgrader"]["grade_id"] = "my_own_test"
    cell.source = "pass"


def _first_cell_loop(nb, course, ctx):
    nb.cells.insert(0, new_code_cell("while True:\n    pass"))


def _probe_reads(course, ctx):
    """square() is right only if every forbidden read failed."""
    paths = [str(course / "build" / "gradebook.db"), str(course / "solutions" / "hw" / NB),
             str(course / "build" / "submitted" / "correct" / "hw" / NB), ctx["home_secret"]]
    return ("import os\nLEAKS = []\n"
            f"for p in {paths!r}:\n"
            "    try:\n        open(p, 'rb').read(10)\n        LEAKS.append(p)\n    except OSError:\n        pass\n"
            "print('leaked:', LEAKS)\n"
            "def square(x):\n    return x * x if not LEAKS else -1")


def _probe_net(course, ctx):
    return ("import socket\nCONNECTED = []\n"
            f"for host, port in [('127.0.0.1', {ctx['port']}), ('1.1.1.1', 53)]:\n"
            "    try:\n        socket.create_connection((host, port), timeout=2).close()\n"
            "        CONNECTED.append(host)\n    except OSError:\n        pass\n"
            "print('connected:', CONNECTED)\n"
            "def scale(t, a):\n    return a * t if not CONNECTED else t")


def _probe_writes(course, ctx):
    targets = [str(course / "PWNED"), str(course / "build" / "submitted" / "correct" / "hw" / "PWNED"),
               ctx["tmp_marker"], ctx["home_marker"]]
    return ("WROTE = []\n"
            f"for p in {targets!r}:\n"
            "    try:\n        open(p, 'w').write('x')\n        WROTE.append(p)\n    except OSError:\n        pass\n"
            "open('mine.txt', 'w').write('my own folder is writable')\n"
            "print('wrote:', WROTE)\n"
            "def mean(xs):\n    return sum(xs) / len(xs) if not WROTE else 0")


def _bad_nbformat(course, ctx):
    d = nb_json(student_notebook(course))
    d["nbformat"] = 99
    return {NB: json.dumps(d)}


CASES = [
    Case("correct", "the solution: full marks", _answers(), FULL, benign=True),
    Case("blank", "the released notebook, untouched", lambda c, x: {NB: released(c)},
         {"test_square": 0.0, "test_scale": 0.0, "test_mean": 0.0}, benign=True),
    Case("wrong_hidden", "passes the visible test of square, fails its hidden one",
         _answers(square="def square(x):\n    return x * abs(x)"), {**FULL, "test_square": 0.0}, benign=True),
    Case("loop_exercise", "an infinite loop in an exercise cell (times out, is interrupted)",
         _answers(square="while True:\n    pass\ndef square(x):\n    return x * x"),
         {**FULL, "test_square": 0.0}, benign=True),
    Case("loop_first_cell", "an infinite loop in a new first cell", _edit(_first_cell_loop), FULL, benign=True),
    Case("memory_bomb", "allocates without end (MemoryError at the limit)",
         _answers(scale="HOG = [bytearray(2 ** 27) for _ in range(10 ** 6)]\ndef scale(t, a):\n    return a * t"),
         {**FULL, "test_scale": 0.0}),
    Case("fork_bomb", "forks without end", _answers(
        mean="import os\ndef mean(xs):\n    return sum(xs) / len(xs)\nwhile True:\n    os.fork()"), FULL),
    Case("os_exit", "kills its own kernel with os._exit",
         _answers(scale="import os\nos._exit(3)"), error="kernel died", benign=True),
    Case("segfault", "segfaults through ctypes",
         _answers(scale="import ctypes\nctypes.string_at(0)"), error="kernel died"),
    Case("stdout_100mb", "prints 100 MB to stdout", _answers(
        square="import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000 + '\\n')\n"
               "def square(x):\n    return x * x"), FULL),
    Case("stderr_noise", "warnings and a tqdm bar on stderr inside a graded function", _answers(
        scale="import warnings\nfrom tqdm import tqdm\ndef scale(t, a):\n"
              "    warnings.warn('scale is experimental')\n    for _ in tqdm(range(3)):\n        pass\n"
              "    return a * t"), FULL, benign=True),
    Case("deleted_test", "deletes the test cell of square (restored and graded)", _edit(_delete), FULL, benign=True),
    Case("edited_test", "replaces a test cell with `assert True`, with a wrong answer", _edit(_assert_true),
         {**FULL, "test_scale": 0.0}, benign=True),
    Case("raised_points", "raises the points of a test cell to 100", _edit(_points), FULL, benign=True),
    Case("grade_flag_removed", "removes the grade flag of a test cell and empties it, with a wrong answer",
         _edit(_grade_flag), {**FULL, "test_square": 0.0}),
    Case("grade_id_changed", "renames a test cell's grade_id and empties it, with a wrong answer",
         _edit(_grade_id), {**FULL, "test_square": 0.0}),
    Case("monkeypatch", "patches course_lib.grading.assert_close and torch.allclose, with a wrong answer",
         _answers(scale="import torch\nfrom course_lib import grading\n"
                        "grading.assert_close = lambda *a, **k: None\n"
                        "torch.allclose = lambda *a, **k: True\n"
                        "def scale(t, a):\n    return t"), {**FULL, "test_scale": 0.0}),
    Case("read_secrets", "reads the gradebook, the solutions, another submission, the instructor's home",
         lambda c, x: {NB: student_notebook(c, {"square": _probe_reads(c, x)})}, FULL),
    Case("network", "connects to a local server and to the internet",
         lambda c, x: {NB: student_notebook(c, {"scale": _probe_net(c, x)})}, FULL),
    Case("write_outside", "writes into the course, another submission, /tmp and the home folder",
         lambda c, x: {NB: student_notebook(c, {"mean": _probe_writes(c, x)})}, FULL),
    Case("invalid_json", "a notebook that is not JSON", lambda c, x: {NB: b'{"cells": [oops'},
         error="not valid JSON", benign=True),
    Case("empty_file", "an empty notebook file", lambda c, x: {NB: b""}, error="empty"),
    Case("wrong_nbformat", "nbformat 99", _bad_nbformat, error="nbformat"),
    Case("missing_notebook", "the notebook under another name",
         lambda c, x: {"homework.ipynb": student_notebook(c)}, error="no hw.ipynb"),
    Case("huge_file", "a correct notebook next to a 1 GB file",
         lambda c, x: {NB: student_notebook(c), "weights.bin": ("sparse", 1024 ** 3)}, FULL, note="skipped weights.bin"),
]
assert set(SOLUTIONS) == {"square", "scale", "mean"}
