"""The per-exercise policies (``policies/``) and the check of a student's source, without running code.

- every graded cell of every chapter belongs to exactly one exercise's declaration;
- the instructor solutions and the alternative solutions (``tests/alternatives/``) break no policy;
- every shortcut a declaration lists (the obvious call of a reference) is caught, for every exercise;
- the check resolves imports, method forms, helpers in added cells and rebindings, and tells
  tampering from innocent code.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_lib.instructor import policy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("*/*.ipynb"))
ALTERNATIVES = ROOT / "tests" / "alternatives"


def _source(path: Path):
    nb = nbformat.read(path, as_version=4)
    return nb, policy.trusted(nb)


def _exercises(path: Path) -> dict:
    return policy.load(ROOT / "policies" / path.parent.name)


def _with(nb, grade_id: str, source: str):
    """A copy of ``nb`` whose cell ``grade_id`` holds ``source``."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
    return nb


def _serious(findings):
    return [f for f in findings if f.kind in ("forbidden", "tamper")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_graded_cell_belongs_to_one_declared_exercise(path):
    _, src = _source(path)
    exercises = {k: v for k, v in _exercises(path).items() if k in src.cells}
    solutions = [g for g, c in src.cells.items() if c.metadata["nbgrader"].get("solution")]
    missing = [g for g in solutions if g not in exercises]
    assert not missing, f"{path.name}: exercises without a policy file policies/{path.parent.name}/<id>.yml: {missing}"
    assert policy.coverage_problems(src, exercises, path.name) == []


REPORTING_CHECKS = {"assert_close", "assert_recorded", "assert_raises", "assert_follows"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_graded_cell_makes_a_check_the_grader_compares(path):
    """A test cell whose checks are plain ``assert``s only would keep the kernel's verdict, which the student's
    process decides: each must call a reporting check of ``course_lib.grading``."""
    import ast

    _, src = _source(path)
    plain = []
    for gid, cell in src.cells.items():
        if not cell.metadata["nbgrader"].get("grade") or cell.cell_type != "code":
            continue
        calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
                 for n in ast.walk(policy.parse(cell.source)) if isinstance(n, ast.Call)}
        if not calls & REPORTING_CHECKS:
            plain.append(gid)
    assert not plain, f"{path.name}: graded cells with no reporting check (assert_close / assert_raises): {plain}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_instructor_solutions_break_no_policy(path):
    nb, src = _source(path)
    findings = _serious(policy.check(nb, src, _exercises(path)))
    assert not findings, "\n".join(f.message() for f in findings)


def _shortcuts():
    for path in NOTEBOOKS:
        _, src = _source(path)
        for gid, ex in _exercises(path).items():
            if gid in src.cells:
                for i, code in enumerate(ex.shortcuts):
                    yield pytest.param(path, gid, code, id=f"{path.stem}-{gid}-{i}")


@pytest.mark.parametrize("path, grade_id, code", list(_shortcuts()))
def test_every_declared_shortcut_scores_zero_with_a_reason(path, grade_id, code):
    nb, src = _source(path)
    exercises = _exercises(path)
    findings = policy.check(_with(nb, grade_id, code), src, exercises)
    zero = policy.verdicts(findings, src, exercises)
    for test in exercises[grade_id].tests:
        assert test in zero, f"the shortcut for {grade_id} is not caught:\n{code}"
        assert "uses" in zero[test]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_declares_a_shortcut(path):
    _, src = _source(path)
    bare = [g for g, ex in _exercises(path).items() if g in src.cells and not ex.shortcuts]
    assert not bare, f"{path.name}: exercises whose policy lists no shortcut to test: {bare}"


def _alternatives():
    for path in NOTEBOOKS:
        folder = ALTERNATIVES / path.parent.name
        _, src = _source(path)
        for alt in sorted(folder.glob("*.py")):
            if alt.stem in src.cells:
                yield pytest.param(path, alt, id=f"{path.stem}-{alt.stem}")


@pytest.mark.parametrize("path, alternative", list(_alternatives()))
def test_alternative_solutions_break_no_policy(path, alternative):
    nb, src = _source(path)
    findings = _serious(policy.check(_with(nb, alternative.stem, alternative.read_text()), src, _exercises(path)))
    assert not findings, "\n".join(f.message() for f in findings)


def test_every_chapter_has_alternative_solutions():
    chapters = sorted({p.parent.name for p in NOTEBOOKS})
    assert [c for c in chapters if not any((ALTERNATIVES / c).glob("*.py"))] == []


# ----------------------------------------------------------------------------------------------------
# the check itself, on a small notebook
# ----------------------------------------------------------------------------------------------------
def _cell(source, grade_id, **flags):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "locked": not flags.get("solution"), "schema_version": 3,
                                 "solution": bool(flags.get("solution")), "grade": bool(flags.get("grade")),
                                 "task": False, **({"points": 1} if flags.get("grade") else {})}
    return cell


