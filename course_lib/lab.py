"""The two ways into the course's JupyterLab: ``python -m course_lib.lab instructor|student [OPTIONS]``.

Run it in the course root (the folder of ``nbgrader_config.py``); ``make lab-instructor`` and ``make lab``
do. Any further options go to ``jupyter lab`` (``--port=8890``, ``--no-browser``, ...).

- ``instructor``: JupyterLab on the course root, so Formgrader's links to ``solutions/`` and
  ``notebooks/`` resolve. ``build/`` is created first (the gradebook ``build/gradebook.db`` lives there),
  and this environment's ``bin/`` goes first on the ``PATH`` (nbgrader runs ``alembic`` by name).
- ``student``: JupyterLab on ``notebooks/``.

Both: the server still runs in the course root, where nbgrader finds ``nbgrader_config.py``; Validate runs
in a child process and skips the experiments (:mod:`course_lib.validate`); the exchange that nbgrader's
configuration names (``c.Exchange.root``) is created if it is missing and may be, so the Assignments panel
has one (nbgrader requires it to exist; otherwise this says how to set it).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOTS = {"instructor": ".", "student": "notebooks"}


def ensure_exchange() -> None:
    """Create the configured exchange, writable by everyone with the sticky bit (nbgrader's set-up), or say
    why it cannot be."""
    from .instructor.gradebook import load_course

    root = Path(load_course(Path.cwd()).exchange_root)  # as nbgrader and `course grade` read it
    if root.is_dir():
        return
    try:
        root.mkdir(parents=True)
        root.chmod(0o1777)
    except OSError as err:
        print(f"course_lib.lab: nbgrader's exchange {root} is missing and cannot be created ({err.strerror}); "
              "the Assignments panel will not work. Create it (mkdir -p, chmod 1777) or set c.Exchange.root "
              "in nbgrader_config.py.", file=sys.stderr)


def command(role: str, extra: list[str]) -> list[str]:
    """The ``jupyter lab`` command line for ``role``, with ``extra`` options appended."""
    root = ["--allow-root"] if os.geteuid() == 0 else []  # containers run as root; Jupyter refuses otherwise
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(ROOTS[role]).resolve()}",
            "--ServerApp.jpserver_extensions", "course_lib.validate=True", *root, *extra]


def main(argv: list[str] | None = None) -> None:
    """Check the folder, prepare ``build/``, the ``PATH`` and the exchange, then become ``jupyter lab``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ROOTS:
        sys.exit("usage: python -m course_lib.lab instructor|student [jupyter lab options]")
    if not Path("nbgrader_config.py").is_file():
        sys.exit(f"course_lib.lab: run this in the course root (the folder of nbgrader_config.py), not {os.getcwd()}")
    Path("build").mkdir(exist_ok=True)
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    ensure_exchange()
    args = command(argv[0], argv[1:])
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
