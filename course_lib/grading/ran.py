"""What ran while a student's function ran under a graded check: judged by what runs, not by names.

A name-based check (:mod:`course_lib.instructor.policy`) can be routed around: an alias, ``attrgetter``,
``torch.ops.aten.elu``, ``torch._C._nn.elu``, ``sys.modules``. Every such route ends in the same code, so
while ``course grade`` runs (:func:`course_lib.grading.report.enabled`),
:func:`course_lib.grading.call_without_reference` runs the student's function under a :class:`Recorder`,
which notes, for that call only:

- torch's operators, through a :class:`~torch.utils._python_dispatch.TorchDispatchMode`: each op's
  ``overloadpacket`` (``aten.elu``, ``aten.native_batch_norm``, ``aten._fused_adam_``, ``aten.renorm``);
- torch's Python API, through a :class:`~torch.overrides.TorchFunctionMode`: ``torch.cov``, ``torch.Tensor.cov``,
  ``torch.nn.functional.elu``, however they were called (``operator.methodcaller`` and ``map`` call from C,
  where the profile hook below does not see the call; an operator that torch decomposes, such as ``cov``,
  shows here under its own name);
- the library functions that ran, through a :func:`sys.setprofile` hook: Python functions whose module is
  in torch, torchvision, sklearn, scipy, numpy, pandas or course_lib (``sklearn.metrics._classification.
  confusion_matrix``, ``torch.nn.init.kaiming_normal_``), and C functions of those packages, by their
  module and qualified name (``torch.cov``, ``torch._C._nn.elu``, ``torch.Tensor.cov``);
- whether the recorder stayed in place: the profile hook still installed and the dispatch mode still on
  torch's stack when the function returned, and none of :data:`TAMPER` called (turning the profile hook or
  the dispatch modes off, starting a thread or a process, which would run out of its sight).

The names go to the grader as a ``{"kind": "ran"}`` report (:func:`course_lib.grading.report.ran`), which
compares them with the exercise's ``forbid_ran`` globs (:mod:`course_lib.instructor.verdict`). A set is kept,
not a list, and a code object's name is computed once. Outside grading nothing is installed.
"""
from __future__ import annotations

import fnmatch
import sys

PACKAGES = frozenset({"torch", "torchvision", "sklearn", "scipy", "numpy", "pandas", "course_lib"})
# Calls that turn the recorder off or run code out of its sight: a report that holds one of them is tampered.
TAMPER = ("sys.setprofile", "sys.settrace", "threading.setprofile*", "threading.settrace*",
          "_thread.start_new_thread", "_thread.start_joinable_thread", "_thread.start_new", "posix.fork",
          "posix.forkpty", "posix.posix_spawn*", "posix.exec*", "_posixsubprocess.fork_exec",
          "torch._C._pop_torch_dispatch_stack", "torch._C._set_dispatch_mode", "torch._C._unset_dispatch_mode",
          "torch._C._DisableTorchDispatch", "torch._C._DisablePythonDispatcher",
          "torch._C._push_on_torch_dispatch_stack", "torch._C._set_torch_dispatch_mode",
          "torch.utils._python_dispatch._disable_current_modes", "torch.utils._python_dispatch._pop_mode*",
          "torch.utils._python_dispatch._push_mode", "torch._C._ExcludeDispatchKeyGuard",
          "torch._C._RestorePythonTLSSnapshot", "torch._C._set_python_dispatcher", "torch._C._pop_torch_function_stack",
          "torch._C._push_on_torch_function_stack", "torch._C.DisableTorchFunction*", "torch._C._DisableTorchFunction*",
          "torch._C._disabled_torch_function_impl", "torch._C._disabled_torch_dispatch_impl",
          "torch.overrides._no_torch_function_mode",
          "torch._C._set_torch_function_mode", "torch.compile", "torch._dynamo.optimize*")
_TAMPER_NAMES = frozenset(("sys", "threading", "_thread", "posix", "_posixsubprocess"))
# torch's plumbing that runs for every operator under a mode (not an answer): not recorded, nor its C calls
QUIET = ("torch._dynamo.", "torch._compile", "torch._library.", "torch.compiler", "torch.fx.experimental.",
         "torch._ops", "torch.overrides", "torch._guards", "torch._logging")
_Module = type(sys)
MAX_NAMES = 20000  # a call that runs more distinct library functions than this is reported as incomplete
_OWN = __file__.removesuffix("c")  # frames of this module (and torch's mode machinery) are not recorded


def _machinery() -> frozenset:
    import torch.overrides as ov
    import torch.utils._python_dispatch as pd

    return frozenset({_OWN, _OWN.replace("ran.py", "__init__.py"), pd.__file__, ov.__file__})


def tampered(names) -> list[str]:
    """The names among ``names`` that turn the recorder off or run code out of its sight."""
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in TAMPER))


# Libraries whose own threads and mode switches are not the student's doing (tqdm's monitor thread, torch
# turning its modes off to print a tensor in ``torch._tensor_str``).
LIBRARIES = (PACKAGES - {"course_lib"}) | {"tqdm"}
_PASS_THROUGH = frozenset({"contextlib", "threading"})


def _library_caller(frame) -> bool:
    """Whether the code that made a :data:`TAMPER` call (past ``contextlib``'s and ``threading``'s frames) is a
    library's: such a call counts only from other code (the student's, or a module that runs it elsewhere,
    such as ``concurrent.futures``)."""
    while frame is not None and frame.f_globals.get("__name__") in _PASS_THROUGH:
        frame = frame.f_back
    mod = frame.f_globals.get("__name__") if frame is not None else None
    return isinstance(mod, str) and mod.partition(".")[0] in LIBRARIES


