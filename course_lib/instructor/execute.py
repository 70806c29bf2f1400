"""nbgrader's ``Execute``, with a guard before each graded cell and a bounded cost for a hung cell.

- Before each graded cell, :data:`GUARD_SOURCE` runs silently: it re-imports ``course_lib.grading`` from
  disk (rebinding the notebook's names for it), puts torch's comparisons back from torch's C core, and
  seeds Python's, NumPy's and torch's generators from the cell's ``grade_id``, so that a test cell draws
  the same inputs in the student's run and in the instructor's trusted run. It is a second line of
  defence only: the verdict comes from the comparison outside the kernel (:mod:`.verdict`).
- A cell that runs past the timeout is interrupted (nbclient). If the kernel does not answer a probe
  within ``interrupt_grace`` seconds (it ignores interrupts), the kernel is restarted and the earlier
  cells are run again, silently, to rebuild its state. The hung cell keeps its timeout error; the later
  cells are graded. A cell that hangs again during that replay ends the submission with an error.
"""
from __future__ import annotations

import hashlib
import time

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

GUARD_SOURCE = """
def __course_guard(seed):
    import importlib, sys
    old = sys.modules.get("course_lib.grading")
    if old is not None:
        for key in [k for k in sys.modules if k == "course_lib.grading" or k.startswith("course_lib.grading.")]:
            del sys.modules[key]
        new = importlib.import_module("course_lib.grading")
        user = sys.modules["__main__"].__dict__
        for name, value in list(user.items()):
            if value is old:
                user[name] = new
    import random
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        core = torch._C._VariableFunctions
        for name in ("allclose", "isclose", "equal", "eq"):
            setattr(torch, name, getattr(core, name))
        torch.manual_seed(seed)
__course_guard(%d)
del __course_guard
"""


def cell_seed(grade_id: str) -> int:
    """The seed of a graded cell: the first 4 bytes of SHA-256 of its ``grade_id``."""
    return int.from_bytes(hashlib.sha256(grade_id.encode()).digest()[:4], "little")


class KernelStuck(RuntimeError):
    """The kernel could not be brought back after a hung cell."""


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` with :data:`GUARD_SOURCE` before graded cells and recovery from hung kernels."""

    interrupt_grace = Integer(10, help="seconds a kernel gets to answer after an interrupt before it is "
                                       "restarted").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._hung: set[int] = set()
        self._stuck = False
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            run_sync(self._guard)(cell_seed(str(meta.get("grade_id", index))))
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except CellTimeoutError as err:  # the wait for the stuck kernel's output; the reply already failed
            if not self._stuck:
                raise
            cell.outputs.append(NotebookNode(output_type="error", ename="CellTimeoutError", evalue=str(err)[:300],
                                             traceback=["CellTimeoutError: the cell ran past the timeout"]))
        if self._stuck:
            self._hung.add(index)
            self._stuck = False
            self.iopub_timeout = self._iopub_timeout
            run_sync(self._recover)(index)
            cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=(
                "[course grade] this cell ignored the interrupt after the timeout: the kernel was restarted "
                "and the cells before it run again\n")))
        return cell, resources

    async def _run_silently(self, code: str, timeout: float) -> bool:
        """Execute ``code`` without output; True if the kernel answered within ``timeout`` seconds."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Exception:  # noqa: BLE001 - queue.Empty or a closed channel: no answer
                return False
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    async def _guard(self, seed: int) -> None:
        if not await self._run_silently(GUARD_SOURCE % seed, self.timeout or 60):
            self.log.warning("grading guard did not run")

    async def _async_handle_timeout(self, timeout, cell=None):
        reply = await super()._async_handle_timeout(timeout, cell)
        if not await self._run_silently("", self.interrupt_grace):
            self.log.warning("the kernel ignored the interrupt: restarting it")
            self._stuck = True
            self._iopub_timeout, self.iopub_timeout = self.iopub_timeout, 1  # no output will come: don't wait
        return reply

    async def _recover(self, index: int) -> None:
        """Restart the kernel and replay the code cells before ``index`` (hung ones left out)."""
        await ensure_async(self.km.restart_kernel(now=True))
        self.kc.stop_channels()
        await self.async_start_new_kernel_client()
        for i, cell in enumerate(self.nb.cells[:index]):
            if cell.cell_type != "code" or i in self._hung or not cell.source.strip():
                continue
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                await self._guard(cell_seed(str(meta.get("grade_id", i))))
            if not await self._run_silently(cell.source, self.timeout or 60):
                raise KernelStuck(f"cell {i} hung again while the kernel's state was rebuilt after a hung cell")
