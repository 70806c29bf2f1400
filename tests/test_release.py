"""The student release (issue 20): built by ``course release``, installed in a fresh virtual environment.

- What the release holds: notebooks with their recorded values, a course_lib wheel, no solutions,
  policies, tests or benchmarks, and no source of any reference implementation.
- In a fresh environment holding only the release's course_lib: each reference raises ``Unreleased``
  naming its chapter; every chapter's notebooks run there with the solutions filled in (experiments
  included), and every visible test of a blank notebook fails with a message; Validate works.
- The stripping itself, and :func:`course_lib.grading.assert_recorded` in its three modes.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import quick_profile
from course_lib import grading, release
from course_lib.grading import recorded
from course_lib.instructor import build, release_check
from course_lib.instructor import release as builder

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = build.chapters(ROOT)


# ---------------------------------------------------------------------------------------------- stripping

SOURCE = '''\
import torch
from .release import reference


@reference("03_initialization", "fans")
@torch.no_grad()
def fans(t):
    """The fans: (in * receptive field, out * receptive field)."""
    return t.shape[1], t.shape[0]


class Holder:
    @reference("04_training")
    def step(self):
        x = 1
        return x


@reference("04_training", "adam")
class Adam(object):
    """Adam."""

    def __init__(self, p):
        self.p = p


def helper(t):
    return fans(t)
'''


def test_strip_replaces_each_unreleased_body_with_a_raise():
    new, stripped = builder.strip(SOURCE, "course_lib.x")
    assert stripped == [("course_lib.x.fans", "03_initialization"), ("course_lib.x.Holder.step", "04_training"),
                        ("course_lib.x.Adam", "04_training")]
    assert "t.shape[1], t.shape[0]" not in new and "x = 1" not in new and "self.p = p" not in new
    assert "The fans:" not in new, "the docstring restates the formula: it goes too"
    assert "def helper(t):\n    return fans(t)" in new, "unmarked code stays as it is"
    namespace = {"reference": release.reference, "torch": __import__("torch")}
    exec(compile(new.replace("from .release import reference", ""), "x", "exec"), namespace)
    for call in (lambda: namespace["fans"](None), lambda: namespace["Holder"]().step(),
                 lambda: namespace["Adam"]([]), lambda: namespace["helper"](None)):
        with pytest.raises(release.Unreleased, match="not in the student release"):
            call()


def test_released_chapters_keep_their_references():
    new, stripped = builder.strip(SOURCE, "course_lib.x", released={"04_training"})
    assert stripped == [("course_lib.x.fans", "03_initialization")]
    assert "self.p = p" in new and "x = 1" in new


def test_unmarked_helpers_that_a_reference_calls_are_listed():
    source = SOURCE + '''

def _kernel(t):
    a = t + 1
    b = a * 2
    c = b - 3
    return c


def _check(t):
    return t


@reference("05_activations", "elu")
def elu(t):
    _check(t)
    return _kernel(t)
'''
    assert builder.unmarked_helpers(source, "course_lib.x") == {"course_lib.x.elu": ["course_lib.x._kernel"]}


def test_a_body_on_the_def_line_is_refused():
    with pytest.raises(ValueError, match="on its `def` line"):
        builder.strip('@reference("01_augmentation")\ndef f(x): return x\n', "course_lib.y")


def test_unreleased_names_the_chapter_and_is_a_not_implemented_error():
    err = release.Unreleased("course_lib.init.fans", "03_initialization")
    assert isinstance(err, NotImplementedError)
    assert "course_lib.init.fans" in str(err) and "03_initialization" in str(err)
    with pytest.raises(TypeError, match="chapter id"):
        release.reference(3)


# ------------------------------------------------------------------------------------------- recorded values

def test_assert_recorded_records_then_compares_and_says_what_was_expected(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_GRADING_REPORT", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(recorded.RECORD_ENV, str(tmp_path / recorded.FILE))
    grading.assert_recorded([1.0, 2.5], name="f of (1, 2)")
    grading.assert_recorded(3, name="g of 3")
    with pytest.raises(ValueError, match="rename one"):
        grading.assert_recorded(4, name="g of 3")
    monkeypatch.delenv(recorded.RECORD_ENV)
    grading.assert_recorded([1.0, 2.5 + 1e-9], name="f of (1, 2)")
    with pytest.raises(AssertionError, match=r"f of \(1, 2\): 1 of 2 elements differ.*expected 2.5, got 2.6"):
        grading.assert_recorded([1.0, 2.6], name="f of (1, 2)")
    with pytest.raises(AssertionError, match="g of 3: expected 3, got 4"):
        grading.assert_recorded(4, name="g of 3")
    with pytest.raises(AssertionError, match="no value is recorded for this check"):
        grading.assert_recorded(4, name="h of 4")
    with pytest.raises(AssertionError, match="forget to `return`"):
        grading.assert_recorded(None, name="g of 3")


def test_assert_recorded_without_the_file_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_GRADING_REPORT", raising=False)
    monkeypatch.delenv(recorded.RECORD_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="no recorded.json next to the notebook"):
        grading.assert_recorded(1.0, name="f of 1")


def test_assert_recorded_under_course_grade_reports_and_reads_nothing(tmp_path, monkeypatch):
    published = []
    monkeypatch.setattr(grading.report, "_publish", published.append)
    monkeypatch.setenv("COURSE_GRADING_REPORT", "1")
    monkeypatch.chdir(tmp_path)  # no recorded.json here: the grading kernel never reads one
    grading.assert_recorded([1.0, 2.0], name="f of (1, 2)")
    (payload,) = published
    assert payload["kind"] == "close" and payload["name"] == "f of (1, 2)"
    assert grading.report.decode(payload["actual"]).tolist() == [1.0, 2.0]


def test_no_hidden_test_records_a_value():
    """Recorded values ship to students: a hidden test's value would give the hidden test away."""
    import nbformat

    from course_lib.instructor.record import _hidden_recorded

    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        assert not _hidden_recorded(nbformat.read(path, as_version=4)), path.name