def _c_name(fn) -> str | None:
    """``module.qualname`` of a C function (a bound method by its type's module), or None if not recorded."""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qual, str):
        return None
    mod = getattr(fn, "__module__", None)
    if not isinstance(mod, str):
        owner = getattr(fn, "__self__", None)
        mod = type(owner).__module__ if owner is not None and not isinstance(owner, type(sys)) else \
            getattr(owner, "__name__", None)
    if not isinstance(mod, str):
        return None
    top = mod.partition(".")[0]
    if top not in PACKAGES and top not in _TAMPER_NAMES:
        return None
    if qual.startswith("_VariableFunctionsClass."):  # torch.cov, torch.batch_norm: the torch namespace
        mod, qual = "torch", qual.partition(".")[2]
    elif qual.startswith("TensorBase."):  # x.cov(): the method form
        mod, qual = "torch", "Tensor." + qual.partition(".")[2]
    name = f"{mod}.{qual}"
    if "pybind11" in name:  # torch._C's pybind functions: their qualified name holds pybind's function record
        name = ".".join(part for part in name.split(".") if "pybind11" not in part)
    return name


def _torch_function_name(func) -> str | None:
    """The name of a function that torch's ``__torch_function__`` handling passed on: ``torch.cov``,
    ``torch.Tensor.cov`` (a method, however it was called), ``torch.Tensor.T`` (a property),
    ``torch.nn.functional.elu``."""
    owner = getattr(func, "__self__", None)
    if type(owner).__name__ == "getset_descriptor":  # a property read: x.T
        return f"torch.Tensor.{getattr(owner, '__name__', '?')}"
    if getattr(func, "__objclass__", None) is not None:  # a method of torch._C.TensorBase
        return f"torch.Tensor.{getattr(func, '__name__', '?')}"
    return _c_name(func)


_warm = []


def _warm_up() -> None:
    """torch imports modules the first time a dispatch mode runs an op: done once, before any recording."""
    if not _warm:
        import torch
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Nothing(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return func(*args, **(kwargs or {}))

        class _NoFunction(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                return func(*args, **(kwargs or {}))

        with _Nothing(), _NoFunction():
            torch.zeros(1).add(1)
        _warm.append(True)


class Recorder:
    """A context manager that records what runs inside it (see the module's docstring).

    ``names`` (a set) holds what ran; ``intact`` says whether the recorder stayed in place to the end.
    """

    def __init__(self):
        self.names: set[str] = set()
        self.intact = True
        self._codes: dict = {}
        self._c_names: dict = {}
        self._c_tamper: dict = {}
        self._busy = 0
        self._mode = self._functions = None
        self._previous = None

    # --- the profile hook: called for every Python and C call, so it does as little as it can: what a code
    # object is (its name, whether it is torch's dispatch plumbing) and a C function's name are computed once
    def _hook(self, frame, event, arg):
        if self._busy:
            return
        code = frame.f_code
        info = self._codes.get(code)
        if info is None:
            info = self._codes[code] = self._describe(frame)
        if event == "call":
            if info[0] is not None:
                caller = frame.f_back
                if caller is None or caller.f_code.co_filename not in self._skip:
                    if not info[2] or not _library_caller(caller):
                        self.names.add(info[0])
        elif event == "c_call" and not info[1]:
            owner = getattr(arg, "__self__", None)
            key = arg if owner is None or isinstance(owner, (type, _Module)) else (type(owner), arg.__name__)
            name = self._c_names.get(key, 0)
            if name == 0:
                name = self._c_names[key] = _c_name(arg)
                self._c_tamper[key] = name is not None and bool(tampered([name]))
            if name is not None and not (self._c_tamper[key] and _library_caller(frame)):
                self.names.add(name)

    def _describe(self, frame) -> tuple:
        """(the name to record for a call of this code or None, whether its own C calls are plumbing, whether
        the name is one of :data:`TAMPER`)."""
        mod = frame.f_globals.get("__name__")
        quiet = frame.f_code.co_filename in self._skip
        if not isinstance(mod, str) or mod.partition(".")[0] not in PACKAGES or mod.startswith("course_lib.grading"):
            return None, quiet, False  # the checks' own code (assert_follows runs the optimizer through a closure)
        if mod.startswith(QUIET):
            return None, True, False
        name = f"{mod}.{getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}"
        return name, quiet, bool(tampered([name]))

    def __enter__(self):
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        recorder = self

        class _Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = _torch_function_name(func)
                if name is not None:
                    recorder.names.add(name)
                return func(*args, **(kwargs or {}))

        class _Ops(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                recorder._busy += 1
                try:
                    recorder.names.add(str(func.overloadpacket))
                    return func(*args, **(kwargs or {}))
                finally:
                    recorder._busy -= 1

        _warm_up()
        self._skip = _machinery()
        self._mode, self._functions = _Ops(), _Functions()
        self._previous = sys.getprofile()
        self._mode.__enter__()
        self._functions.__enter__()
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        from torch.overrides import _get_current_function_mode_stack
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

        hook = sys.getprofile()
        sys.setprofile(self._previous)
        if hook != self._hook:
            self.intact = False
        self._exit_mode(self._functions, _get_current_function_mode_stack)
        self._exit_mode(self._mode, _get_current_dispatch_mode_stack)
        if tampered(self.names) or len(self.names) > MAX_NAMES:
            self.intact = False
        return False

    def _exit_mode(self, mode, stack) -> None:
        """Leave ``mode`` (and any mode left on top of it); the report is not intact unless it was on top."""
        try:
            modes = stack()
            if not modes or modes[-1] is not mode:
                self.intact = False
            if mode in modes:
                while stack()[-1] is not mode:  # a mode left on top of ours
                    stack()[-1].__exit__(None, None, None)
                mode.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - whatever the stack holds, the report says it was not intact
            self.intact = False
