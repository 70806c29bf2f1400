"""Which functions of course_lib are the answers to exercises, and what a student release has instead.

An exercise's reference implementation is marked where it is defined::

    @reference("03_initialization", "fans")
    def fans(weight):
        ...

In the instructor's course_lib the mark changes nothing: the function is returned as it is, and recorded
in :data:`REFERENCES`. ``course release`` (:mod:`course_lib.instructor.release`) builds the students'
course_lib with the body (docstring included) of every marked function or class replaced by one line
that raises :class:`Unreleased`, unless the instructor released that chapter's references (its deadline
has passed). There is one source of truth: the release is cut from this source, never kept beside it.
"""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
REFERENCES: list = []  # every marked function and class, in import order


class Unreleased(NotImplementedError):
    """A reference implementation that the student release leaves out, with the chapter that brings it."""

    def __init__(self, name: str, chapter: str):
        self.name, self.chapter = name, chapter
        super().__init__(
            f"{name} is the answer to an exercise of chapter {chapter}, so it is not in the student release "
            f"of course_lib. Write it yourself in that chapter's notebook; your instructor may release "
            f"{chapter}'s answers once its deadline has passed.")


def reference(chapter: str, *exercises: str) -> Callable[[T], T]:
    """Mark a function or class as the reference answer to ``exercises`` (their ``grade_id``) of ``chapter``.

    Example: ``@reference("03_initialization", "fans")``. A helper that gives an exercise away without
    being its whole answer is marked with the chapter alone.
    """
    if not isinstance(chapter, str) or not chapter or not all(isinstance(e, str) and e for e in exercises):
        raise TypeError(f"reference() takes a chapter id and exercise ids, e.g. ('03_initialization', 'fans'); "
                        f"got {(chapter, *exercises)!r}")

    def mark(obj: T) -> T:
        obj.__course_reference__ = chapter
        obj.__course_exercises__ = exercises
        REFERENCES.append(obj)
        return obj
    return mark


def references() -> list:
    """Every marked function and class of course_lib (imports each module to find them all)."""
    import importlib
    import pkgutil

    import course_lib

    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        if not info.name.startswith(("course_lib.instructor", "course_lib.pipeline")):
            importlib.import_module(info.name)
    return list(REFERENCES)
