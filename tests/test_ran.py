"""What ran while a student's function ran under a graded check (issue 19, principle 2).

- the recorder (``course_lib.grading.ran``) sees torch's operators and the library functions whatever route
  reached them (an alias, ``attrgetter``, ``torch.ops``, ``torch._C``, a method, ``sys.modules``), and says
  when it was turned off; outside grading ``call_without_reference`` records and reports nothing;
- the verdict zeroes an exercise whose ``ran`` report holds a name its ``forbid_ran`` globs match, with a
  reason, and so a ``ran`` report that is missing, tampered with or unreadable; an unrelated name passes;
- every runtime shortcut a policy lists (``ran_shortcuts``) passes the static policy (so only what ran can
  catch it), and every ``forbid_ran`` exercise has a test that reports what ran.
The runtime shortcuts are graded for real in tests/test_course_grade.py.
"""
from __future__ import annotations

import copy
import operator
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib import grading
from course_lib.grading import ran, report
from course_lib.instructor import policy, verdict

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("*/*.ipynb"))


def _record(fn, *args):
    with ran.Recorder() as rec:
        fn(*args)
    return rec


X = torch.randn(6, 3)


@pytest.mark.parametrize("route", [
    lambda x: F.elu(x),
    lambda x: (lambda f=F.elu: f(x))(),  # an alias
    lambda x: operator.attrgetter("nn.functional.elu")(torch)(x),
    lambda x: torch.ops.aten.elu(x),
    lambda x: torch._C._nn.elu(x),
    lambda x: torch.functional.torch.selu(x),  # SELU is a scaled ELU: the same kernel
], ids=["F", "alias", "attrgetter", "torch.ops", "torch._C", "selu"])
def test_every_route_to_elu_records_the_aten_operator(route):
    rec = _record(route, X)
    assert "aten.elu" in rec.names and rec.intact


def test_a_method_form_and_its_library_function_are_recorded_by_name():
    rec = _record(lambda: operator.methodcaller("co" + "v")(X.T))
    assert "torch.Tensor.cov" in rec.names and rec.intact
    assert "torch.cov" in _record(lambda: torch.functional.torch.cov(X.T)).names


def test_sklearn_through_sys_modules_is_recorded_by_its_module():
    import sklearn.metrics  # noqa: F401

    rec = _record(lambda: sys.modules["sklearn.metrics"].confusion_matrix([0, 1, 1], [1, 1, 0]))
    assert "sklearn.metrics._classification.confusion_matrix" in rec.names


def test_torch_nn_init_through_another_module_is_recorded_as_torch_nn_init():
    import torchvision.ops.deform_conv as dc

    rec = _record(lambda: dc.init.kaiming_normal_(torch.empty(4, 3)))
    assert "torch.nn.init.kaiming_normal_" in rec.names


def test_own_code_records_only_the_basic_operators():
    rec = _record(lambda: torch.where(X > 0, X, torch.expm1(X)))
    assert {"aten.where", "aten.expm1", "aten.gt"} <= rec.names
    assert not verdict.forbidden_ran(rec.names, ["aten.elu*", "torch.nn.functional.*"])


def _modes_off():
    with torch.utils._python_dispatch._disable_current_modes():  # back on when it ends: only the call shows it
        return F.elu(X)


@pytest.mark.parametrize("off", [
    lambda: sys.setprofile(None),
    _modes_off,
    lambda: __import__("threading").Thread(target=lambda: F.elu(X)).start(),
], ids=["setprofile", "dispatch modes", "a thread"])
def test_turning_the_recorder_off_is_seen(off):
    previous = sys.getprofile()
    try:
        rec = _record(off)
    finally:
        sys.setprofile(previous)
    assert not rec.intact


def test_printing_a_tensor_or_a_progress_bar_is_not_tampering(capsys):
    """torch turns its own modes off to format a tensor, tqdm starts a monitor thread: not the student's doing."""
    from tqdm.std import tqdm

    rec = _record(lambda: print(X, repr(X.double()), f"{X.sum():.3f}", X.tolist(), sum(tqdm(range(3)))))
    assert rec.intact, ran.tampered(rec.names)


def test_a_thread_pool_is_seen():
    from concurrent.futures import ThreadPoolExecutor

    def pooled():
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(F.elu, X).result()

    assert not _record(pooled).intact


def test_the_previous_profile_function_is_restored():
    calls = []

    def mine(frame, event, arg):
        calls.append(event)

    sys.setprofile(mine)
    try:
        _record(lambda: F.elu(X))
        assert sys.getprofile() is mine
    finally:
        sys.setprofile(None)
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
    assert not _get_current_dispatch_mode_stack()


