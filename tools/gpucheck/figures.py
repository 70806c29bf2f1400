"""What the steps leave behind, read back: pytest's JUnit XML, the benchmarks' JSON, and ``summary.md``.

The benchmarks print and write their own JSON, whose keys their owners change as they improve them, so
the figures are found by name, not by position: :func:`key_figures` walks a JSON result and keeps the
numbers whose key looks like a figure worth reporting (a speed-up, a ratio, images/s, seconds, TFLOP/s,
CUDA-event against wall time, an accuracy), the step's preferred ones first. A missing key is no error.
"""
from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .proc import tail

FIGURE = re.compile(r"speed.?up|ratio|per_s(ec)?$|images_per|img_per|tflop|time_to|per_epoch|seconds|(^|_)s$|_ms$|"
                    r"accuracy|acc$|reached|diverged|drift|agree|max_.*diff|kernels|ops|launch|steps?_per|event|wall", re.I)
SKIP = {"fast_runs", "conventional_runs", "runs", "history", "histories", "markdown", "recipe", "argv", "per_seed",
        "curves", "trace", "log"}
LABELS = ("members", "K", "k", "batch_size", "batch", "path", "name", "side", "seed", "dtype", "threads")
MAX_LIST = 40


def parse_junit(path: Path) -> dict:
    """Counts, failures and collection errors from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0) or 0) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["seconds"] = round(sum(float(s.get("time", 0) or 0) for s in suites), 1)
    failures, collection_errors = [], []
    for case in root.iter("testcase"):
        name = ".".join(x for x in (case.get("classname"), case.get("name")) if x)
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is None:
                continue
            message, detail = (node.get("message") or "").strip(), (node.text or "").strip()
            if kind == "error" and "collection failure" in message:
                missing = re.search(r"No module named '([^']+)'", detail)
                collection_errors.append({"module": name, "message": tail(detail, 3)[:600],
                                          "missing_module": missing.group(1) if missing else None})
            else:
                failures.append({"test": name, "kind": kind, "message": (message or tail(detail, 3))[:600]})
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed_tests": failures[:30], "collection_errors": collection_errors}


PROGRESS = re.compile(r"^([.FEsxX]+)\s*(\[\s*\d+%\])?\s*$")


def pytest_progress(text: str) -> dict:
    """Outcomes counted from pytest -q's progress characters (for a run cut short, which wrote no XML)."""
    chars = "".join(m[1] for m in map(PROGRESS.match, text.splitlines()) if m)
    return {"passed": chars.count("."), "failed": chars.count("F"), "errors": chars.count("E"),
            "skipped": chars.count("s"), "xfailed": chars.count("x") + chars.count("X")}


def read_json(path: Path):
    """The JSON in ``path``, or None when it is missing or not (yet) valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _label(item: dict, index: int) -> str:
    """How a list element is named in a figure's path: by its first identifying key, else its index."""
    key = next((k for k in LABELS if k in item and isinstance(item[k], (str, int, float))), None)
    return f"{key}={item[key]}" if key else str(index)


def flatten(obj, prefix: str = "", key: str = ""):
    """``(path, key, value)`` for every number and boolean in a JSON value, skipping bulky per-run records."""
    if isinstance(obj, dict):
        for k, value in obj.items():
            if str(k) not in SKIP:
                yield from flatten(value, f"{prefix}.{k}" if prefix else str(k), str(k))
    elif isinstance(obj, list) and len(obj) <= MAX_LIST:
        for i, value in enumerate(obj):
            name = _label(value, i) if isinstance(value, dict) else str(i)
            yield from flatten(value, f"{prefix}[{name}]", key)
    elif isinstance(obj, (bool, int, float)) and prefix and (not isinstance(obj, float) or math.isfinite(obj)):
        yield prefix, key, obj


