"""Execute solution notebooks with their solution cells replaced, and say which graded cells pass.

Two uses (run from the repository root, with ``.venv/bin`` first on PATH):

- the alternative solutions (the default): every solution cell that has a file
  ``tests/alternatives/<chapter>/<grade_id>.py`` gets that file's source; every graded cell must pass::

      OMP_NUM_THREADS=1 python tests/alternatives/check.py solutions/03_initialization/03_initialization.ipynb

- the shortcuts of the policies (``--shortcut K``): every solution cell whose policy
  ``policies/<chapter>/<grade_id>.yml`` lists a K-th shortcut (counted from 0) gets it; the report says
  which graded cells the shortcuts pass when no policy is applied (they should: that is why they are
  forbidden)::

      OMP_NUM_THREADS=1 python tests/alternatives/check.py --shortcut 0 solutions/03_initialization/*.ipynb

The notebooks run in the quick profile. Cells tagged ``experiment`` are replaced by ``pass`` (no graded
cell depends on them, as when grading) unless ``--run-experiments`` is given; ``--skip id1,id2`` also
replaces the cells with those grade_ids by ``pass`` (long demonstrations not tagged yet). Exit status 1
when, for alternatives, a graded cell fails or any cell errors.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _replacements(path: Path, shortcut: int | None) -> dict[str, str]:
    chapter = path.parent.name
    if shortcut is None:
        folder = ROOT / "tests" / "alternatives" / chapter
        return {p.stem: p.read_text(encoding="utf-8") for p in folder.glob("*.py")}
    out = {}
    for p in (ROOT / "policies" / chapter).glob("*.yml"):
        if p.name == "_default.yml":
            continue
        shortcuts = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("shortcuts", [])
        if len(shortcuts) > shortcut:
            out[p.stem] = shortcuts[shortcut]
    return out


def _error(cell) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            return f"{o.get('ename')}: {o.get('evalue')}".strip()[:400]
    return None


def run(path: Path, shortcut: int | None, experiments: bool, timeout: int, skip=frozenset()) -> bool:
    nb = nbformat.read(path, as_version=4)
    repl = _replacements(path, shortcut)
    replaced, missing = [], []
    for cell in nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if meta.get("solution") and cell.cell_type == "code":
            if gid in repl:
                cell.source = repl[gid]
                replaced.append(gid)
            else:
                missing.append(gid)
        elif cell.cell_type == "code" and (gid in skip or
                                           "experiment" in cell.metadata.get("tags", []) and not experiments):
            cell.source = "pass"
    what = "alternatives" if shortcut is None else f"shortcut {shortcut}"
    print(f"== {path.relative_to(ROOT)} ({what}): replaced {replaced}; kept the instructor's {missing}", flush=True)
    start = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    ok = True
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta, err = _meta(cell), _error(cell)
        if meta.get("grade"):
            print(f"   [{i}] {meta['grade_id']}: {'FAIL ' + err if err else 'pass'}")
            ok &= err is None
        elif err:
            print(f"   [{i}] {meta.get('grade_id')} (not graded) ERROR {err}")
            ok = False
    print(f"   {time.time() - start:.0f} s", flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--shortcut", type=int, default=None, help="use the K-th shortcut of each policy instead")
    ap.add_argument("--run-experiments", action="store_true", help="also run the cells tagged experiment")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    ap.add_argument("--skip", default="", help="comma-separated grade_ids of (non-graded) cells to replace by pass")
    args = ap.parse_args(argv)
    os.environ["COURSE_PROFILE"] = "quick"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    skip = frozenset(filter(None, args.skip.split(",")))
    results = [run(p.resolve(), args.shortcut, args.run_experiments, args.timeout, skip) for p in args.notebooks]
    return 0 if all(results) or args.shortcut is not None else 1


if __name__ == "__main__":
    sys.exit(main())
