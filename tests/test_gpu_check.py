"""tools/gpu-check, the prepared script for a lent GPU machine, checked here on the CPU with --dry-run.

The unit tests load the script as a module (it has no .py suffix); the end-to-end tests run it on tiny
notebooks made here, with tiny budgets, in a temporary $OUT.
"""
from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu-check"
PACK = ROOT / "tools" / "gpu-pack"
OUT_FILES = {"summary.json", "summary.md", "gpu-check.state.json", "gpu-check.log", "artifacts.tar.gz"}
STEPS = ["pytest", "augmentation", "ensemble_vmap", "time_to_accuracy", "full"]


def load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gc = load()


# ----------------------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize("path", [SCRIPT, PACK], ids=["gpu-check", "gpu-pack"])
def test_top_level_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:  # the module's own statements, not the imports inside functions
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    roots = {n.split(".")[0] for n in names}
    assert roots, "no imports found"
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots - set(sys.stdlib_module_names)
    # and it really starts with no site-packages at all (-I -S: isolated, no site)
    run = subprocess.run([sys.executable, "-I", "-S", str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert path.read_text().startswith("#!/usr/bin/env python3\n") and os.access(path, os.X_OK)


def test_plan_fits_caps_and_skips():
    t = [0.0]
    clock = gc.Clock(540, now=lambda: t[0])
    limits = gc.LIMITS["gpu"]
    timeout, reason = gc.plan("time_to_accuracy", ["full"], clock, limits)
    assert reason == "" and timeout == limits["time_to_accuracy"][0]  # capped
    t[0] = 540 - 100  # 100 s left: the minimum of 120 s does not fit
    timeout, reason = gc.plan("time_to_accuracy", ["full"], clock, limits)
    assert timeout is None and "does not fit" in reason and "needs at least 120 s" in reason
    timeout, reason = gc.plan("full", [], clock, limits)  # the last step gets the rest, less the reserve
    assert timeout == pytest.approx(100 - gc.RESERVE)


def test_rotation_and_pointer():
    order = ["01_a/01_a.ipynb", "04_b/04a.ipynb", "04_b/04b.ipynb", "10_c/10_c.ipynb"]
    assert gc.rotation(order, None) == order
    assert gc.rotation(order, "04_b/04b.ipynb") == order[2:] + order[:2]
    assert gc.rotation(order, "04_b/04aa_gone.ipynb")[0] == "04_b/04b.ipynb"  # a removed notebook: the one after it
    assert gc.rotation(order, "99_gone/x.ipynb")[0] == order[0]
    candidates = gc.rotation(order, "04_b/04b.ipynb")
    assert gc.next_pointer(candidates, 0) == "04_b/04b.ipynb"
    assert gc.next_pointer(candidates, 2) == "01_a/01_a.ipynb"
    assert gc.next_pointer(candidates, 4) == "04_b/04b.ipynb"  # once round
    assert gc.notebook_order(ROOT / "solutions")[0].startswith("01_")


def test_parsers():
    vmap = gc.parse_vmap("device: cuda (NVIDIA H200, 16 threads)\n   K  sequential s    vmap s  speed-up   max |dw|\n"
                         "   4          0.29      0.22     1.32x    7.0e-07\n  16          1.10      0.55     2.00x    5.0e-07\n")
    assert vmap["device"].startswith("cuda") and [r["members"] for r in vmap["rows"]] == [4, 16]
    assert vmap["rows"][1]["speedup"] == 2.0
    text = ("seed 0 fast:         92.00% @ 1.0 s, 93.50% @ 2.0 s, 94.10% @ 3.0 s\n"
            "seed 0 conventional: 91.00% @ 20.0 s, 93.10% @ 40.0 s, 93.90% @ 60.0 s\n"
            "seed 1 fast:         93.20% @ 1.0 s, 93.90% @ 2.0 s, 94.00% @ 3.0 s\n")
    tta = gc.parse_tta_lines(text, [0.93, 0.94])
    assert tta["fast"]["seeds"] == 2 and tta["fast"]["time_to_0.93"] == pytest.approx(1.5)
    assert tta["fast"]["time_to_0.94"] == pytest.approx(3.0) and tta["conventional"]["reached_0.94"] == 0
    assert gc.tta_ratios(tta["fast"], tta["conventional"], [0.93])["time_to_0.93"] == pytest.approx(40 / 1.5, rel=0.01)


def test_parse_junit_counts_and_expected_collection_errors(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="2.5">'
        '<testcase classname="tests.test_a" name="test_ok[cuda]" time="0.1"/>'
        '<testcase classname="tests.test_a" name="test_ok2[cuda]" time="0.1"/>'
        '<testcase classname="tests.test_a" name="test_bad[cuda]"><failure message="assert 1 == 2">x</failure></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped message="s"/></testcase>'
        '<testcase classname="" name="tests.test_nb"><error message="collection failure">'
        "E   ModuleNotFoundError: No module named 'nbgrader'</error></testcase></testsuite></testsuites>")
    r = gc.parse_junit(xml)
    assert (r["tests"], r["passed"], r["failures"], r["errors"], r["skipped"]) == (5, 2, 1, 1, 1)
    assert r["failed_tests"][0]["test"].endswith("test_bad[cuda]")
    assert r["collection_errors"][0]["missing_module"] == "nbgrader"


def test_wheels_to_install_skips_installed_and_keeps_the_newest(tmp_path):
    for name in ("pytest-1.0-py3-none-any.whl", "gpucheck_fake-1.0-py3-none-any.whl",
                 "gpucheck_fake-1.10-py3-none-any.whl", "gpucheck_fake-1.9-py3-none-any.whl", "notawheel.whl"):
        (tmp_path / name).write_bytes(b"")
    chosen, notes = gc.wheels_to_install(tmp_path)
    assert [w.name for w in chosen] == ["gpucheck_fake-1.10-py3-none-any.whl"]
    assert any("several wheels" in n for n in notes) and any("notawheel" in n for n in notes)


def test_data_is_decompressed_from_the_packed_copies(tmp_path):
    import gzip

    packed = tmp_path / "gpu-pack" / "FashionMNIST" / "raw"
    packed.mkdir(parents=True)
    tiny = gc.write_tiny_fashion_mnist(tmp_path / "nowhere", tmp_path / "tiny", n_train=8, n_test=4)
    for name in gc.IDX_FILES:
        (packed / f"{name}.gz").write_bytes(gzip.compress((tiny / "FashionMNIST" / "raw" / name).read_bytes()))
    found = gc.ensure_data(tmp_path)
    assert found["present"] and len(found["decompressed"]) == 4
    images = (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert len(images) == 16 + 8 * 28 * 28 and int.from_bytes(images[4:8], "big") == 8
    assert gc.ensure_data(tmp_path)["decompressed"] == []  # already there: nothing to do


# ------------------------------------------------------------------------------------ end to end (CPU)


def fake_solutions(root: Path) -> Path:
    """Two tiny chapters, each one notebook that prints."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    for chapter, source in (("01_alpha", "print('hello from alpha')"),
                            ("02_beta", "import os\nprint('profile', os.environ['COURSE_PROFILE'])")):
        nb = new_notebook(cells=[new_code_cell(source), new_code_cell("1 + 1")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        (root / chapter).mkdir(parents=True)
        nbformat.write(nb, root / chapter / f"{chapter}.ipynb")
    return root


def dry_run(out: Path, *args: str, timeout: int = 400) -> dict:
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *args], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == OUT_FILES  # the device tool brings back at most 8 files
    summary = json.loads((out / "summary.json").read_text())
    summary["_stdout"] = run.stdout
    return summary


def test_a_step_that_does_not_fit_is_skipped(tmp_path):
    solutions = fake_solutions(tmp_path / "solutions")
    s = dry_run(tmp_path / "out", "--budget", "10", "--steps", "bench,full", "--solutions", str(solutions),
                "--state", str(tmp_path / "none.json"))
    assert s["exit_code"] == 0 and s["setup"]["status"] == "ok"
    assert s["steps"]["pytest"]["status"] == "not_requested"
    for step in ("augmentation", "ensemble_vmap", "time_to_accuracy", "full"):
        assert s["steps"][step]["status"] == "skipped" and "does not fit" in s["steps"][step]["reason"]
    state = json.loads((tmp_path / "out" / "gpu-check.state.json").read_text())
    assert state["next"] is None and state["notebooks"] == {}  # nothing ran: the pointer stays


@pytest.mark.slow
def test_dry_runs_cover_every_step_and_rotate(tmp_path):
    solutions = fake_solutions(tmp_path / "solutions")
    # a budget with room to spare, so that a busy machine does not turn a step into a timeout
    first = dry_run(tmp_path / "out1", "--budget", "300", "--steps", "pytest,bench,full", "--solutions", str(solutions),
                    "--state", str(tmp_path / "none.json"))
    assert set(first["steps"]) == set(STEPS) and first["dry_run"] is True and first["exit_code"] == 0
    assert {"device_name", "torch", "torchvision", "python", "versions", "cuda_available"} <= set(first["machine"])
    assert {"status", "missing_before", "missing_after", "installed_wheels", "data", "seconds"} <= set(first["setup"])
    for name, step in first["steps"].items():
        assert step["status"] == "ok", (name, step)
        assert step["seconds"] >= 0 and step["timeout_s"] > 0
    assert first["steps"]["pytest"]["result"]["failures"] == 0
    assert first["steps"]["augmentation"]["result"]["speedup"] > 0
    assert first["steps"]["ensemble_vmap"]["result"]["rows"][0]["members"] == 2
    tta = first["steps"]["time_to_accuracy"]["result"]
    assert tta["fast"]["seconds_per_epoch"] > 0 and tta["conventional"]["seconds_per_epoch"] > 0
    full = first["steps"]["full"]["result"]
    [nb] = full["notebooks"]
    assert nb["notebook"] == "01_alpha/01_alpha.ipynb" and nb["status"] == "ok" and nb["executed_cells"] == 2
    assert any("hello from alpha" in o["text"] for o in nb["outputs"])
    assert full["next_after"] == "02_beta/02_beta.ipynb"
    md = (tmp_path / "out1" / "summary.md").read_text()
    assert "| benchmark | device | figure |" in md and "01_alpha/01_alpha.ipynb" in md

    second = dry_run(tmp_path / "out2", "--budget", "120", "--steps", "full", "--solutions", str(solutions),
                     "--state", str(tmp_path / "out1" / "gpu-check.state.json"))
    [nb2] = second["steps"]["full"]["result"]["notebooks"]
    assert nb2["chapter"] == "02_beta" != nb["chapter"]
    assert any("profile quick" in o["text"] for o in nb2["outputs"])
    state = json.loads((tmp_path / "out2" / "gpu-check.state.json").read_text())
    assert state["next"] == "01_alpha/01_alpha.ipynb"  # round again
    assert set(state["notebooks"]) == {"01_alpha/01_alpha.ipynb", "02_beta/02_beta.ipynb"}
