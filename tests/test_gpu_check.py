"""tools/gpu-check, the prepared script for a lent GPU machine, checked here on the CPU with --dry-run.

The unit tests load the script as a module (it has no .py suffix) and its parts from tools/gpucheck;
the end-to-end tests run it on tiny notebooks made here, in a temporary $OUT.
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
PACKAGE = ROOT / "tools" / "gpucheck"
OUT_FILES = {"summary.json", "summary.md", "gpu-check.state.json", "gpu-check.log", "artifacts.tar.gz"}
STEPS = ["pytest", "augmentation", "ensemble_vmap", "time_to_accuracy", "notebooks"]


def load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gc = load()
from gpucheck import figures, notebooks, proc, setup  # noqa: E402  (tools/ is on sys.path once the script is loaded)


# ----------------------------------------------------------------------------------------- unit tests


def top_level_imports(path: Path) -> set[str]:
    """The root names of a file's own import statements (not those inside functions); relative ones as '.'."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("path", [SCRIPT, PACK, *sorted(PACKAGE.glob("*.py"))], ids=lambda p: p.name)
def test_top_level_imports_only_the_standard_library(path):
    roots = top_level_imports(path)
    assert roots or path.name == "__init__.py", "no imports found"
    allowed = set(sys.stdlib_module_names) | {"__future__", "gpucheck", "."}
    assert roots <= allowed, roots - allowed


