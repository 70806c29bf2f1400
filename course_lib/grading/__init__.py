"""Helpers for the graded test cells of the notebooks.

- :func:`assert_close` compares a student's result with the reference's and, when they differ, says
  what was expected and what came back: shapes, the worst element, and its relative error.
- :func:`assert_recorded` compares a student's result with the value the instructor's solution returned
  for the same named check, recorded in the chapter's ``recorded.json`` (:mod:`course_lib.grading.recorded`);
  visible tests use it where neither torch nor an invariant gives the expected value.
- :func:`call_without_reference` runs a student's function with the reference implementations
  disabled, so that a function which merely calls ``course_lib`` (or ``torch.nn.init``) fails.

While ``course grade`` grades a submission (``COURSE_GRADING_REPORT=1`` in the kernel), every check
also reports what the student's code returned (:mod:`course_lib.grading.report`), and the grader
compares it, outside the kernel, with the value the instructor's solution produced, and
:func:`call_without_reference` reports what ran while the student's function ran. The comparison
in the kernel stays: it gives the student the message, in JupyterLab's Validate too.
"""
from __future__ import annotations

import contextlib
import inspect
import types
from typing import Callable, Iterable

import numpy as np

from . import recorded, report  # noqa: F401 - torch is imported where it is used, so the grader can read report

_TRIPWIRE_MARK = "course_lib reference called by the graded function"


def _as_tensor(value, name: str):
    """Convert numbers, sequences, NumPy arrays and tensors to a float64 CPU tensor."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.array(value, dtype=np.float64))  # a copy: read-only arrays warn in torch
    except (TypeError, ValueError) as err:
        _fail(f"{name}: expected a number or an array, got {type(value).__name__} ({err})")


def assert_close(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8, name: str = "result") -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise (``torch.isclose``'s rule).

    On failure the message gives the shapes, how many elements are off, the worst element's index,
    the expected and returned values there, and the relative error ``|a - e| / max(|e|, 1e-12)``;
    for a single number, just the expected and returned values and the relative error.
    NaNs compare equal only to NaNs.
    """
    __tracebackhide__ = True  # noqa: F841 - read by IPython's and pytest's traceback printers
    import torch

    if report.enabled():
        report.close(name, actual, expected, rtol=rtol, atol=atol)
    if actual is None:
        _fail(f"{name}: expected a value, got None (did the function forget to `return`?)")
    got, want = _as_tensor(actual, name), _as_tensor(expected, name)
    if got.shape != want.shape:
        _fail(f"{name}: expected shape {tuple(want.shape)}, got shape {tuple(got.shape)}")
    ok = torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if not bool(ok.all()):
        _fail(_mismatch(name, got, want, ok, rtol, atol))


def assert_recorded(actual, *, name: str, rtol: float = 1e-5, atol: float = 1e-8) -> None:
    """Assert that ``actual`` is close (:func:`assert_close`'s rule) to the value the instructor's solution
    returned for the check ``name``, recorded in the chapter's ``recorded.json``.

    ``name`` must say the input (``"fans of a weight of shape (100, 300)"``): the failure message repeats it
    with the expected and returned values. Under ``course record`` the value is recorded instead; under
    ``course grade`` it is only reported, and the grader compares it with the trusted run's.
    """
    __tracebackhide__ = True  # noqa: F841
    if report.enabled():
        report.close(name, actual, actual, rtol=rtol, atol=atol)
        return
    if actual is None:
        _fail(f"{name}: expected a value, got None (did the function forget to `return`?)")
    if recorded.recording():
        recorded.record(name, actual)
        return
    assert_close(actual, recorded.expected(name), rtol=rtol, atol=atol, name=name)


