"""Run a notebook kernel inside a bubblewrap sandbox, for ``course grade``.

The kernel of one submission sees:

- a read-only view of the system (``--ro-bind / /``);
- empty, read-only directories in place of ``/tmp``, ``/home``, ``/root``, ``/run``, ``/srv``, the
  instructor's ``$HOME``, the course root (which holds ``solutions/``, the gradebook and every
  submission) and the exchange directory; of these only the Python environment, ``course_lib`` and the
  data folder are mounted back, read-only;
- its own working copy (nbgrader's ``autograded/<student>/<assignment>/``), the one writable place,
  and a private run folder that holds the kernel's Unix sockets (jupyter's ``ipc`` transport, which
  needs no network);
- no network (``--unshare-net``), its own PID, IPC and UTS namespaces, and death with its parent;
- resource limits set inside the sandbox: data segment (``RLIMIT_DATA``: heap and anonymous
  mappings, so a memory bomb gets ``MemoryError`` while CUDA's large ``PROT_NONE`` reservations still
  work), processes (``RLIMIT_NPROC``), CPU seconds (``RLIMIT_CPU``), file size (``RLIMIT_FSIZE``) and
  no core files.

``RLIMIT_NPROC`` does not apply to root, so when the grader runs as root the kernel runs as an
unprivileged uid (``setpriv``), one uid per worker, so that the limit counts one kernel's processes.

:class:`SandboxedKernelManager` is a jupyter ``AsyncKernelManager`` that launches its kernel this way;
:class:`SandboxedExecute` is nbgrader's ``Execute`` preprocessor with that kernel manager, and is all
that ``course grade`` changes in nbgrader's autograde pipeline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbgrader.preprocessors import Execute
from traitlets import Integer, List, Unicode

GiB = 1024 ** 3
INSTALL_HINT = ("bubblewrap (`bwrap`) is not installed, so submissions cannot be sandboxed. Install it "
                "(Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`; "
                "Arch: `sudo pacman -S bubblewrap`), or grade WITHOUT isolation with `--no-sandbox`.")
# Paths hidden from every kernel (replaced by empty read-only directories) when they exist.
SYSTEM_HIDDEN = ("/tmp", "/var/tmp", "/home", "/root", "/run", "/srv", "/mnt", "/media")
# Environment variables a kernel keeps; everything else (tokens, keys, ...) is dropped.
ENV_KEEP = re.compile(r"^(COURSE_\w+|NBGRADER_\w+|OMP_\w+|MKL_\w+|OPENBLAS_\w+|CUDA_\w+|NVIDIA_\w+|"
                      r"TORCH_\w+|PYTHONHASHSEED|PYTHONUNBUFFERED|MPLBACKEND|LANG|LC_\w+|TZ|TERM)$")
_LIMITER = ("import json,os,resource,sys\n"
            "lim=json.loads(sys.argv[1])\n"
            "for k,v in lim.items(): resource.setrlimit(getattr(resource,k),(v,v))\n"
            "os.setsid()\n"
            "os.execv(sys.argv[2],sys.argv[2:])\n")


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits (bytes, processes, CPU seconds)."""

    memory: int = 4 * GiB
    processes: int = 256
    cpu_seconds: int = 3600
    file_size: int = 1 * GiB

    def rlimits(self) -> dict[str, int]:
        """The ``resource`` limits the kernel process sets on itself inside the sandbox."""
        return {"RLIMIT_DATA": self.memory, "RLIMIT_NPROC": self.processes, "RLIMIT_CPU": self.cpu_seconds,
                "RLIMIT_FSIZE": self.file_size, "RLIMIT_CORE": 0}


@dataclass(frozen=True)
class Policy:
    """What one sandbox sees: hidden folders, folders mounted back read-only, the writable ones."""

    workdir: str
    rundir: str
    hide: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    uid: int | None = None  # run the kernel as this uid (used when the grader is root)


