"""Which solution notebooks a run executes, what an executed notebook shows, and the child that runs one.

The rotation: every run takes the notebooks least recently run in that profile first (never-run ones
first, in course order), so successive runs cover the whole course; a notebook whose last time does not
fit the time left is passed over for one that does, so a run covers as many notebooks as fit.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

OUTPUT_PER_CELL = 3000      # characters of printed output kept per cell in summary.json
OUTPUT_PER_NOTEBOOK = 60000


def notebook_order(solutions: Path) -> list[str]:
    """Every solution notebook as ``chapter/notebook.ipynb``, chapters and notebooks in order."""
    if not solutions.is_dir():
        return []
    return [f"{c.name}/{nb.name}" for c in sorted(p for p in solutions.iterdir() if p.is_dir())
            for nb in sorted(c.glob("*.ipynb"))]


def load_state(path: Path) -> dict:
    """The rotation state (``tools/gpu-check.state.json``), with its keys filled in when absent."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    for key, default in (("next", None), ("notebooks", {}), ("runs", [])):
        state.setdefault(key, default)
    return state


def last_run(state: dict, nb_id: str, profile: str) -> dict:
    """The state's record of ``nb_id``'s last run in ``profile`` ({} if none)."""
    known = state["notebooks"].get(nb_id) or {}
    return known if known.get("profile") == profile else {}


def rotation(order: list[str], state: dict, profile: str) -> list[str]:
    """``order`` sorted least recently run first; never-run notebooks first, ties in course order."""
    return sorted(order, key=lambda nb: (last_run(state, nb, profile).get("date") or "", order.index(nb)))


def needed_seconds(state: dict, nb_id: str, profile: str, cap: float) -> float | None:
    """Seconds ``nb_id`` needs, from its last run (None if unknown): what it took, or, if it was stopped,
    more than it had (15 s more, at most ``cap``), so that a notebook cut short is not rerun with no more time."""
    known = last_run(state, nb_id, profile)
    if known.get("status") in ("ok", "failed"):
        return known.get("seconds")
    if known.get("status") == "timeout" and known.get("seconds") is not None:
        return min(known["seconds"] + 15, cap)
    return None


def choose_next(candidates: list[str], state: dict, profile: str, left: float, minimum: float,
                cap: float) -> tuple[str | None, list[str]]:
    """The first of ``candidates`` expected to fit in ``left`` seconds (at most ``cap`` each), and the notes
    on those passed over."""
    passed = []
    if left < minimum:
        return None, passed
    for nb in candidates:
        needed = needed_seconds(state, nb, profile, cap)
        if needed is None or needed <= left:
            return nb, passed
        passed.append(f"{nb} (needs {needed:.0f} s after its last run, {left:.0f} s left)")
    return None, passed


def record_run(state: dict, record: dict, device: str | None, date: str, keep_date: bool = False) -> None:
    """Remember in ``state`` how ``record``'s notebook went; with ``keep_date`` its place in the rotation stays
    (its seconds are then a lower bound, and a later run with more time left gives it another go)."""
    err = record.get("first_error") or {}
    if keep_date:
        date = last_run(state, record["notebook"], record["profile"]).get("date") or ""
    state["notebooks"][record["notebook"]] = {
        "status": record["status"], "seconds": record["seconds"], "profile": record["profile"], "device": device,
        "date": date, "cells": f"{record.get('executed_cells')}/{record.get('code_cells')}",
        "first_error": f"cell {err.get('cell')}: {err.get('ename')}: {str(err.get('evalue'))[:200]}" if err else None,
        "slowest_cells": record.get("slowest_cells", [])[:3]}