SETUP = ("import torch\nimport torch.nn.functional as F\nfrom course_lib import init, grading\nds = [1, 2]\n"
         "for m in ds:\n    pass")
TEST = "def reference(x):\n    return init.fans(x)\ngrading.assert_close(fans(torch.ones(2, 3)), (3, 2))"


def _nb(answer: str, *added: str):
    cells = [_cell(SETUP, "setup"), *[new_code_cell(a) for a in added], _cell(answer, "fans", solution=True),
             _cell(TEST, "test_fans", grade=True)]
    return new_notebook(cells=cells)


SOURCE = policy.trusted(_nb("def fans(w):\n    return w.shape[1], w.shape[0]"))
EXERCISES = {"fans": policy.Exercise("fans", ["test_fans"], forbid=["course_lib.init.*", ".softmax"])}


def _kinds(answer, *added):
    return sorted({(f.kind, f.what) for f in policy.check(_nb(answer, *added), SOURCE, EXERCISES)})


@pytest.mark.parametrize("answer, what", [
    ("def fans(w):\n    return init.fans(w)", "course_lib.init.fans"),
    ("from course_lib.init import fans as f\ndef fans(w):\n    return f(w)", "course_lib.init.fans"),
    ("import course_lib.init as ci\ndef fans(w):\n    return ci.fans(w)", "course_lib.init.fans"),
    ("def fans(w):\n    return getattr(init, 'fans')(w)", "course_lib.init.fans"),
    ("def fans(w):\n    return w.softmax(0).shape", "softmax"),
    ("def fans(w):\n    return reference(w)", "reference"),
])
def test_forbidden_references_resolve_through_imports(answer, what):
    assert ("forbidden", what) in _kinds(answer)


def test_method_patterns_and_test_helpers_do_not_catch_the_students_own_names():
    assert _kinds("def fans(w):\n    softmax = w.shape\n    return softmax[1], softmax[0]") == []
    assert _kinds("def fans(w, reference=None):\n    return w.shape[1], w.shape[0]") == []


def test_a_helper_in_an_added_cell_and_a_later_rebinding_count_as_the_exercise():
    helper = "def helper(w):\n    return init.fans(w)"
    assert ("forbidden", "course_lib.init.fans") in _kinds("def fans(w):\n    return helper(w)", helper)
    # an added cell that only calls the reference at top level (a student comparing) is not the exercise's code
    assert _kinds("def fans(w):\n    return w.shape[1], w.shape[0]", "print(init.fans(torch.ones(2, 2)))") == []


@pytest.mark.parametrize("code", [
    "get_ipython().events.register('pre_run_cell', print)",
    "import sys\nsys.modules['course_lib.grading'] = None",
    "def fans(w):\n    return tuple(grading.recorded.expected(f'fans of a weight of shape {tuple(w.shape)}'))",
    "from course_lib.grading import recorded",
    "import builtins\nbuiltins.print = None",
    "exec('x = 1')",
    "getattr(init, 'fa' + 'ns')",
    "grading.assert_close = lambda *a, **k: None",
    "setattr(torch, 'allclose', lambda *a, **k: True)",
    "torch = None",
    "reference = None",
    "import threading",
    "import ctypes",
    "def f():\n    return f.__globals__",
    "class T(torch.Tensor):\n    def __torch_function__(cls, *a, **k):\n        return True",
])
def test_tampering_is_found_and_zeroes_every_graded_cell(code):
    answer = code + "\ndef fans(w):\n    return w.shape[1], w.shape[0]"
    findings = policy.check(_nb(answer), SOURCE, EXERCISES)
    assert any(f.kind == "tamper" for f in findings), findings
    assert set(policy.verdicts(findings, SOURCE, EXERCISES)) == {"test_fans"}


@pytest.mark.parametrize("code, kind", [
    ("import torch\ndef fans(w):\n    return tuple(torch.tensor(w.shape[:2]).flip(0).tolist())", None),
    ("%matplotlib inline\ndef fans(w):\n    return w.shape[1], w.shape[0]", None),
    ("%load_ext autoreload\ndef fans(w):\n    return w.shape[1], w.shape[0]", "flag"),
    ("import os\nprint(os.environ.get('HOME'))\ndef fans(w):\n    return w.shape[1], w.shape[0]", "flag"),
    ("ds = [3]\ndef fans(w):\n    return w.shape[1], w.shape[0]", "flag"),
    ("for m in ds:\n    pass\ndef fans(w):\n    w.requires_grad = False\n    return w.shape[1], w.shape[0]", "flag"),
    ("def fans(w):\n    for m in [w]:\n        m.grad = None\n    return w.shape[1], w.shape[0]", None),
])
def test_innocent_code_is_not_tampering(code, kind):
    kinds = {f.kind for f in policy.check(_nb(code), SOURCE, EXERCISES)}
    assert kinds == ({kind} if kind else set())