def parse_size(text: str | int) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)i?b?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 512M)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def bwrap_problem() -> str | None:
    """``None`` if bubblewrap is installed and can build a sandbox here, else what is wrong."""
    exe = shutil.which("bwrap")
    if exe is None:
        return INSTALL_HINT
    probe = subprocess.run([exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                            "--unshare-pid", "--die-with-parent", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"bubblewrap is installed but cannot create a sandbox here ({probe.stderr.strip()}); "
                "it needs user namespaces (or root). Fix that, or grade WITHOUT isolation with `--no-sandbox`.")
    return None


def default_allow() -> list[str]:
    """Folders a kernel needs to read: the Python environment, ``course_lib`` and the data folder."""
    import course_lib

    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
             os.path.dirname(os.path.abspath(course_lib.__file__)),
             os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(course_lib.__file__))), "data")}
    if os.environ.get("COURSE_DATA"):
        paths.add(os.environ["COURSE_DATA"])
    return sorted(os.path.realpath(p) for p in paths if os.path.isdir(p))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bwrap_argv(cmd: list[str], policy: Policy, env: dict[str, str]) -> list[str]:
    """The full command line: bwrap, then (as root) setpriv, then the rlimit launcher, then ``cmd``."""
    hide = sorted({os.path.realpath(p) for p in (*SYSTEM_HIDDEN, *policy.hide) if p and os.path.isdir(p)
                   and os.path.realpath(p) != "/"}, key=lambda p: (p.count("/"), p))
    allow = sorted({p for p in policy.allow if any(_under(p, h) for h in hide)}, key=lambda p: (p.count("/"), p))
    writable = [os.path.realpath(policy.workdir), os.path.realpath(policy.rundir)]
    argv = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for dev in sorted(Path("/dev").glob("nvidia*")) + [Path("/dev/dri")]:  # GPUs stay usable
        argv += ["--dev-bind-try", str(dev), str(dev)]
    for h in hide:
        argv += ["--perms", "0755", "--tmpfs", h]
    made = set()
    for target in allow + writable:  # parents of mount points inside a hidden folder: world-readable
        for h in hide:
            if _under(target, h) and target != h:
                parts = Path(target).relative_to(h).parts[:-1]
                for i in range(1, len(parts) + 1):
                    d = os.path.join(h, *parts[:i])
                    if d not in made and not any(_under(d, a) for a in allow + writable):
                        made.add(d)
                        argv += ["--perms", "0755", "--dir", d]
    for a in allow:
        argv += ["--ro-bind", a, a]
    for w in writable:
        argv += ["--bind", w, w]
    for h in hide:
        argv += ["--remount-ro", h]
    argv += ["--chdir", writable[0], "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--clearenv"]
    kept = {k: v for k, v in env.items() if ENV_KEEP.match(k)}
    kept.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
                HOME=writable[0], TMPDIR=writable[0], MPLCONFIGDIR=os.path.join(writable[1], "mpl"),
                PYTHONDONTWRITEBYTECODE="1")
    for k, v in sorted(kept.items()):
        argv += ["--setenv", k, v]
    if policy.uid is not None:
        argv += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={policy.uid}",
                 f"--regid={policy.uid}", "--clear-groups", "--"]
    exe = cmd[0] if os.path.isabs(cmd[0]) else (shutil.which(cmd[0]) or cmd[0])
    return argv + [sys.executable, "-S", "-c", _LIMITER, json.dumps(policy.limits.rlimits()), exe, *cmd[1:]]


def _seed_matplotlib_cache(dest: str) -> None:
    """Copy the grader's matplotlib font list into ``dest`` so a kernel does not rebuild it (seconds)."""
    os.makedirs(dest, exist_ok=True)
    for base in (os.environ.get("MPLCONFIGDIR"), os.path.expanduser("~/.cache/matplotlib"),
                 os.path.expanduser("~/.matplotlib")):
        if base and os.path.isdir(base):
            for f in Path(base).glob("fontlist-*.json"):
                shutil.copy(f, dest)
            return


LAUNCHED: list = []  # the bwrap processes this process started (see reap())
RUNDIRS: list = []  # their run folders (sockets, connection file)