def _cell_text(cell: dict) -> tuple[str, dict | None]:
    """A code cell's printed output as text, and its error (if any)."""
    texts, error = [], None
    for out in cell.get("outputs", []):
        kind, data = out.get("output_type"), out.get("data", {})
        if kind == "stream" and out.get("name") == "stdout":
            texts.append("".join(out.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            image = any(k.startswith("image/") for k in data)
            texts.append("[figure]\n" if image else "".join(data.get("text/plain", "")) + "\n")
        elif kind == "error":
            texts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
            error = error or {"ename": out.get("ename"), "evalue": str(out.get("evalue"))[:1000],
                              "source": "".join(cell.get("source", ""))[:400]}
    return "".join(texts), error


def notebook_report(path: Path) -> dict:
    """Cells, the first error and the printed outputs of an executed (or partly executed) notebook."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {"read_error": repr(err)}
    code = [(i, c) for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"]
    outputs, first_error, budget = [], None, OUTPUT_PER_NOTEBOOK
    for i, cell in code:
        text, error = _cell_text(cell)
        if error and first_error is None:
            first_error = {"cell": i, **error}
        if text and budget > 0:
            keep = (text if len(text) <= OUTPUT_PER_CELL else text[:OUTPUT_PER_CELL] + "\n[... cut]\n")[:budget]
            budget -= len(keep)
            outputs.append({"cell": i, "text": keep})
    started = [i for i, c in code if c.get("execution_count") is not None]
    return {"code_cells": len(code), "executed_cells": len(started), "last_started_cell": started[-1] if started else None,
            "first_error": first_error, "outputs": outputs}


def strip_images(path: Path) -> bytes:
    """An executed notebook without its images (to keep the archive small)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            for key in [k for k in data if k.startswith("image/")]:
                data[key] = ""
    return json.dumps(nb).encode()


def _kernel_pid(client) -> int | None:
    """The process id of an nbclient client's kernel, however this jupyter_client version exposes it."""
    km = client.km
    for getter in (lambda: km.provisioner.process.pid, lambda: km.kernel.pid, lambda: km.provisioner.pid):
        try:
            return int(getter())
        except Exception:
            continue
    return None


def run_notebook(src: Path, dest: Path, cell_timeout: int, pid_file: Path | None) -> int:
    """Execute ``src`` with nbclient in its folder, saving ``dest`` after every cell (the child process).

    Prints ``GPU_CHECK_CELL {json}`` after each cell and ``GPU_CHECK_NOTEBOOK {json}`` at the end.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    started = time.monotonic()
    nb = nbformat.read(src, as_version=4)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clock, result = {"cell": started}, {"status": "running", "error": None}

    def save():
        tmp = dest.with_name(f".{dest.name}.part")
        nbformat.write(nb, tmp)
        os.replace(tmp, dest)

    def on_notebook_start(**kw):
        pid = _kernel_pid(client)
        if pid and pid_file:
            pid_file.write_text(str(pid))

    def on_cell_start(cell=None, cell_index=None, **kw):
        clock["cell"] = time.monotonic()

    def on_cell_executed(cell=None, cell_index=None, **kw):
        seconds = round(time.monotonic() - clock["cell"], 2)
        print("GPU_CHECK_CELL " + json.dumps({"cell": cell_index, "seconds": seconds}), flush=True)
        save()

    def on_cell_error(cell=None, cell_index=None, **kw):
        result["error_cell"] = cell_index

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}},
                            on_notebook_start=on_notebook_start, on_cell_start=on_cell_start,
                            on_cell_executed=on_cell_executed, on_cell_error=on_cell_error)
    try:
        client.execute()
        result["status"] = "ok"
    except CellExecutionError as err:
        result.update(status="error", error={"cell": result.get("error_cell"), "ename": err.ename,
                                             "evalue": str(err.evalue)[:1000]})
    except KeyboardInterrupt:
        result["status"] = "interrupted"
    except Exception as err:
        result.update(status="crashed", message=f"{type(err).__name__}: {err}"[:2000])
    finally:
        save()
    result["seconds"] = round(time.monotonic() - started, 2)
    print("GPU_CHECK_NOTEBOOK " + json.dumps(result), flush=True)
    return 0
