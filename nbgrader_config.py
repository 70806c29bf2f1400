"""nbgrader configuration: nbgrader works on this repository's folders directly.

- ``solutions/<assignment>/`` is the source (instructor) directory,
- ``notebooks/<assignment>/`` is the release (student) directory,
- submissions, autograded copies, feedback and the gradebook live under ``build/`` (ignored by git).
"""
import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "dnn-tricks"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.join("build", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("build", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("build", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "build", "gradebook.db")
# A chapter folder holds its notebooks and recorded.json (the visible tests' expected values, recorded
# from the solutions by `course record`), which nbgrader releases with them.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__"]

# Experiments in the full profile train real models: give each cell time, and never a 30 s limit.
c.Execute.timeout = 1800
# (nbgrader's Execute always continues after an error: allow_errors is not a setting it reads.)

# A test cell that writes to stderr scores 0 in nbgrader. Warnings and progress bars are noise, not
# failures (a failing assertion is an *error* output, which this does not touch), so drop them.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?i)warn|\d+%\||it/s\]|s/it\]"

# The stub left in each solution cell fails with a message, so every visible test of a blank notebook says
# what to do (nbgrader's default raises a bare NotImplementedError()).
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("not written yet: replace this line with your code")',
}

# A student who deletes a graded test cell still has that test run: nbgrader puts it back from the source.
c.OverwriteCells.add_missing_cells = True

# Validate (JupyterLab's button and `nbgrader validate`) skips the cells tagged `experiment`, as `course
# grade` does: no test depends on them, so Validate takes seconds instead of minutes. The setting is
# scoped to the Validator's Execute; autograde and `course build` still run every cell.
c.Validator.Execute.skip_cells_with_tag = "experiment"
