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

import copy as copy_module
import json
from dataclasses import dataclass, field
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell

from . import NOTEBOOK, SOLUTIONS, nb_json, released, student_notebook

FULL = {"test_square": 1.0, "test_scale": 2.0, "test_mean": 1.0}
ZERO = dict.fromkeys(FULL, 0.0)
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


def _helper_cell(nb, course, ctx):
    """The forbidden call hidden in a function of a cell the student added."""
    at = nb.cells.index(_cell(nb, "scale"))
    nb.cells.insert(at, new_code_cell("def times(t, a):\n    return torch.mul(t, a)"))
    _cell(nb, "scale").source = "def scale(t, a):\n    return times(t, a)"


def _deep(course, ctx, depth=100_000):
    """Valid JSON nested deeper than any parser's recursion (nbformat, json, jsonschema) survives."""
    return {NB: '{"cells": [], "metadata": {"x": ' + "[" * depth + "]" * depth + '}, "nbformat": 4, '
                '"nbformat_minor": 5}'}


def _link(targets: list[str]) -> Callable:
    """square's cell replaces the kernel's copy of the notebook (and leaves more links) by links to
    ``ctx[key]`` for each key: what the grader writes or chmods after the kernel would go there."""
    def build(course, ctx):
        links = [("hw.ipynb", ctx[targets[0]])] + [(f"left_{i}.txt", ctx[k]) for i, k in enumerate(targets)]
        code = ("import os\n"
                f"for name, target in {links!r}:\n"
                "    if os.path.lexists(name):\n        os.remove(name)\n"
                "    os.symlink(target, name)\n"
                "def square(x):\n    return x * x")
        return {NB: student_notebook(course, {"square": code})}
    return build


def _read_root_only(course, ctx):
    """square() is right only if the root-only file stayed unreadable (an earlier case linked it)."""
    code = ("try:\n"
            f"    LEAK = open({ctx['root_only']!r}).read()\n"
            "except OSError:\n    LEAK = ''\n"
            "print('read:', LEAK[:40])\n"
            "def square(x):\n    return x * x if not LEAK else -1")
    return {NB: student_notebook(course, {"square": code})}


def _list_exchange(course, ctx):
    """square() is right only if the configured exchange shows nothing (it holds every submission)."""
    code = ("import os\nFOUND = []\n"
            f"for d, _, files in os.walk({ctx['exchange']!r}):\n"
            "    FOUND += [os.path.join(d, f) for f in files]\n"
            "print('exchange:', FOUND[:5])\n"
            "def square(x):\n    return x * x if not FOUND else -1")
    return {NB: student_notebook(course, {"square": code})}


FLOOD = ("def square(x):\n    return x * x\n"
         "try:\n    for _ in range(200):  # 200 x 5 MB = 1 GB of output\n"
         "        display({'text/plain': 'x' * 5_000_000}, raw=True)\n"
         "except MemoryError:\n    pass")


def _copied_cells(nb, course, ctx):
    """JupyterLab's copy and paste: a test cell duplicated below itself, another pasted at the top, and a
    solution cell duplicated; each copy keeps the nbgrader metadata and gets a new cell id."""
    def copy(grade_id, tag):
        c = copy_module.deepcopy(_cell(nb, grade_id))
        c.id = f"copy-{tag}"
        return c
    nb.cells.insert(nb.cells.index(_cell(nb, "test_square")) + 1, copy("test_square", "1"))
    nb.cells.insert(0, copy("test_scale", "2"))
    nb.cells.insert(nb.cells.index(_cell(nb, "mean")) + 1, copy("mean", "3"))


# Issue 18: whatever a kernel leaves in its folder, the grader changes no file outside the graded copy.
# The a_* cases sort first, so that every other case is graded after them (zz_* last).
LINKS = [
    Case("a_link_host", "links its notebook and a leftover file to a host file", _link(["host_file"]), FULL),
    Case("a_link_trusted", "links its notebook to the trusted records", _link(["trusted", "trusted_sums"]), FULL),
    Case("a_link_gradebook", "links its notebook to the gradebook", _link(["gradebook"]), FULL),
    Case("a_link_root_only", "leaves a link to a root-only file (nbgrader chmods what it finds)",
         _link(["root_only"]), FULL),
    Case("zz_read_root_only", "reads the root-only file an earlier submission linked", _read_root_only, FULL),
    Case("output_flood", "displays 1 GB of text (200 x 5 MB)", _answers(square=FLOOD), FULL),
    Case("copied_cells", "a duplicated and a pasted test cell, a duplicated solution cell (JupyterLab copies)",
         _edit(_copied_cells), FULL, note="is a copy of test_square"),
    Case("list_exchange", "lists nbgrader's exchange, as nbgrader is configured", _list_exchange, FULL),
]

