"""Validate skips the experiments (nbgrader_config.py) and numbers the failing cells (course_lib.validate)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="Validate is nbgrader's (pip install -e . installs it)")

from course_lib.instructor.gradebook import nbgrader_config
from course_lib.validate import numbered

ROOT = Path(__file__).resolve().parents[1]


def test_only_validate_skips_the_experiments():
    from nbgrader.preprocessors import Execute
    from nbgrader.validator import Validator

    config = nbgrader_config(ROOT)
    assert Execute(parent=Validator(config=config)).skip_cells_with_tag == "experiment"
    assert Execute(config=config).skip_cells_with_tag != "experiment"  # autograde, course build: every cell


def test_validate_of_a_blank_chapter_takes_seconds(tmp_path):
    """Chapter 05's experiments took 80 s under Validate; skipped, the blank notebook takes seconds (7 s here)."""
    notebook = tmp_path / "05_activations.ipynb"
    shutil.copy(ROOT / "notebooks" / "05_activations" / "05_activations.ipynb", notebook)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COURSE_PROFILE": "quick", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "validate", str(notebook)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert "VALIDATION FAILED ON 8 CELL(S)" in run.stdout and "NotImplementedError" in run.stdout, \
        run.stdout[-2000:] + run.stderr[-2000:]
    assert elapsed < 60, f"nbgrader validate of a blank chapter 05 took {elapsed:.0f} s"


def test_numbered_heads_each_failure_and_wraps_lines():
    reply = numbered({"success": True, "value": {"failed": [{"error": "a"}, {"error": "b"}]}})
    errors = [c["error"] for c in reply["value"]["failed"]]
    assert "Failing test cell 2 of 2</b>\nb" in errors[1] and all("pre-wrap" in e for e in errors)
    assert numbered({"success": False, "value": "boom"}) == {"success": False, "value": "boom"}