def test_a_broken_policy_file_names_itself(tmp_path):
    (tmp_path / "fans.yml").write_text("forbid: course_lib.init.fans\n")
    with pytest.raises(policy.PolicyError, match="fans.yml: forbid must be a list"):
        policy.load(tmp_path)
    (tmp_path / "fans.yml").write_text("forbidd: []\n")
    with pytest.raises(policy.PolicyError, match="fans.yml: expected a mapping with keys"):
        policy.load(tmp_path)


def test_the_instructor_side_never_imports_torch():
    code = ("import sys\nfrom course_lib.instructor import cli, grade, autograde, preprocessors, verdict, policy, "
            "feedback, build\ntry:\n    cli.main(['grade', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("CLEAN") and "usage: course grade" in out


# Issue 19: names resolve through values (assignments, constant getters), not spellings.
@pytest.mark.parametrize("answer, what", [
    ("_i = init\ndef fans(w):\n    return _i.fans(w)", "course_lib.init.fans"),
    ("def fans(w):\n    f = init.fans\n    return f(w)", "course_lib.init.fans"),
    ("def fans(w):\n    a, b = init, 3\n    return a.fans(w)", "course_lib.init.fans"),
    ("import operator\ndef fans(w):\n    return operator.attrgetter('init.fans')(__import__('course_lib'))(w)", None),
    ("import course_lib, operator\ndef fans(w):\n    return operator.attrgetter('init.fans')(course_lib)(w)",
     "course_lib.init.fans"),
    ("import functools\ndef fans(w):\n    return functools.reduce(getattr, ['fans'], init)(w)", "course_lib.init.fans"),
    ("import operator\ndef fans(w):\n    return operator.methodcaller('softmax', 0)(w).shape", "softmax"),
    ("import operator\ndef fans(w):\n    return operator.methodcaller('fans', w)(init)", "course_lib.init.fans"),
    ("def fans(w):\n    return torch.optim.sgd._single_tensor_sgd(w)", "torch.optim.sgd._single_tensor_sgd"),
])
def test_names_resolve_through_values_not_spellings(answer, what):
    kinds = _kinds(answer)
    if what is None:  # __import__ is tampering in itself
        assert any(k == "tamper" for k, _ in kinds), kinds
    else:
        assert ("forbidden", what) in kinds, kinds


@pytest.mark.parametrize("code", [
    "def fans(w):\n    return torch.sys.modules['course_lib.init'].fans(w)",
    "def fans(w):\n    return getattr(torch, 'sys').modules['course_lib.init'].fans(w)",
    "def fans(w):\n    return torch._C._nn.leaky_relu(w)",
    "def fans(w):\n    return torch.ops.aten.elu(w)",
    "_o = torch.ops\ndef fans(w):\n    return _o.aten.elu(w)",
    "def fans(w):\n    return getattr(init.fans, '__code__')",
    "_T = torch.Tensor\n_T.all = lambda *a, **k: torch.tensor(True)\ndef fans(w):\n    return w.shape[1], w.shape[0]",
    "import functools\ndef fans(w):\n    return functools.reduce(getattr, ['sys', 'modules'], torch)",
])
def test_reaching_internals_by_any_route_is_tampering(code):
    findings = policy.check(_nb(code), SOURCE, EXERCISES)
    assert any(f.kind == "tamper" for f in findings), findings


@pytest.mark.parametrize("name", ["types", "code", "signal", "inspect", "gc", "marshal", "atexit", "concurrent"])
def test_a_local_name_like_a_module_is_judged_by_what_it_is_bound_to(name):
    answer = (f"def fans(w, {name}=None):\n    {name} = w.shape\n    return {name}[1], {name}[0]\n"
              f"def other({name}):\n    return {name}.shape")
    assert _kinds(answer) == []
    assert any(k == "tamper" for k, _ in _kinds(f"import {name}\ndef fans(w):\n    return w.shape[1], w.shape[0]"))


def test_a_torch_tensor_method_pattern_forbids_the_method_form():
    exercises = {"fans": policy.Exercise("fans", ["test_fans"], forbid=["torch.Tensor.cov", "torch.cov"])}
    findings = policy.check(_nb("def fans(w):\n    return w.cov().shape"), SOURCE, exercises)
    assert "cov" in [f.what for f in findings if f.kind == "forbidden"], findings
    assert not policy.check(_nb("def fans(w):\n    return w.cov().shape"), SOURCE, EXERCISES)


def test_a_helper_in_another_exercises_cell_counts_as_the_exercise():
    exercises = {**EXERCISES, "other": policy.Exercise("other", [], forbid=[])}
    nb = _nb("def fans(w):\n    return helper(w)")
    nb.cells.insert(1, _cell("def helper(w):\n    return init.fans(w)", "other", solution=True))
    findings = policy.check(nb, SOURCE, exercises)
    assert any(f.kind == "forbidden" and f.exercise == "fans" for f in findings), findings