# The attack classes of issue 12: each gets the answer wrong, and must score 0 where it aims.
WRONG_SCALE = "def scale(t, a):\n    return t"
ATTACKS = [
    Case("delegate_library", "scale through torch.mul, which its policy forbids (right values)",
         _answers(scale="def scale(t, a):\n    return torch.mul(t, a)"), {**FULL, "test_scale": 0.0}),
    Case("delegate_method", "scale through the tensor method .mul (right values)",
         _answers(scale="def scale(t, a):\n    return t.mul(a)"), {**FULL, "test_scale": 0.0}),
    Case("delegate_test_helper", "mean through reference_mean, a helper of the visible test cell (right values)",
         _answers(mean="def mean(xs):\n    return reference_mean(xs)"), {**FULL, "test_mean": 0.0}),
    Case("delegate_added_cell", "the forbidden call inside a function of an added cell (right values)",
         _edit(_helper_cell), {**FULL, "test_scale": 0.0}),
    Case("input_transformer", "an IPython input transformer rewrites the test cells, with a wrong answer",
         _answers(scale="ip = get_ipython()\nip.input_transformers_post.append("
                        "lambda lines: [l.replace('scale(', '(lambda t, a: a * t)(') for l in lines])\n" + WRONG_SCALE),
         ZERO),
    Case("event_hook", "a pre_run_cell hook re-patches the grading after the guard, with a wrong answer",
         _answers(scale="def _patch(*a):\n    import course_lib.grading as g\n"
                        "    g.assert_close = lambda *a, **k: None\n"
                        "get_ipython().events.register('pre_run_cell', _patch)\n" + WRONG_SCALE), ZERO),
    Case("rebind_grading", "rebinds the name `grading` to a permissive stand-in, with a wrong answer",
         _answers(scale="class _Lenient:\n    def assert_close(self, *a, **k):\n        pass\n"
                        "grading = _Lenient()\n" + WRONG_SCALE), ZERO),
    Case("patch_expected", "patches torch.full, which computes the expected value, with a wrong answer",
         _answers(scale="import torch\ntorch.full = lambda size, value: torch.ones(size)\n" + WRONG_SCALE), ZERO),
    Case("after_guard_thread", "a thread started at top level keeps patching after the guard ran",
         _answers(scale="import threading, time\nimport course_lib.grading as g\n"
                        "def _loop():\n    while True:\n        g.assert_close = lambda *a, **k: None\n"
                        "        time.sleep(0.01)\n"
                        "threading.Thread(target=_loop, daemon=True).start()\n" + WRONG_SCALE), ZERO),
    Case("stand_in_value", "returns a tensor subclass whose comparisons always pass, with a wrong answer",
         _answers(scale="class Yes(torch.Tensor):\n    def __eq__(self, other):\n        return True\n"
                        "def scale(t, a):\n    return t.as_subclass(Yes)"), ZERO),
    Case("unreadable_value", "returns a float subclass (right value, passes every check in the kernel)",
         _answers(mean="class Num(float):\n    pass\ndef mean(xs):\n    return Num(sum(xs) / len(xs))"),
         {**FULL, "test_mean": 0.0}),
    Case("ignores_interrupt", "an added first cell that catches every KeyboardInterrupt and loops on",
         _edit(lambda nb, c, x: nb.cells.insert(0, new_code_cell(
             "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n"
             "        pass"))), FULL),
    Case("deeply_nested", "valid JSON nested 100,000 levels deep", _deep, error="levels deep"),
]


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
    Case("fork_bomb", "forks without end (os.fork is tampering: every graded cell scores 0)", _answers(
        mean="import os\ndef mean(xs):\n    return sum(xs) / len(xs)\nwhile True:\n    os.fork()"), ZERO),
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
                        "def scale(t, a):\n    return t"), ZERO),
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
CASES += ATTACKS + LINKS
assert set(SOLUTIONS) == {"square", "scale", "mean"}
