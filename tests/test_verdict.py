"""The comparison outside the kernel (``course_lib.instructor.verdict``) and what a check reports."""
from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
import torch

from course_lib import grading
from course_lib.grading import report
from course_lib.instructor import verdict


def _close(name, actual, expected, rtol=1e-5, atol=1e-8):
    return {"kind": "close", "name": name, "rtol": rtol, "atol": atol,
            "actual": report.encode(actual), "expected": report.encode(expected)}


TRUSTED = verdict.trusted_checks([_close("a", [1.0, 2.0], [1.0, 2.0]), {"kind": "raises", "name": "r", "raised": True}])


def test_matching_reports_pass():
    got = [_close("a", [1.0, 2.0 + 1e-9], [9.0, 9.0]), {"kind": "raises", "name": "r", "raised": True}]
    assert verdict.compare(TRUSTED, got) is None  # the kernel's own expected value plays no part


def test_a_wrong_value_fails_against_the_trusted_value_even_if_the_kernel_agreed():
    got = [_close("a", [1.0, 5.0], [1.0, 5.0]), {"kind": "raises", "name": "r", "raised": True}]
    message = verdict.compare(TRUSTED, got)
    assert "1 of 2 elements differ" in message and "expected 2, got 5" in message


def test_a_single_number_reads_plainly():
    trusted = verdict.trusted_checks([_close("s", 1.5, 1.5)])
    message = verdict.compare(trusted, [_close("s", 1.7, 1.7)])
    assert message.startswith("s: differs from the instructor's solution") and "expected 1.5, got 1.7" in message
    assert "elements" not in message and "index" not in message


def test_self_checks_compare_with_the_students_own_expected_value():
    got = [_close("a", [1.0, 5.0], [1.0, 5.0]), {"kind": "raises", "name": "r", "raised": True}]
    assert verdict.compare(TRUSTED, got, self_checks=["a"]) is None


@pytest.mark.parametrize("got, says", [
    ([], "made 0 of its 2 checks"),
    ([_close("a", [1.0, 2.0], [1.0, 2.0])], "the first one missing is 'r'"),
    ([_close("b", [1.0, 2.0], [1.0, 2.0]), {"kind": "raises", "name": "r", "raised": True}], "ran differently"),
    ([_close("a", [1.0, 2.0], [1.0, 2.0]), {"kind": "raises", "name": "r", "raised": False}], "not raised"),
    ([_close("a", [1.0, 2.0], [1.0, 2.0])] * 2 + [{"kind": "raises", "name": "r", "raised": True}], "extra reports"),
    ([_close("a", [[1.0, 2.0]], [1.0, 2.0]), {"kind": "raises", "name": "r", "raised": True}], "expected shape"),
    ([{**_close("a", 1, 1), "actual": {"error": "not a plain number"}}, {"kind": "raises", "name": "r", "raised": True}],
     "could not be compared"),
])
def test_skipped_forged_or_wrong_reports_fail(got, says):
    assert says in verdict.compare(TRUSTED, got)


def test_a_cell_without_trusted_checks_keeps_the_kernels_verdict():
    assert verdict.compare([], [_close("x", 1, 2)]) is None


def test_only_plain_values_are_reported():
    class Num(float):
        pass

    class Sub(torch.Tensor):
        pass

    assert report.encode(Num(1.0)).get("error")
    assert report.encode(torch.ones(2).as_subclass(Sub)).get("error")
    for value in (1, 2.5, True, np.float32(3), np.arange(3), torch.ones(2, 2), torch.nn.Parameter(torch.ones(2)), [torch.tensor(1.0), 2], (1, 2)):
        assert report.decode(report.encode(value)).dtype == np.float64


def test_decoding_refuses_huge_or_inconsistent_data():
    bomb = {"shape": [2], "data": base64.b64encode(zlib.compress(b"\0" * 10 ** 7)).decode()}
    with pytest.raises(ValueError, match="does not hold 2 numbers"):
        report.decode(bomb)
    with pytest.raises(ValueError, match="too large"):
        report.decode({"shape": [10 ** 6, 10 ** 6], "data": ""})


def test_checks_report_while_grading_and_still_compare_in_the_kernel(monkeypatch):
    published = []
    monkeypatch.setenv(report.ENV, "1")
    monkeypatch.setattr(report, "_publish", published.append)
    grading.assert_close(torch.ones(2), torch.ones(2), name="ones")
    with pytest.raises(AssertionError):
        grading.assert_close(torch.zeros(2), torch.ones(2), name="zeros")
    grading.assert_raises(ValueError, int, "x", name="int('x')")
    assert [p["name"] for p in published] == ["ones", "zeros", "int('x')"]
    assert report.decode(published[1]["actual"]).tolist() == [0.0, 0.0] and published[2]["raised"] is True
    monkeypatch.delenv(report.ENV)
    grading.assert_close(1.0, 1.0)
    assert len(published) == 3  # nothing is reported outside grading


def test_trusted_records_are_checked_on_every_read(tmp_path):
    """A record that changes after the trusted run wrote it (rewritten, replaced by a link, its checksums
    gone) is refused with a message; it never reads as 'no checks' (the kernel's own verdict)."""
    verdict.write_records(tmp_path, {"hw": {"test_a": TRUSTED}, "other": {"test_b": []}})
    assert verdict.read_record(tmp_path, "hw") == {"test_a": TRUSTED}
    verdict.check_records(tmp_path)
    record = tmp_path / "hw.json"
    assert record.stat().st_mode & 0o777 == 0o444
    original = record.read_bytes()
    record.chmod(0o644)
    record.write_text('{"test_a": []}')
    with pytest.raises(verdict.TrustedRecordChanged, match="does not match its SHA-256"):
        verdict.read_record(tmp_path, "hw")
    with pytest.raises(verdict.TrustedRecordChanged, match="delete"):
        verdict.check_records(tmp_path)
    record.unlink()
    (tmp_path / "copy.json").write_bytes(original)
    record.symlink_to(tmp_path / "copy.json")  # the same bytes, through a link
    with pytest.raises(verdict.TrustedRecordChanged, match="cannot be read"):
        verdict.read_record(tmp_path, "hw")
    (tmp_path / verdict.SUMS).unlink()
    with pytest.raises(verdict.TrustedRecordChanged):
        verdict.read_record(tmp_path, "other")
