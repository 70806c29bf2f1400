"""The JupyterLab commands' preparation (course_lib.lab); tests/test_browser.py runs them for real."""
import stat
import subprocess
import sys
from pathlib import Path

from course_lib import lab

ROOT = Path(__file__).resolve().parents[1]


def test_the_configured_exchange_is_created_writable_by_all(tmp_path, monkeypatch):
    exchange = tmp_path / "srv" / "exchange"
    config = (ROOT / "nbgrader_config.py").read_text() + f"\nc.Exchange.root = {str(exchange)!r}\n"
    (tmp_path / "nbgrader_config.py").write_text(config)
    monkeypatch.chdir(tmp_path)
    lab.ensure_exchange()
    assert stat.S_IMODE(exchange.stat().st_mode) == 0o1777


def test_the_command_serves_the_role_root_with_the_validate_extension(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    student = lab.command("student", ["--port=9999"])
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in student and student[-1] == "--port=9999"
    assert "course_lib.validate=True" in student
    assert f"--ServerApp.root_dir={ROOT}" in lab.command("instructor", [])


def test_outside_the_course_root_it_says_where_to_run(tmp_path):
    run = subprocess.run([sys.executable, "-m", "course_lib.lab", "student"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "run this in the course root" in run.stderr