def reap() -> int:
    """SIGKILL every sandbox this process started that still runs; returns how many.

    Killing bwrap takes the whole sandbox along (``--die-with-parent``, then the PID namespace ends).
    A safeguard after each submission, for kernels that nbclient could not shut down.
    """
    killed = 0
    while LAUNCHED:
        proc = LAUNCHED.pop()
        if proc.poll() is None:
            proc.kill()
            killed += 1
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    while RUNDIRS:
        shutil.rmtree(RUNDIRS.pop(), ignore_errors=True)
    return killed


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs under bubblewrap and talks over Unix sockets.

    Configured through traitlets (``course grade`` sets these in the worker's nbgrader config).
    """

    memory = Integer(4 * GiB, help="RLIMIT_DATA of the kernel, bytes").tag(config=True)
    processes = Integer(256, help="RLIMIT_NPROC inside the sandbox").tag(config=True)
    cpu_seconds = Integer(3600, help="RLIMIT_CPU of each kernel process, seconds").tag(config=True)
    file_size = Integer(1 * GiB, help="RLIMIT_FSIZE, bytes").tag(config=True)
    hide = List(Unicode(), help="extra folders to hide from the kernel").tag(config=True)
    allow = List(Unicode(), help="folders mounted back read-only inside hidden ones").tag(config=True)
    run_uid = Integer(-1, help="uid to run the kernel as when the grader is root (-1: 60000)").tag(config=True)

    _rundir: str | None = None

    async def _async_pre_start_kernel(self, **kw):
        """Put the connection file and the ipc sockets in a private, short-pathed run folder."""
        self._rundir = tempfile.mkdtemp(prefix="cg-")  # short: a Unix socket path has at most 107 bytes
        RUNDIRS.append(self._rundir)
        self.transport = "ipc"
        self.ip = os.path.join(self._rundir, "k")
        self.connection_file = os.path.join(self._rundir, "kernel.json")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        """Wrap the kernel command in bwrap (and setpriv as root); keep only a few environment variables."""
        workdir = os.path.realpath(kw.get("cwd") or os.getcwd())
        _seed_matplotlib_cache(os.path.join(self._rundir, "mpl"))
        uid = None
        if os.geteuid() == 0:
            uid = self.run_uid if self.run_uid >= 0 else 60000
            for d, _, files in os.walk(workdir):
                os.chown(d, uid, uid)
                for f in files:
                    os.chown(os.path.join(d, f), uid, uid, follow_symlinks=False)
            for d, _, files in os.walk(self._rundir):
                os.chown(d, uid, uid)
                for f in files:
                    os.chown(os.path.join(d, f), uid, uid)
            os.chmod(self._rundir, 0o755)
        policy = Policy(workdir=workdir, rundir=self._rundir, hide=tuple(self.hide),
                        allow=tuple(default_allow() + list(self.allow)),
                        limits=Limits(self.memory, self.processes, self.cpu_seconds, self.file_size), uid=uid)
        env = kw.pop("env", None) or dict(os.environ)
        argv = bwrap_argv(kernel_cmd, policy, env)
        self.log.debug("sandboxed kernel: %s", argv)
        result = await super()._async_launch_kernel(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, **kw)
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            LAUNCHED.append(process)
        return result

    async def _async_interrupt_kernel(self) -> None:
        """Interrupt by message (ipykernel then signals itself and its children inside the sandbox).

        A SIGINT sent from outside to the kernel's process group would also reach bwrap, which would
        die of it and take the kernel along.
        """
        if not self.has_kernel:
            return await super()._async_interrupt_kernel()
        import zmq

        sock = zmq.Context.instance().socket(zmq.DEALER)  # a plain socket: the message leaves now
        sock.linger = 2000
        sock.connect(self._make_url("control"))
        self.session.send(sock, self.session.msg("interrupt_request", content={}))
        sock.close()

    interrupt_kernel = _async_interrupt_kernel  # the base class binds its own coroutine at class creation

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._rundir and not restart:
            shutil.rmtree(self._rundir, ignore_errors=True)


# Run (silently) before every graded test cell: undo a student's monkeypatching of the references the
# tests rely on. It re-imports course_lib.grading from disk (and rebinds the notebook's names for it) and
# puts torch's comparison functions back from torch's C core, whose attributes cannot be reassigned.
GUARD_SOURCE = """
def __course_guard():
    import importlib, sys
    old = sys.modules.get("course_lib.grading")
    if old is not None:
        del sys.modules["course_lib.grading"]
        new = importlib.import_module("course_lib.grading")
        user = sys.modules["__main__"].__dict__
        for name, value in list(user.items()):
            if value is old:
                user[name] = new
    torch = sys.modules.get("torch")
    if torch is not None:
        core = torch._C._VariableFunctions
        for name in ("allclose", "isclose", "equal", "eq"):
            setattr(torch, name, getattr(core, name))
__course_guard()
del __course_guard
"""


class GuardedExecute(Execute):
    """nbgrader's ``Execute``, which before each graded cell silently runs :data:`GUARD_SOURCE`.

    This stops a student cell that replaces ``course_lib.grading``'s functions or ``torch.allclose``
    from passing a wrong answer. It is no defence against code that rewrites the interpreter itself
    (``builtins``, ``sys.modules``, import hooks); the sandbox bounds what such code can reach.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            run_sync(self._guard)()
        return super().preprocess_cell(cell, resources, index)

    async def _guard(self):
        msg_id = self.kc.execute(GUARD_SOURCE, silent=True, store_history=False, allow_stdin=False)
        try:
            await self.async_wait_for_reply(msg_id)
        except Exception as err:  # noqa: BLE001 - a stuck kernel fails the test cell that follows instead
            self.log.warning("grading guard did not run: %r", err)


class SandboxedExecute(GuardedExecute):
    """nbgrader's ``Execute`` (guarded), its kernel in a bubblewrap sandbox; nothing else differs."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
