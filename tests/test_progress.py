"""Progress bars are text on stdout (they survive a saved notebook), silent under nbgrader."""
import pathlib
import re

from course_lib.progress import progress_bar

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_progress_bar_writes_text_to_stdout(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    with progress_bar(total=4, desc="training", leave=True) as bar:
        bar.update(4)
    out, err = capsys.readouterr()
    assert "training: 100%" in out and "4/4" in out and err == ""


def test_progress_bar_is_silent_under_nbgrader(capsys, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    with progress_bar(total=4, desc="training") as bar:
        bar.update(4)
    assert capsys.readouterr() == ("", "")


def test_no_widget_progress_bars_anywhere():
    """tqdm.auto / tqdm.notebook draw ipywidgets, which a reopened notebook cannot display."""
    pattern = re.compile(r"tqdm\.(auto|notebook|autonotebook)|from tqdm import|import tqdm\b")
    allowed = {ROOT / "course_lib" / "progress.py"}
    files = [*ROOT.joinpath("course_lib").rglob("*.py"), *ROOT.joinpath("solutions").rglob("*.ipynb"),
             *ROOT.joinpath("notebooks").rglob("*.ipynb")]
    offenders = [str(f.relative_to(ROOT)) for f in files if f not in allowed and pattern.search(f.read_text())]
    assert not offenders, f"use course_lib.progress.progress_bar instead of tqdm directly in: {offenders}"