@pytest.mark.parametrize("path", [SCRIPT, PACK], ids=["gpu-check", "gpu-pack"])
def test_scripts_start_without_site_packages(path):
    run = subprocess.run([sys.executable, "-I", "-S", str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert path.read_text().startswith("#!/usr/bin/env python3\n") and os.access(path, os.X_OK)


def test_the_budget_adds_up_to_eight_minutes():
    limits = gc.LIMITS["gpu"]
    assert gc.BUDGET <= 480
    capped = sum(cap for cap, _ in limits.values() if cap is not None)
    assert capped == 120 + 45 + 45 + 150
    notebooks_left = gc.BUDGET - capped - gc.RESERVE - 30  # about 30 s of set-up on the GPU machine
    assert notebooks_left >= limits["notebooks"][1] and notebooks_left >= 60
    for step, runs in gc.BENCHMARKS.items():
        assert sum(r.get("cap") or limits[step][0] for r in runs) <= limits[step][0], step
        for r in runs:
            assert (ROOT / r["script"]).is_file() and {"gpu", "dry", "json", "out", "name"} <= set(r)


def test_plan_fits_caps_and_skips():
    t = [0.0]
    clock = proc.Clock(480, now=lambda: t[0])
    limits = gc.LIMITS["gpu"]
    timeout, reason = proc.plan("time_to_accuracy", ["notebooks"], clock, limits, 8)
    assert reason == "" and timeout == limits["time_to_accuracy"][0]  # capped
    t[0] = 480 - 60  # 60 s left: 45 s minimum + 30 s for the notebooks + 8 s reserve do not fit
    timeout, reason = proc.plan("time_to_accuracy", ["notebooks"], clock, limits, 8)
    assert timeout is None and "does not fit" in reason and "needs at least 45 s" in reason
    timeout, reason = proc.plan("notebooks", [], clock, limits, 8)  # the last step gets the rest, less the reserve
    assert timeout == pytest.approx(60 - 8)


def test_rotation_takes_the_least_recently_run_first():
    order = ["01_a/01_a.ipynb", "04_b/04a.ipynb", "04_b/04b.ipynb", "10_c/10_c.ipynb"]
    state = notebooks.load_state(Path("/nonexistent"))
    assert notebooks.rotation(order, state, "full") == order
    for i, nb in enumerate(["04_b/04a.ipynb", "01_a/01_a.ipynb"]):
        notebooks.record_run(state, {"notebook": nb, "status": "ok", "seconds": 50.0, "profile": "full"}, "H200", f"2026-12-0{i + 1}")
    assert notebooks.rotation(order, state, "full") == ["04_b/04b.ipynb", "10_c/10_c.ipynb", "04_b/04a.ipynb", "01_a/01_a.ipynb"]
    assert notebooks.rotation(order, state, "quick") == order  # another profile's runs do not count
    assert notebooks.notebook_order(ROOT / "solutions")[0].startswith("01_")


def test_a_notebook_that_does_not_fit_is_passed_over_and_one_cut_short_keeps_its_place():
    state = notebooks.load_state(Path("/nonexistent"))
    record = lambda nb, status, s: {"notebook": nb, "status": status, "seconds": s, "profile": "full"}
    notebooks.record_run(state, record("a", "ok", 120.0), None, "2026-12-01")
    notebooks.record_run(state, record("b", "ok", 40.0), None, "2026-12-01")
    assert notebooks.choose_next(["a", "b", "c"], state, "full", 100, 30, 150) == (
        "b", ["a (needs 120 s after its last run, 100 s left)"])
    assert notebooks.choose_next(["a", "c"], state, "full", 100, 30, 150)[0] == "c"  # never run: tried
    assert notebooks.choose_next(["c"], state, "full", 20, 30, 150) == (None, [])  # under the minimum
    # cut short by the run's end after 60 s: it stays first, and is rerun only with more time than it had
    notebooks.record_run(state, record("c", "timeout", 60.0), None, "2026-12-02", keep_date=True)
    assert notebooks.rotation(["a", "b", "c"], state, "full")[0] == "c" and state["notebooks"]["c"]["seconds"] == 60.0
    assert notebooks.choose_next(["c", "b"], state, "full", 60, 30, 150)[0] == "b"
    assert notebooks.choose_next(["c", "b"], state, "full", 80, 30, 150)[0] == "c"
    # stopped at its cap: tried again whenever a whole cap is free
    notebooks.record_run(state, record("a", "timeout", 150.0), None, "2026-12-03")
    assert notebooks.choose_next(["a"], state, "full", 150, 30, 150)[0] == "a"


def test_flags_a_benchmark_does_not_mention_are_dropped_with_their_values(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text('p.add_argument("--seeds", type=int)\np.add_argument(\'--compile\', action="store_true")\n')
    kept, dropped = gc.accepted_args(script, ["--seeds", "5", "--widths", "64", "128", "--compile", "--out", "x"])
    assert kept == ["--seeds", "5", "--compile"] and dropped == ["--widths", "--out"]


def test_key_figures_are_found_by_name_preferred_first_and_missing_keys_are_no_error():
    result = {"device": "cuda", "seeds": 5, "fast": {"time_to_0.93": 1.5, "seconds_per_epoch": 0.2, "tflops": 80.0,
                                                      "final_accuracy_std": float("nan")},
              "fast_runs": [{"history": [1, 2]}], "rows": [{"members": 8, "speedup": 4.5}, {"members": 32, "speedup": 17.0}],
              "cuda_event_to_wall": 0.93, "markdown": "| table |"}
    found = figures.key_figures(result, prefer=[r"speed.?up", r"time_to"])
    assert list(found)[:3] == ["rows[members=8].speedup", "rows[members=32].speedup", "fast.time_to_0.93"]
    assert found["cuda_event_to_wall"] == 0.93 and found["fast.tflops"] == 80.0
    assert "seeds" not in found and not any("fast_runs" in k or "std" in k for k in found)
    assert figures.key_figures({}, prefer=["x"]) == {} and figures.key_figures([], ()) == {}
    assert figures.figures_text({"a": 1234567.0, "b": 0.5}) == "a = 1,234,567; b = 0.5"


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
    r = figures.parse_junit(xml)
    assert (r["tests"], r["passed"], r["failures"], r["errors"], r["skipped"]) == (5, 2, 1, 1, 1)
    assert r["failed_tests"][0]["test"].endswith("test_bad[cuda]")
    assert r["collection_errors"][0]["missing_module"] == "nbgrader"


def test_wheels_to_install_skips_installed_and_keeps_the_newest(tmp_path):
    for name in ("pytest-1.0-py3-none-any.whl", "gpucheck_fake-1.0-py3-none-any.whl",
                 "gpucheck_fake-1.10-py3-none-any.whl", "gpucheck_fake-1.9-py3-none-any.whl", "notawheel.whl"):
        (tmp_path / name).write_bytes(b"")
    chosen, notes = setup.wheels_to_install(tmp_path)
    assert [w.name for w in chosen] == ["gpucheck_fake-1.10-py3-none-any.whl"]
    assert any("several wheels" in n for n in notes) and any("notawheel" in n for n in notes)


def test_data_is_decompressed_from_the_packed_copies(tmp_path):
    import gzip

    packed = tmp_path / "gpu-pack" / "FashionMNIST" / "raw"
    packed.mkdir(parents=True)
    tiny = setup.write_tiny_fashion_mnist(tmp_path / "nowhere", tmp_path / "tiny", n_train=8, n_test=4)
    for name in setup.IDX_FILES:
        (packed / f"{name}.gz").write_bytes(gzip.compress((tiny / "FashionMNIST" / "raw" / name).read_bytes()))
    found = setup.ensure_data(tmp_path, tmp_path)
    assert found["present"] and len(found["decompressed"]) == 4
    images = (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert len(images) == 16 + 8 * 28 * 28 and int.from_bytes(images[4:8], "big") == 8
    assert setup.ensure_data(tmp_path, tmp_path)["decompressed"] == []  # already there: nothing to do


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


def dry_run(out: Path, *args: str, timeout: int = 540) -> dict:
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
    for step in ("augmentation", "ensemble_vmap", "time_to_accuracy", "notebooks"):
        assert s["steps"][step]["status"] == "skipped" and "does not fit" in s["steps"][step]["reason"]
    state = json.loads((tmp_path / "out" / "gpu-check.state.json").read_text())
    assert state["notebooks"] == {} and state["runs"] == []  # nothing ran


@pytest.mark.slow
def test_the_dry_run_fits_the_default_budget_and_the_rotation_goes_on(tmp_path):
    solutions = fake_solutions(tmp_path / "solutions")
    first = dry_run(tmp_path / "out1", "--solutions", str(solutions), "--state", str(tmp_path / "none.json"))
    assert first["budget_s"] == gc.BUDGET == 480 and first["elapsed_s"] < gc.BUDGET
    assert set(first["steps"]) == set(STEPS) and first["dry_run"] is True and first["exit_code"] == 0
    assert {"device_name", "torch", "torchvision", "python", "versions", "cuda_available"} <= set(first["machine"])
    assert {"status", "missing_before", "missing_after", "installed_wheels", "data", "seconds"} <= set(first["setup"])
    for name, step in first["steps"].items():
        assert step["status"] in ("ok", "failed"), (name, step)  # ran to its end within its limit
        assert 0 <= step["seconds"] <= step["timeout_s"] + 10
    assert first["steps"]["pytest"]["status"] == "ok" and first["steps"]["pytest"]["result"]["failures"] == 0
    assert first["steps"]["augmentation"]["status"] == "ok"
    assert first["steps"]["augmentation"]["figures"]["speedup"] > 0  # read back from the benchmark's own JSON
    fast = first["steps"]["time_to_accuracy"]["runs"][0]
    assert fast["status"] == "ok" and fast["figures"]["fast.seconds_per_epoch"] > 0
    [nb] = first["steps"]["notebooks"]["result"]["notebooks"]
    assert nb["notebook"] == "01_alpha/01_alpha.ipynb" and nb["status"] == "ok" and nb["executed_cells"] == 2
    assert any("hello from alpha" in o["text"] for o in nb["outputs"])
    assert first["steps"]["notebooks"]["result"]["next_after"] == "02_beta/02_beta.ipynb"
    md = (tmp_path / "out1" / "summary.md").read_text()
    assert "| benchmark | device | figure |" in md and "speedup = " in md and "01_alpha/01_alpha.ipynb" in md

    second = dry_run(tmp_path / "out2", "--budget", "120", "--steps", "notebooks", "--max-notebooks", "5",
                     "--solutions", str(solutions), "--state", str(tmp_path / "out1" / "gpu-check.state.json"))
    ran = [r["notebook"] for r in second["steps"]["notebooks"]["result"]["notebooks"]]
    assert ran == ["02_beta/02_beta.ipynb", "01_alpha/01_alpha.ipynb"]  # least recently run first, then round again
    assert any("profile quick" in o["text"] for o in second["steps"]["notebooks"]["result"]["notebooks"][0]["outputs"])
    state = json.loads((tmp_path / "out2" / "gpu-check.state.json").read_text())
    assert state["next"] == "02_beta/02_beta.ipynb" and set(state["notebooks"]) == {"01_alpha/01_alpha.ipynb", "02_beta/02_beta.ipynb"}


# ------------------------------------------------------------------------------ the full-profile estimate


def test_the_estimate_scales_each_cell_by_the_cfg_keys_it_uses():
    loader = importlib.machinery.SourceFileLoader("estimate", str(ROOT / "tools" / "estimate-full-profile"))
    est = importlib.util.module_from_spec(importlib.util.spec_from_loader("estimate", loader))
    loader.exec_module(est)
    cfg = est.profiles('CFG = runtime.pick(\n    quick=dict(n_train=2000, epochs=3, batch=64, seeds=[0], width=128, steps=100),\n'
                       '    full=dict(n_train=None, epochs=6, batch=128, seeds=[0, 1, 2], width=512, steps=400))\n')
    assert cfg["full"]["n_train"] is None and cfg["quick"]["seeds"] == [0]
    # epochs x2, seeds x3, the whole training set (60,000 / 2,000 = x30) over a batch twice as large (x0.5)
    factor, why = est.cell_factor('for s in CFG["seeds"]:\n    fit(net, epochs=CFG["epochs"], width=CFG["width"])', cfg)
    assert factor == pytest.approx(2 * 3 * 30 * 0.5) and len(why) == 4
    same = est.cell_factor('fit(ds.subset(CFG["n_train"]), epochs=CFG["epochs"], seeds=CFG["seeds"], w=CFG["width"])', cfg)
    assert same[0] == pytest.approx(factor)  # naming n_train changes nothing
    assert est.cell_factor('run(CFG["steps"])', cfg)[0] == pytest.approx(4)  # steps: no data-size factor
    assert est.cell_factor('ds = ds.subset(n_train=CFG["n_train"])', cfg)[0] == 1.0  # a subset: no work
    assert est.cell_factor('plt.plot(x)', cfg) == (1.0, [])
    assert est.profiles("x = 1") is None
    # every solution notebook but the capstone writes its CFG out as literals the estimate can read
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        assert path.parent.name == "10_capstone" or est.profiles(est.code_cells(path)[0]), path.name
