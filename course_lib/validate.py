"""JupyterLab's Validate button without freezing the server: nbgrader's Validate in a child process.

nbgrader's server extension validates inside the Jupyter server's own thread, so while a notebook runs
the server answers nothing else: no saving, no other page, not even ``/api/status``. This server
extension serves the same URL (``/assignments/validate``) with the same JSON reply, but runs nbgrader's
``Validator`` in a child process (``python -m course_lib.validate NOTEBOOK``) and awaits it; the button
reads "Validating..." meanwhile. It also numbers the failing test cells in the reply ("failing test
cell 1 of 2") and lets long lines wrap in the dialog instead of being cut.

The cells tagged ``experiment`` are skipped by ``nbgrader_config.py``
(``c.Validator.Execute.skip_cells_with_tag``), for this and for ``nbgrader validate`` alike.

``course_lib.lab`` enables the extension (``ServerApp.jpserver_extensions``). Its name sorts before
nbgrader's, so Jupyter loads it first and its handler answers the URL.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from pathlib import Path

URL = "/assignments/validate"
WRAP = '<span style="white-space: pre-wrap; overflow-wrap: anywhere">{}</span>'


def validate(notebook: str) -> dict:
    """nbgrader's Validate of ``notebook`` with the configuration found from the current directory.

    Returns the server extension's reply: ``{"success": True, "value": <Validator.validate's dict>}``,
    or ``{"success": False, "value": <what went wrong>}``.
    """
    from nbgrader.validator import Validator

    from .instructor.gradebook import nbgrader_config

    try:
        return {"success": True, "value": Validator(config=nbgrader_config(Path.cwd())).validate(notebook)}
    except Exception:  # noqa: BLE001 - the dialog shows whatever went wrong, as nbgrader's handler does
        return {"success": False, "value": traceback.format_exc()}


def numbered(reply: dict) -> dict:
    """The reply with each failing cell's error headed "failing test cell i of n" and its lines wrapped."""
    failed = reply.get("value", {}).get("failed", []) if reply.get("success") else []
    for i, cell in enumerate(failed, 1):
        cell["error"] = WRAP.format(f"<b>Failing test cell {i} of {len(failed)}</b>\n{cell['error']}")
    return reply


async def validate_in_child(notebook: str, cwd: str) -> dict:
    """Run :func:`validate` in a child Python process in ``cwd`` and return its reply, without blocking."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "course_lib.validate", notebook, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    if child.returncode != 0 or not lines:
        return {"success": False, "value": f"validation stopped (exit code {child.returncode}):\n"
                                           f"{err.decode(errors='replace')[-4000:]}"}
    return numbered(json.loads(lines[-1]))


def _handler_class():
    """The tornado handler: nbgrader's, with ``post`` awaiting the child process."""
    from nbgrader.server_extensions.validate_assignment.handlers import ValidateAssignmentHandler
    from tornado import web

    class ValidateInChildHandler(ValidateAssignmentHandler):
        """POST ``path``: validate that notebook (relative to the server's root) in a child process."""

        @web.authenticated
        async def post(self):
            try:
                path = self.get_argument("path")
            except web.MissingArgumentError:
                path = self.get_json_body()["path"]
            root = Path(self.root_dir).resolve()
            target = (root / path).resolve()
            if not target.is_relative_to(root):
                raise web.HTTPError(403, "Access denied: path outside allowed directory")
            cwd = self.settings["course_lib_validate_cwd"]
            self.finish(json.dumps(await validate_in_child(str(target), cwd)))

    return ValidateInChildHandler


def _jupyter_server_extension_points():
    """Jupyter's entry point: this module is a server extension."""
    return [{"module": "course_lib.validate"}]


def _load_jupyter_server_extension(serverapp):
    """Serve ``/assignments/validate`` with :func:`validate_in_child`."""
    from jupyter_server.utils import url_path_join

    web_app = serverapp.web_app
    web_app.settings["root_dir"] = serverapp.root_dir
    # The server's folder at start-up: nbgrader's other handlers chdir while they await.
    web_app.settings["course_lib_validate_cwd"] = os.getcwd()
    web_app.add_handlers(".*$", [(url_path_join(web_app.settings["base_url"], URL), _handler_class())])
    serverapp.log.info("course_lib.validate: Validate runs in a child process and skips experiments")


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.validate NOTEBOOK``: print :func:`validate`'s reply as one line of JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m course_lib.validate NOTEBOOK", file=sys.stderr)
        return 2
    print(json.dumps(validate(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
