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
- Outputs are bounded in the grader, as they arrive: a cell keeps at most ``max_cell_output`` bytes of
  output and a notebook ``max_notebook_output``; past either, the rest of the cell's output is dropped and
  the cell gets an ``OutputLimitExceeded`` error (a graded cell scores 0). No single message over
  ``BoundedKernelClient.max_message`` bytes is even received (``ZMQ_MAXMSGSIZE``). A flood costs its cell,
  never the grader's memory.
"""
from __future__ import annotations

import asyncio
import hashlib
import time

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

MB = 1000 ** 2

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


def payload_bytes(obj) -> int:
    """Bytes of text in a decoded kernel message (strings, bytes, keys), counted without serialising it."""
    total, todo = 0, [obj]
    while todo:
        x = todo.pop()
        if isinstance(x, (str, bytes, bytearray, memoryview)):
            total += len(x)
        elif isinstance(x, dict):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
        else:
            total += 8
    return total


class BoundedKernelClient(AsyncKernelClient):
    """jupyter_client's client whose sockets refuse any message over ``max_message`` bytes (``ZMQ_MAXMSGSIZE``:
    zmq drops the connection instead of allocating, then reconnects) and queue at most ``max_queued``
    unread messages (``ZMQ_RCVHWM``; the rest wait in the kernel's own memory), so no output, however
    large or fast, can take the grader's memory."""

    max_message = Integer(16 * MB, help="the largest kernel message the grader receives, bytes").tag(config=True)
    max_queued = Integer(4, help="kernel messages queued unread in the grader").tag(config=True)

    def _context_default(self) -> zmq.asyncio.Context:
        ctx = super()._context_default()
        ctx.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        ctx.setsockopt(zmq.RCVHWM, self.max_queued)
        return ctx


IOPUB_LOST = "Timeout waiting for IOPub output"  # nbclient's words when a cell's output stops arriving


def _lost_output() -> NotebookNode:
    text = ("the cell's output stopped arriving (a message over the grader's limit is refused, and the "
            "connection with it): the rest of its output was lost")
    return NotebookNode(output_type="error", ename="OutputLimitExceeded", evalue=text,
                        traceback=[f"OutputLimitExceeded: {text}"])


class KernelStuck(RuntimeError):
    """The kernel could not be brought back after a hung cell."""


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` with :data:`GUARD_SOURCE` before graded cells and recovery from hung kernels."""

    interrupt_grace = Integer(10, help="seconds a kernel gets to answer after an interrupt before it is "
                                       "restarted").tag(config=True)
    max_cell_output = Integer(10 * MB, help="bytes of output one cell keeps; past it the rest is dropped and "
                                            "the cell fails").tag(config=True)
    max_notebook_output = Integer(50 * MB, help="bytes of output a notebook keeps; past it every later cell's "
                                                "output is dropped and the cell fails").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._hung: set[int] = set()
        self._stuck = False
        self._kept = self._cell_bytes = self._dropped = 0
        return super().preprocess(nb, resources, km)

    def create_kernel_manager(self):
        """nbclient's kernel manager, whose clients refuse oversized messages (:class:`BoundedKernelClient`)."""
        km = super().create_kernel_manager()
        km.client_factory = BoundedKernelClient
        return km

    def process_message(self, msg, cell, cell_index):
        """nbclient's handling of one kernel message, after counting its bytes against the cell's and the
        notebook's limits; a message past them is dropped (and counted, for the cell's error)."""
        kind = msg.get("msg_type")
        if kind == "clear_output":
            self._cell_bytes = 0
        elif kind not in ("status", "execute_input"):
            size = payload_bytes(msg.get("content")) + sum(len(b) for b in msg.get("buffers") or [])
            if (self._cell_bytes + size > self.max_cell_output
                    or self._kept + self._cell_bytes + size > self.max_notebook_output):
                self._dropped += size
                return None
            self._cell_bytes += size
        return super().process_message(msg, cell, cell_index)

    def _flood_error(self) -> NotebookNode:
        text = (f"this cell's output passed the grader's limit ({self.max_cell_output / MB:g} MB a cell, "
                f"{self.max_notebook_output / MB:g} MB a notebook): {self._dropped / MB:.1f} MB were dropped")
        return NotebookNode(output_type="error", ename="OutputLimitExceeded", evalue=text,
                            traceback=[f"OutputLimitExceeded: {text}"])

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            run_sync(self._guard)(cell_seed(str(meta.get("grade_id", index))))
        self._cell_bytes = self._dropped = 0
        try:
            return self._execute_cell(cell, resources, index)
        finally:
            if self._dropped:
                cell.outputs.append(self._flood_error())
            self._kept += self._cell_bytes

    def _execute_cell(self, cell, resources, index):
        """nbgrader's execution of one cell, with the recovery from a kernel that ignores the interrupt."""
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except CellTimeoutError as err:
            if self._stuck:  # the wait for the stuck kernel's output; the reply already failed
                cell.outputs.append(NotebookNode(output_type="error", ename="CellTimeoutError",
                                                 evalue=str(err)[:300],
                                                 traceback=["CellTimeoutError: the cell ran past the timeout"]))
            elif IOPUB_LOST in str(err):  # the cell ran; its output did not all arrive
                run_sync(self._reconnect_iopub)()
                cell.outputs.append(_lost_output())
            else:
                raise
        if self._stuck:
            self._hung.add(index)
            self._stuck = False
            self.iopub_timeout = self._iopub_timeout
            run_sync(self._recover)(index)
            cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=(
                "[course grade] this cell ignored the interrupt after the timeout: the kernel was restarted "
                "and the cells before it run again\n")))
        return cell, resources

    async def _reconnect_iopub(self) -> None:
        """A fresh iopub socket: zmq closes, and never reopens, a connection that sent a message over
        :attr:`BoundedKernelClient.max_message`; what the kernel sent meanwhile is lost."""
        self.kc.iopub_channel.close()
        self.kc._iopub_channel = None
        self.kc.iopub_channel.start()
        await asyncio.sleep(0.5)  # the new subscription reaches the kernel before the next cell

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