def test_every_recorded_check_is_released_with_its_chapter():
    for chapter in CHAPTERS:
        source, student = ROOT / "solutions" / chapter / recorded.FILE, ROOT / "notebooks" / chapter / recorded.FILE
        uses = any("assert_recorded" in p.read_text() for p in (ROOT / "solutions" / chapter).glob("*.ipynb"))
        assert source.exists() == uses, f"{chapter}: run `make notebooks CHAPTERS={chapter}`"
        if uses:
            assert student.exists() and student.read_text() == source.read_text(), \
                f"notebooks/{chapter}/{recorded.FILE} is not the recorded one: run `make notebooks CHAPTERS={chapter}`"


# ------------------------------------------------------------------------------------ the release, built

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "release"
    proc = subprocess.run([str(Path(sys.executable).parent / "course"), "release", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _references_in_source() -> list[tuple[str, str, ast.AST, str]]:
    """``(name, chapter, node, module source)`` of every reference marked in this checkout's course_lib."""
    found = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found += [(n, c, node, text) for n, c, node in builder.marked(text, module)]
    return found


def test_the_release_holds_notebooks_and_a_wheel_but_no_answers(built):
    names = {p.relative_to(built).parts[0] for p in built.rglob("*")}
    assert names == {"notebooks", "wheels", "requirements.txt", "README.md", "RELEASE.json", "nbgrader_config.py"}
    for chapter in CHAPTERS:
        for nb in (ROOT / "notebooks" / chapter).iterdir():
            assert (built / "notebooks" / chapter / nb.name).read_bytes() == nb.read_bytes()
    manifest = json.loads((built / "RELEASE.json").read_text())
    assert manifest["released"] == []
    assert set(manifest["calls_unmarked_helpers"]) <= {r["name"] for r in manifest["left_out"]}
    assert sorted((r["name"], r["chapter"]) for r in manifest["left_out"]) == \
        sorted((n, c) for n, c, _, _ in _references_in_source())
    (wheel,) = (built / "wheels").glob("*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert not [f for f in files if re.match(r"(solutions|policies|tests|benchmarks)/", f)]


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_no_reference_body_or_docstring_is_in_the_wheel(built):
    (wheel,) = (built / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = _normalized("\n".join(zf.read(f).decode("utf-8", "replace") for f in zf.namelist()))
    refs = _references_in_source()
    assert refs, "no reference is marked with @reference: nothing would be stripped"
    for name, chapter, node, text in refs:
        body = textwrap.dedent("".join(text.splitlines(keepends=True)[node.body[0].lineno - 1:node.end_lineno]))
        assert _normalized(body) not in shipped, f"the body of {name} is in the wheel"
        doc = ast.get_docstring(node)
        if doc and len(doc) > 30:
            assert _normalized(doc) not in shipped, f"the docstring of {name} is in the wheel"
        code = [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 40 and not ln.strip().startswith("#")]
        elsewhere = _normalized("\n".join(t.replace(body, "") for _, _, _, t in {id(t): (0, 0, 0, t) for *_, t in refs}.values()))
        unique = [ln for ln in code if _normalized(ln) not in elsewhere]
        leaked = [ln for ln in unique if _normalized(ln) in shipped]
        assert not leaked, f"lines of {name} are in the wheel: {leaked[:3]}"


def test_released_chapters_are_included_on_request(tmp_path):
    refs = _references_in_source()
    chapter = refs[0][1]
    out = tmp_path / "release"
    manifest = builder.build(ROOT, out, released=[chapter])
    assert manifest["released"] == [chapter]
    assert chapter not in {r["chapter"] for r in manifest["left_out"]}
    with pytest.raises(ValueError, match="no such chapter"):
        builder.build(ROOT, tmp_path / "other", released=["99_nothing"])


# ------------------------------------------------------------------------ the release, installed and run

@pytest.fixture(scope="module")
def env(built, tmp_path_factory):
    return release_check.make_env(built, tmp_path_factory.mktemp("release-env") / "venv")


def test_course_lib_comes_from_the_release(env):
    where = release_check.where_course_lib(env)
    assert where.startswith(str(env.parent.parent)), where


def test_every_reference_raises_unreleased_naming_its_chapter(env):
    calls = release_check.call_references(env)
    assert len(calls) == len(_references_in_source())
    for name, chapter, what in calls:
        assert what.startswith("unreleased") and chapter in what, f"{name}: {what}"


def test_every_exercise_has_its_answer_marked_or_none_in_course_lib():
    """Each exercise (solution cell) names the references that answer it, or has none in course_lib."""
    import nbformat

    covered = {(ref.__course_reference__, e) for ref in release.references() for e in ref.__course_exercises__}
    exercises = {(chapter, gid) for chapter in CHAPTERS for path in (ROOT / "solutions" / chapter).glob("*.ipynb")
                 for gid in build.solution_cells(nbformat.read(path, as_version=4))}
    unknown = covered - exercises
    assert not unknown, f"@reference names exercises that do not exist: {sorted(unknown)}"
    missing = sorted(exercises - covered - NO_REFERENCE)
    assert not missing, f"exercises with no @reference and not listed in NO_REFERENCE: {missing}"


# Unmarked helpers of 5 lines or more that a left-out reference calls (RELEASE.json's calls_unmarked_helpers).
# They stay readable in the release, so each was read: none computes its exercise's formula. A new one fails
# the test below until someone reads it and adds it here, or marks it @reference.
REVIEWED_HELPERS = {
    "course_lib.architecture.conv_block": "Conv2d → ReLU: the block the exercise's text composes",
    "course_lib.augment._as_offsets": "integer offsets as an int64 (N,) tensor, with checks",
    "course_lib.augment._check_images": "checks the shape of an image batch",
    "course_lib.augment._constant": "a small constant tensor, cached per device and dtype",
    "course_lib.augment._per_sample": "broadcasts a per-image value over (N, C, H, W)",
    "course_lib.callbacks.is_improvement": "value < best − min_delta, the comparison the exercise's text gives",
    "course_lib.curves._as_array": "a curve as a float NumPy array",
    "course_lib.diagnostics.gradient_norms": "one autograd.grad, a plot helper of chapter 03 (no exercise)",
    "course_lib.ensemble.stack_logits": "stacks K members' logits into (K, N, C), with checks",
    "course_lib.hyperopt._check_range": "checks a search range",
    "course_lib.hyperopt.evaluate_trials": "calls the objective on each point and keeps the best",
    "course_lib.init.gain": "torch.nn.init.calculate_gain, as is",
    "course_lib.norm._reduce_dims": "the dimensions a batch norm reduces over, by input rank",
    "course_lib.preprocess._check_spread": "refuses a feature with no spread",
    "course_lib.preprocess.check_features": "checks a feature matrix",
}

# Unmarked functions that compute an exercise's answer by another route, kept because the course needs them
# before the student has written theirs. Each stays in the release, so a verbatim copy must score 0: it uses a
# name the exercise's policy forbids. (helper, chapter, exercise, its spelling in the helper, the name forbidden)
REVIEWED_COPIES = [
    ("course_lib.imbalance._tail_profile", "09_imbalanced_data", "long_tail_counts", "torch.logspace(", "torch.logspace"),
    ("course_lib.imbalance.balanced_indices", "09_imbalanced_data", "sample_weights", "class_counts(",
     "course_lib.imbalance.class_counts"),
]


def test_every_unmarked_helper_a_reference_calls_was_reviewed():
    found = set()
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for helpers in builder.unmarked_helpers(path.read_text(encoding="utf-8"), module).values():
            found.update(helpers)
    assert not found - set(REVIEWED_HELPERS), (
        f"left-out references call unmarked helpers nobody has reviewed: {sorted(found - set(REVIEWED_HELPERS))}; "
        "read each: mark it @reference if it holds the formula, else add it to REVIEWED_HELPERS with why")
    assert not set(REVIEWED_HELPERS) - found, f"no longer called by a reference: {sorted(set(REVIEWED_HELPERS) - found)}"


@pytest.mark.parametrize("helper, chapter, exercise, spelling, forbidden", REVIEWED_COPIES)
def test_a_copy_of_an_unmarked_route_to_an_answer_scores_zero(helper, chapter, exercise, spelling, forbidden):
    import importlib
    import inspect

    from course_lib.instructor import policy

    module, name = helper.rsplit(".", 1)
    assert spelling in inspect.getsource(getattr(importlib.import_module(module), name)), helper
    rules = policy.load(ROOT / "policies" / chapter)[exercise]
    assert policy._matches(forbidden, rules.forbid) and not policy._matches(forbidden, rules.allow), \
        f"{exercise}'s policy must forbid {forbidden}, which {helper} uses"


# Exercises whose answer is in no course_lib function (nothing to strip), with why.
NO_REFERENCE = {
    ("03_initialization", "initialize"),  # init.init_module_ is infrastructure (models): only the policy stops a call
    ("04_training", "data_parallel_gradients"),  # nothing in course_lib computes per-rank gradients
    ("04_training", "gd_epoch"),  # train.fit is every chapter's loop; torch.optim.SGD is the library's equivalent
    ("04_training", "curriculum_subset"),  # no course_lib function sorts by difficulty
    ("04_training", "linear_tanh"),  # a layer's backward written for the gradient check: autograd is the equivalent
    ("07_training_plots", "answer"),  # a written answer, read from the student's own rules
}


@pytest.fixture(scope="module")
def checked(built, env):
    """Every chapter's notebooks run in the release environment, two chapters at a time."""
    with quick_profile(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {c: pool.submit(release_check.check_chapter, ROOT, built, env.parent.parent, c) for c in CHAPTERS}
        return {c: f.result() for c, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebooks_run_in_the_release_solved_and_fail_blank(checked, chapter):
    assert not checked[chapter], "\n".join(checked[chapter])


@pytest.mark.slow
def test_validate_works_in_the_student_environment(built, env):
    """nbgrader's Validate, with the release's nbgrader_config.py, on a blank and a solved notebook."""
    import nbformat

    chapter = "03_initialization"
    (path,) = sorted((built / "notebooks" / chapter).glob("*.ipynb"))
    answers = build.solution_cells(nbformat.read(ROOT / "solutions" / chapter / path.name, as_version=4))
    solved = path.with_name("solved.ipynb")
    nbformat.write(build.fill(nbformat.read(path, as_version=4), answers), solved)
    with quick_profile():
        runs = {nb: subprocess.run([str(env), "-m", "nbgrader", "validate", str(nb)], cwd=built, text=True,
                                   capture_output=True, timeout=900, env={**os.environ, "JUPYTER_PATH": ""})
                for nb in (path, solved)}
    solved.unlink()
    blank, good = runs[path].stdout, runs[solved].stdout
    assert "VALIDATION FAILED" in blank and "not written yet" in blank, blank[-2000:]
    assert "Success! Your notebook passes all the tests." in good, good[-3000:] + runs[solved].stderr[-2000:]


def test_a_grading_kernel_gets_no_recorded_values(tmp_path):
    """The grader's copy of a submission for its kernel leaves the recorded values out (a submission could
    otherwise hand them back); grading needs none (:func:`grading.assert_recorded` only reports)."""
    from course_lib.instructor import sandbox

    (tmp_path / recorded.FILE).write_text("{}")
    (tmp_path / "data.txt").write_text("x")
    copy = Path(sandbox.scratch_copy(str(tmp_path), None))
    try:
        assert sorted(p.name for p in copy.iterdir()) == ["data.txt"]
    finally:
        sandbox.remove_scratch(str(copy), None)
