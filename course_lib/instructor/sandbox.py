"""Run a notebook kernel inside a bubblewrap sandbox, for ``course grade``.

The kernel of one submission sees:

- a read-only view of the system (``--ro-bind / /``);
- empty, read-only directories in place of ``/tmp``, ``/home``, ``/root``, ``/run``, ``/srv``, the
  instructor's ``$HOME``, the course root (which holds ``solutions/``, the gradebook and every
  submission) and the exchange directory; of these only the Python environment, ``course_lib`` and the
  data folder are mounted back, read-only;
- its own scratch copy of the folder it was asked to run in (:func:`scratch_copy`: a fresh folder
  that no grader path leads to), the one writable place, and a private run folder that holds the
  kernel's Unix sockets (jupyter's ``ipc`` transport, which needs no network);
- no network (``--unshare-net``), its own PID, IPC and UTS namespaces, and death with its parent;
- resource limits set inside the sandbox: data segment (``RLIMIT_DATA``: heap and anonymous
  mappings, so a memory bomb gets ``MemoryError`` while CUDA's large ``PROT_NONE`` reservations still
  work), processes (``RLIMIT_NPROC``), CPU seconds (``RLIMIT_CPU``), file size (``RLIMIT_FSIZE``) and
  no core files.

Whatever the kernel leaves behind in its scratch copy (symbolic links, hard links, odd modes) is never
opened, written or chmodded by the grader: nbgrader writes the graded notebook into its own folder,
which no kernel ever had, and the scratch copy is only removed (:func:`remove_scratch`: as the kernel's
uid, then with ``shutil.rmtree``, which never follows a link).

``RLIMIT_NPROC`` does not apply to root, so when the grader runs as root the kernel runs as an
unprivileged uid (``setpriv``), one uid per worker (``SANDBOX_UID + slot``), so that the limit counts one
kernel's processes.

:class:`SandboxProvisioner` launches a kernel this way through jupyter_client's extension point for
that, a kernel provisioner (registered as ``course-sandbox`` in ``pyproject.toml``); :func:`use_sandbox`
makes it the default provisioner of the current process (a grading worker). This module never imports
torch.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner
from traitlets import Integer, List, Unicode

GiB = 1024 ** 3
SANDBOX_UID = 60000  # worker slot k runs its kernels as uid SANDBOX_UID + k when the grader is root
PROVISIONER = "course-sandbox"  # the entry point name in pyproject.toml
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
    package = Path(__file__).resolve().parents[1]  # course_lib/
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
             str(package), str(package.parent / "data")}
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


try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a forked child only calls it
except (OSError, AttributeError):
    _PRCTL = None


def die_with_parent(parent: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``: this process gets SIGKILL when the one that started it dies,
    even by SIGKILL (a grading worker when the grader dies, a sandbox's bwrap when its worker dies). A
    parent that died *before* this call sends no signal, so the process exits at once if its parent is no
    longer ``parent`` (the pid that started it): without that check, a grader killed while it forked a
    worker, or a worker killed while it launched a kernel, left that process running for ever (bwrap's own
    ``--die-with-parent`` has the same window). Runs in the child, before its work or its ``exec``."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


LAUNCHED: list = []  # the bwrap processes this process started (see reap())
RUNDIRS: list = []  # their run folders (sockets, connection file)
SCRATCH: list = []  # their working folders (scratch copies)


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
    while SCRATCH:
        remove_scratch(SCRATCH.pop(), None)
    return killed


def _chown_tree(path: str, uid: int) -> None:
    for d, _, files in os.walk(path):
        os.chown(d, uid, uid)
        for f in files:
            os.chown(os.path.join(d, f), uid, uid, follow_symlinks=False)


# Never copied into a grading kernel's folder: the visible tests' recorded values (a grading kernel compares
# nothing itself, course_lib.grading.recorded), so a submission cannot hand them back as its answers.
NOT_FOR_KERNELS = {"recorded.json"}


def scratch_copy(src: str, uid: int | None) -> str:
    """A fresh folder holding a copy of ``src`` (folders and regular files; links and :data:`NOT_FOR_KERNELS`
    are left out), owned by ``uid`` when given: the kernel's working folder. Nothing the grader reads or
    writes is in it."""
    dest = tempfile.mkdtemp(prefix="cg-w-")
    SCRATCH.append(dest)
    for d, dirs, files in os.walk(src):
        rel = os.path.relpath(d, src)
        for name in dirs:
            if not os.path.islink(os.path.join(d, name)):
                os.makedirs(os.path.join(dest, rel, name), exist_ok=True)
        for name in files:
            path = os.path.join(d, name)
            if not os.path.islink(path) and os.path.isfile(path) and name not in NOT_FOR_KERNELS:
                shutil.copy2(path, os.path.join(dest, rel, name), follow_symlinks=False)
    if uid is not None:
        _chown_tree(dest, uid)  # a fresh folder no kernel has seen yet
    return dest


def remove_scratch(path: str, uid: int | None) -> None:
    """Delete a kernel's scratch folder: first as the kernel's own ``uid`` (``rm -rf``, which never follows a
    link; as that uid it can remove only what the kernel could write anyway), then what is left as this
    process, with ``shutil.rmtree``, which refuses to follow links (``avoids_symlink_attacks``)."""
    if uid is not None and os.path.isdir(path):
        subprocess.run([shutil.which("rm") or "/bin/rm", "-rf", "--one-file-system", "--", path], user=uid,
                       group=uid, extra_groups=[], cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False)
    assert shutil.rmtree.avoids_symlink_attacks, "this platform's shutil.rmtree could follow links"
    shutil.rmtree(path, ignore_errors=True)


class SandboxProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the kernel launched under bubblewrap over Unix sockets.

    ``pre_launch`` puts the connection file and the ``ipc`` sockets in a private, short-pathed run
    folder, switches interrupts to messages (a SIGINT sent to the kernel's process group would reach
    bwrap, which would die of it and take the kernel along), and wraps the kernel command with
    :func:`bwrap_argv`. Configured through traitlets of the kernel manager's config.
    """

    memory = Integer(Limits.memory, help="RLIMIT_DATA of the kernel, bytes").tag(config=True)
    processes = Integer(Limits.processes, help="RLIMIT_NPROC inside the sandbox").tag(config=True)
    cpu_seconds = Integer(Limits.cpu_seconds, help="RLIMIT_CPU of each kernel process, seconds").tag(config=True)
    file_size = Integer(Limits.file_size, help="RLIMIT_FSIZE, bytes").tag(config=True)
    hide = List(Unicode(), help="extra folders to hide from the kernel").tag(config=True)
    allow = List(Unicode(), help="folders mounted back read-only inside hidden ones").tag(config=True)
    run_uid = Integer(SANDBOX_UID, help="uid to run the kernel as when the grader is root").tag(config=True)

    rundir: str | None = None
    workdir: str | None = None  # the scratch copy, made at the first launch and kept across restarts
    uid: int | None = None

    async def pre_launch(self, **kwargs):
        km = self.parent
        self.rundir = tempfile.mkdtemp(prefix="cg-")  # short: a Unix socket path has at most 107 bytes
        RUNDIRS.append(self.rundir)
        km.transport = "ipc"
        km.ip = os.path.join(self.rundir, "k")
        km.connection_file = os.path.join(self.rundir, "kernel.json")
        self.kernel_spec.interrupt_mode = "message"
        env = kwargs.pop("env", None) or dict(os.environ)
        kwargs = await super().pre_launch(**kwargs)
        self.uid = self.run_uid if os.geteuid() == 0 else None
        if self.workdir is None:  # a restart keeps the scratch copy (and never walks what the kernel wrote)
            asked = os.path.realpath(kwargs.get("cwd") or os.getcwd())
            self.workdir = os.path.realpath(scratch_copy(asked, self.uid))
        _seed_matplotlib_cache(os.path.join(self.rundir, "mpl"))
        if self.uid is not None:
            _chown_tree(self.rundir, self.uid)
            os.chmod(self.rundir, 0o755)
        policy = Policy(workdir=self.workdir, rundir=self.rundir, hide=tuple(self.hide),
                        allow=tuple(default_allow() + list(self.allow)),
                        limits=Limits(self.memory, self.processes, self.cpu_seconds, self.file_size), uid=self.uid)
        kwargs["cmd"] = bwrap_argv(kwargs["cmd"], policy, env)
        kwargs["cwd"] = self.workdir
        kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        kwargs["preexec_fn"] = functools.partial(die_with_parent, os.getpid())  # bwrap dies with this worker
        self.log.debug("sandboxed kernel: %s", kwargs["cmd"])
        return kwargs

    async def launch_kernel(self, cmd, **kwargs):
        info = await super().launch_kernel(cmd, **kwargs)
        LAUNCHED.append(self.process)
        return info

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if self.rundir and not restart:
            shutil.rmtree(self.rundir, ignore_errors=True)
        if self.workdir and not restart:
            if self.workdir in SCRATCH:
                SCRATCH.remove(self.workdir)
            remove_scratch(self.workdir, self.uid)
            self.workdir = None


def use_sandbox() -> None:
    """Make :class:`SandboxProvisioner` the default provisioner of every kernel this process starts."""
    KernelProvisionerFactory.instance().default_provisioner_name = PROVISIONER
