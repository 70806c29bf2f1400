"""course_lib: reference implementations for the course on practical tricks for training deep networks.

A chapter imports what it needs in one line, for example::

    from course_lib import data, grading, init, models, runtime, train
"""
from . import diagnostics, gradcheck, grading, init, models, runtime, train

__all__ = ["diagnostics", "gradcheck", "grading", "init", "models", "runtime", "train"]
__version__ = "0.1.0"
