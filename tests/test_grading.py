import math

import numpy as np
import pytest
import torch

from course_lib import grading, init


def test_assert_close_passes_within_tolerance():
    grading.assert_close(torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7])
    grading.assert_close(3, 3.0)
    grading.assert_close(np.array([[float("nan")]]), torch.tensor([[float("nan")]]))


def test_assert_close_reports_worst_element_expected_and_got():
    expected = torch.zeros(3, 4)
    actual = expected.clone()
    actual[1, 2], actual[2, 3] = 0.5, 0.1
    with pytest.raises(AssertionError) as err:
        grading.assert_close(actual, expected, atol=1e-3, name="weights")
    msg = str(err.value)
    assert "weights" in msg and "2 of 12" in msg and "(1, 2)" in msg
    assert "expected 0" in msg and "got 0.5" in msg and "relative error" in msg


def test_assert_close_reports_shapes_and_none():
    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got shape \(3, 2\)"):
        grading.assert_close(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(AssertionError, match="got None"):
        grading.assert_close(None, 1.0)
    with pytest.raises(AssertionError, match="got 2"):
        grading.assert_close(2.0, 1.0, name="x")


def test_assert_close_treats_nan_as_a_failure_against_numbers():
    with pytest.raises(AssertionError, match="got nan"):
        grading.assert_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))


def test_assert_raises():
    grading.assert_raises(ValueError, int, "x")
    with pytest.raises(AssertionError, match="returned 3"):
        grading.assert_raises(ValueError, int, "3")
    with pytest.raises(AssertionError, match="got TypeError"):
        grading.assert_raises(ValueError, len, 5)


def _honest(w):
    bound = math.sqrt(6 / sum(w.shape))
    with torch.no_grad():
        return w.uniform_(-bound, bound)


def _lazy(w):
    return init.xavier_uniform_(w)


def _lazy_torch(w):
    return torch.nn.init.xavier_uniform_(w)


def test_call_without_reference_catches_a_student_who_calls_the_reference():
    refs = [init.xavier_uniform_, torch.nn.init.xavier_uniform_]
    w = torch.empty(10, 20)
    assert grading.call_without_reference(_honest, refs, w) is w
    for lazy in (_lazy, _lazy_torch):
        with pytest.raises(AssertionError, match="calls the reference implementation"):
            grading.call_without_reference(lazy, refs, torch.empty(10, 20))
    # ...and the references work again afterwards
    assert init.xavier_uniform_(torch.empty(4, 4)).abs().max() <= math.sqrt(6 / 8)


def test_call_without_reference_sees_through_aliases():
    from course_lib.init import xavier_uniform_ as alias
    with pytest.raises(AssertionError, match="calls the reference"):
        grading.call_without_reference(lambda w: alias(w), [init.xavier_uniform_], torch.empty(3, 3))


def test_call_without_reference_passes_other_errors_through():
    def broken(w):
        raise RuntimeError("a bug of the student's")
    with pytest.raises(RuntimeError, match="a bug of the student's"):
        grading.call_without_reference(broken, [init.xavier_uniform_], torch.empty(2, 2))


def test_assert_close_reads_a_single_number_plainly():
    with pytest.raises(AssertionError) as err:
        grading.assert_close(torch.tensor(1.7), torch.tensor(1.5), name="loss")
    msg = str(err.value)
    assert msg.startswith("loss: expected 1.5, got 1.7 (relative error"), msg
    assert "elements" not in msg and "index" not in msg and "shape" not in msg


def test_assert_close_traceback_hides_the_comparison_code():
    """IPython's traceback (what JupyterLab and Validate show) goes from the caller to the message."""
    from IPython.core.ultratb import VerboseTB

    try:
        grading.assert_close(torch.zeros(3), torch.ones(3), name="weights")
    except AssertionError:
        text = VerboseTB(theme_name="nocolor").text(*__import__("sys").exc_info())
    assert "weights: 3 of 3 elements differ" in text
    assert "torch.isclose" not in text and "_mismatch(" not in text and "skipping hidden" in text
