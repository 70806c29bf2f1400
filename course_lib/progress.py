"""Progress bars that survive a saved notebook: plain text, never widgets.

``tqdm.auto`` draws an ipywidgets bar in Jupyter. Its state is not saved with the notebook, so after a
save and reopen JupyterLab shows "Error displaying widget: model not found" (and the browser console
logs the missing model). :func:`progress_bar` is tqdm's text bar on stdout instead: JupyterLab redraws it
in place (it honours ``\\r``), and the saved notebook holds its last state as ordinary text.

Bars are silent while nbgrader executes a notebook (autograde or Validate): there is nobody to watch,
and output on stderr would cost a test cell its points.
"""
from __future__ import annotations

import sys

from tqdm.std import tqdm

from .runtime import under_autograder

WIDTH = 90  # characters: a notebook's output area is not a terminal, so tqdm cannot measure it


def progress_bar(total: int | None = None, desc: str = "", *, enabled: bool = True, leave: bool = True) -> tqdm:
    """A tqdm text bar on stdout of ``total`` steps, labelled ``desc``; disabled if not ``enabled``.

    It stays, at its final count, when it closes (``leave=False`` clears it): the saved notebook shows
    how long each run took.
    """
    return tqdm(total=total, desc=desc, disable=not enabled or under_autograder(), leave=leave,
                file=sys.stdout, ncols=WIDTH, mininterval=0.2)