def _mismatch(name: str, got, want, ok, rtol: float, atol: float) -> str:
    """The message for a failed :func:`assert_close`: the worst element, expected vs got, relative error.

    A single number reads plainly (``expected 1.5, got 1.7``); an array also gives how many elements
    differ, its shape and the worst element's index.
    """
    import torch

    err = (got - want).abs()
    err = torch.where(ok, torch.zeros_like(err), torch.nan_to_num(err, nan=float("inf")))
    flat = int(err.reshape(-1).argmax())
    e, a = float(want.reshape(-1)[flat]), float(got.reshape(-1)[flat])
    rel = abs(a - e) / max(abs(e), 1e-12)
    values = f"expected {e:.6g}, got {a:.6g} (relative error {rel:.3g}; rtol={rtol:g}, atol={atol:g})"
    if want.dim() == 0:
        return f"{name}: {values}"
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(want.shape)))
    return (f"{name}: {int((~ok).sum())} of {ok.numel()} elements differ; shape {tuple(want.shape)}; "
            f"worst at index {index}: {values}")


# The checks fail from this one-line frame and hide their own (``__tracebackhide__``, which IPython and
# pytest honour): a student's traceback goes from the test cell straight to the message below.
def _fail(message: str):
    """Raise ``AssertionError(message)``, without the exception that was being handled as its cause."""
    raise AssertionError(message) from None


def _tripwire_code(fn: types.FunctionType) -> types.CodeType:
    """A code object with ``fn``'s signature shape that raises instead of computing."""
    def tripwire(*args, **kwargs):
        # The code runs with the reference's globals, so the message is a literal (= _TRIPWIRE_MARK).
        raise RuntimeError("course_lib reference called by the graded function")
    return tripwire.__code__.replace(co_name=fn.__code__.co_name)


@contextlib.contextmanager
def _disabled(references: Iterable[Callable]):
    """Swap each reference function's ``__code__`` for a tripwire, however it was imported.

    Every name bound to the function object (``from course_lib.init import ...`` included) sees it.
    """
    saved = []
    try:
        for ref in references:
            target = inspect.unwrap(ref)  # through decorators such as @torch.no_grad()
            if not isinstance(target, types.FunctionType) or target.__code__.co_freevars:
                raise TypeError(f"cannot guard {ref!r}: only plain Python functions can be disabled")
            saved.append((target, target.__code__))
            target.__code__ = _tripwire_code(target)
        yield
    finally:
        for ref, code in saved:
            ref.__code__ = code


def call_without_reference(student_fn: Callable, references: Iterable[Callable], *args, **kwargs):
    """Call ``student_fn(*args, **kwargs)`` with every function in ``references`` disabled.

    Returns the student's result. Fails with a clear message if the student's function called one of
    the references instead of implementing the computation itself. Compute the expected value with
    the reference *before* calling this.

    While ``course grade`` runs, the call also reports what ran inside it (torch's operators and the
    library functions, :mod:`course_lib.grading.ran`), for the grader to compare with the exercise's
    ``forbid_ran`` policy; outside grading nothing is recorded.
    """
    references = list(references)
    try:
        with _disabled(references):
            if not report.enabled():
                return student_fn(*args, **kwargs)
            from .ran import Recorder

            recorder = Recorder()
            try:
                with recorder:
                    return student_fn(*args, **kwargs)
            finally:  # a function that raises reports what ran too: the trusted run's checks expect the report
                report.ran(getattr(student_fn, "__name__", "your function"), recorder.names, recorder.intact)
    except RuntimeError as err:
        if _TRIPWIRE_MARK in str(err):
            names = ", ".join(f"{r.__module__}.{r.__qualname__}" for r in references)
            raise AssertionError(
                f"{getattr(student_fn, '__name__', 'your function')} calls the reference implementation "
                f"({names}) instead of computing the result itself; write the formula out"
            ) from None
        raise


def assert_raises(exception: type[BaseException], fn: Callable, *args, name: str | None = None, **kwargs) -> None:
    """Assert that ``fn(*args, **kwargs)`` raises ``exception``; say what happened instead if not."""
    __tracebackhide__ = True  # noqa: F841
    label = name or f"{getattr(fn, '__name__', 'the function')}{args!r}"
    try:
        result = fn(*args, **kwargs)
    except exception:
        if report.enabled():
            report.raised(label, True)
        return
    except Exception as err:  # noqa: BLE001 - report whatever came back
        if report.enabled():
            report.raised(label, False)
        _fail(f"{label}: expected {exception.__name__}, got {type(err).__name__}: {err}")
    if report.enabled():
        report.raised(label, False)
    _fail(f"{label}: expected {exception.__name__}, but it returned {result!r}")