def fmt(value) -> str:
    """A figure as text: 4 significant digits, thousands separated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e7 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def key_figures(result, prefer=(), limit: int = 16) -> dict:
    """The reportable figures of a benchmark's JSON ``result``, as ``{path: value}``.

    Figures whose path matches one of the ``prefer`` patterns (regular expressions, searched) come first,
    in the order of the patterns; then the others whose last key looks like a figure (:data:`FIGURE`).
    """
    found = [(p, v) for p, k, v in flatten(result) if FIGURE.search(k)]
    rank = lambda item: next((i for i, pat in enumerate(prefer) if re.search(pat, item[1][0])), len(prefer))
    ordered = sorted(enumerate(found), key=lambda item: (rank(item), item[0]))
    return {p: v for _, (p, v) in ordered[:limit]}


def figures_text(figures: dict, n: int | None = None) -> str:
    """``path = value; ...`` for the first ``n`` figures."""
    items = list(figures.items())[:n]
    return "; ".join(f"{p} = {fmt(v)}" for p, v in items)


def _cell(text) -> str:
    """Text made safe for one markdown table cell."""
    return str(text if text is not None else "").replace("|", "/").replace("\n", " ")


def _machine_line(s: dict) -> str:
    """The summary's one-line description of the machine and the run."""
    m = s.get("machine") or {}
    return (f"{m.get('device_name') or '?'}; torch {m.get('torch')}, torchvision {m.get('torchvision')}, Python "
            f"{m.get('python')}, CUDA {m.get('cuda_version')}; {m.get('cpu_count')} CPU cores ({m.get('cpu')}). Started "
            f"{s.get('started')}, {s.get('elapsed_s')} s of a {s.get('budget_s')} s budget. Set-up: "
            f"{(s.get('setup') or {}).get('status')} in {(s.get('setup') or {}).get('seconds')} s.")


def _notebook_lines(nbs: dict) -> list[str]:
    """The notebooks step as a markdown table."""
    res = nbs.get("result") or {}
    lines = ["", f"Profile `{res.get('profile', '?')}` on `{res.get('device', '?')}` ({res.get('selection', '?')}); "
             f"{res.get('stopped_because') or ''}", "", "| notebook | status | seconds | cells | slowest cell | first error / note |",
             "|---|---|---:|---:|---|---|"]
    for r in res.get("notebooks") or []:
        err = r.get("first_error")
        slow = (r.get("slowest_cells") or [{}])[0]
        note = (f"cell {err.get('cell')}: {err.get('ename')}: {str(err.get('evalue'))[:120]}" if err
                else (r.get("note") or r.get("crash") or ""))
        lines.append(f"| {r.get('notebook')} | {r.get('status')} | {r.get('seconds')} | "
                     f"{r.get('executed_cells')}/{r.get('code_cells')} | "
                     f"{'cell %s: %s s' % (slow.get('cell'), slow.get('seconds')) if slow else ''} | {_cell(note)[:200]} |")
    return lines


def _figure_cell(step: dict) -> str:
    """A benchmark step's figures for the README table, or, for a run that wrote no JSON, its last lines."""
    parts = []
    for run in step.get("runs", []):
        prefix = f"{run.get('name')}: " if len(step["runs"]) > 1 else ""
        if run.get("figures"):
            parts.append(prefix + figures_text(run["figures"], 8))
        else:
            parts.append(f"{prefix}{run.get('status')}, {run.get('json') or run.get('reason') or 'no figures'}; last lines: "
                         + " / ".join((run.get("last_lines") or "").splitlines()[-3:]))
    return "; ".join(parts)


def summary_markdown(s: dict, steps: list[str], titles: dict) -> str:
    """``summary.md``: every step's status, the benchmarks' key figures as README rows, the notebooks."""
    device = (s.get("machine") or {}).get("device_name") or "?"
    lines = [f"# GPU check{' (dry run, CPU)' if s.get('dry_run') else ''}", "", _machine_line(s), "",
             "| step | status | seconds | limit s | note |", "|---|---|---:|---:|---|"]
    for name in steps:
        st = s["steps"].get(name, {})
        if st.get("status") != "not_requested":
            lines.append(f"| {name} | {st.get('status')} | {st.get('seconds', '')} | {st.get('timeout_s', '')} | "
                         f"{_cell(st.get('note') or st.get('reason') or '')[:300]} |")
    rows = [(titles.get(n, n), _figure_cell(s["steps"][n])) for n in steps if "runs" in (s["steps"].get(n) or {})]
    if rows:
        lines += ["", "| benchmark | device | figure |", "|---|---|---|"]
        lines += [f"| {_cell(a)} | {_cell(device)} | {_cell(b)} |" for a, b in rows]
    nbs = s["steps"].get("notebooks") or {}
    if (nbs.get("result") or {}).get("notebooks"):
        lines += _notebook_lines(nbs)
    return "\n".join(lines) + "\n"
