"""Old name of :mod:`course_lib.instructor.build` (``python -m course_lib.pipeline`` still works)."""
import sys

from .instructor.build import *  # noqa: F401,F403
from .instructor.build import main

if __name__ == "__main__":
    sys.exit(main())