def _ran_reports(monkeypatch, fn, *args, grading_on=True):
    sent = []
    monkeypatch.setenv(report.ENV, "1" if grading_on else "0")
    monkeypatch.setattr(report, "_publish", sent.append)
    try:
        grading.call_without_reference(fn, [], *args)
    except Exception:  # noqa: BLE001 - the report is what is tested
        pass
    return sent


def test_call_without_reference_reports_what_ran_while_grading(monkeypatch):
    sent = _ran_reports(monkeypatch, lambda x: F.leaky_relu(x, 0.1), X)
    assert len(sent) == 1 and sent[0]["kind"] == "ran" and sent[0]["name"] == report.RAN
    assert "aten.leaky_relu" in sent[0]["names"] and sent[0]["intact"] is True


def test_a_function_that_raises_reports_what_ran_too(monkeypatch):
    def boom(x):
        F.elu(x)
        raise ValueError("bad input")

    sent = _ran_reports(monkeypatch, boom, X)
    assert [p["kind"] for p in sent] == ["ran"] and "aten.elu" in sent[0]["names"]


def test_nothing_is_recorded_outside_grading(monkeypatch):
    before = sys.getprofile()
    seen = []

    def f(x):
        seen.append(sys.getprofile())
        return F.elu(x)

    assert _ran_reports(monkeypatch, f, X, grading_on=False) == []
    assert seen == [before]


# --- the verdict

def _ran_report(names, intact=True, function="elu"):
    return {"kind": "ran", "name": report.RAN, "function": function, "names": sorted(names), "intact": intact}


TRUSTED = verdict.trusted_checks([_ran_report(["aten.where"])])


def test_a_forbidden_operator_zeroes_the_exercise_with_a_reason():
    message = verdict.compare(TRUSTED, [_ran_report(["aten.elu", "aten.where"])], forbid_ran=["aten.elu*"],
                              test="test_elu")
    assert message.startswith("while test_elu ran your elu, aten.elu ran, which this exercise forbids")


def test_an_unrelated_operator_or_an_allowed_one_passes():
    assert verdict.compare(TRUSTED, [_ran_report(["aten.where", "aten.exp"])], forbid_ran=["aten.elu*"]) is None
    assert verdict.compare(TRUSTED, [_ran_report(["aten.elu"])], forbid_ran=["aten.*"], allow_ran=["aten.elu"]) is None


def test_the_trusted_record_keeps_no_names():
    assert TRUSTED == [{"kind": "ran", "name": report.RAN}]


@pytest.mark.parametrize("got, says", [
    ([], "made 0 of its 1 checks"),
    ([_ran_report(["sys.setprofile"], intact=False)], "turned off or bypassed (sys.setprofile)"),
    ([{**_ran_report([]), "intact": "yes"}], "turned off or bypassed"),
    ([{**_ran_report([]), "names": "aten.where"}], "unreadable"),
    ([{"kind": "close", "name": report.RAN}], "ran differently"),
])
def test_a_missing_tampered_or_unreadable_ran_report_fails(got, says):
    assert says in verdict.compare(TRUSTED, got, forbid_ran=["aten.elu*"])


# --- the policies

def _ran_exercises():
    for path in NOTEBOOKS:
        src = policy.trusted(nbformat.read(path, as_version=4))
        for gid, ex in policy.load(ROOT / "policies" / path.parent.name).items():
            if gid in src.cells:
                yield path, src, gid, ex


def _checked(src) -> set:
    return {gid for gid, c in src.cells.items()
            if c.metadata["nbgrader"].get("grade") and ("call_without_reference" in c.source or "assert_follows" in c.source)}


@pytest.mark.parametrize("path, grade_id, code", [
    pytest.param(path, gid, code, id=f"{path.stem}-{gid}-{i}")
    for path, _, gid, ex in _ran_exercises() for i, code in enumerate(ex.ran_shortcuts)])
def test_every_runtime_shortcut_passes_the_static_policy(path, grade_id, code):
    """So that only what ran can catch it (the course-grade test checks that it does)."""
    nb = nbformat.read(path, as_version=4)
    src = policy.trusted(nb)
    exercises = policy.load(ROOT / "policies" / path.parent.name)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = code
    zero = policy.verdicts(policy.check(nb, src, exercises), src, exercises)
    assert not any(t in zero for t in exercises[grade_id].tests), zero


def test_every_forbid_ran_exercise_has_a_test_that_reports_what_ran():
    """An exercise's own forbid_ran (not a chapter's _default.yml) must have a test that reports what ran."""
    import yaml

    own = lambda path, gid: yaml.safe_load((ROOT / "policies" / path.parent.name / f"{gid}.yml").read_text())
    bare = [f"{path.parent.name}/{gid}" for path, src, gid, ex in _ran_exercises()
            if own(path, gid).get("forbid_ran") and not set(ex.tests) & _checked(src)]
    assert not bare, f"forbid_ran declared where no test runs call_without_reference: {bare}"
