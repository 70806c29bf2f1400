"""course_lib: reference implementations for the course on practical tricks for training deep networks.

A chapter imports what it needs in one line, for example::

    from course_lib import data, grading, init, models, runtime, train

Submodules load on first use (PEP 562), so ``import course_lib`` costs nothing and the instructor's side
(:mod:`course_lib.instructor`: ``course grade`` and the build) never imports torch.
"""
from __future__ import annotations

import importlib

__all__ = ["diagnostics", "gradcheck", "grading", "init", "models", "runtime", "train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``course_lib.init`` and friends, imported when first asked for."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{name}":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        raise
    globals()[name] = module
    return module
