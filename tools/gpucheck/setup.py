"""Set-up on the GPU machine: carried wheels, Fashion-MNIST from its packed copies, the environment probe."""
from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
PACKED_DATA = Path("data") / "gpu-pack"          # where tools/gpu-pack puts the .gz copies (carried)


def find_module(name: str) -> bool:
    """Whether ``name`` is importable (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def norm_name(name: str) -> str:
    """A distribution name normalised as in PEP 503."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str):
    """A sort key for simple version strings (``1.10`` after ``1.9``)."""
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def installed(dist: str) -> bool:
    """Whether the distribution ``dist`` is installed in this Python."""
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def wheels_to_install(wheel_dir: Path) -> tuple[list[Path], list[str]]:
    """The wheels of ``wheel_dir`` whose distribution is not installed (the newest of each), and notes."""
    newest: dict[str, tuple[str, Path]] = {}
    notes = []
    for wheel in sorted(wheel_dir.glob("*.whl")):
        parts = wheel.name[:-4].split("-")
        if len(parts) < 5:
            notes.append(f"{wheel.name}: not a wheel file name, ignored")
            continue
        dist, version = norm_name(parts[0]), parts[1]
        if dist in newest:
            notes.append(f"{dist}: several wheels, the newest is installed")
            if version_key(version) <= version_key(newest[dist][0]):
                continue
        newest[dist] = (version, wheel)
    chosen = [w for dist, (_, w) in sorted(newest.items()) if not installed(dist)]
    return chosen, notes


def ensure_data(data_root: Path, root: Path) -> dict:
    """Fashion-MNIST's four raw files in ``data_root/FashionMNIST/raw``, decompressed from carried .gz if needed."""
    raw = data_root / "FashionMNIST" / "raw"
    sources = [data_root / "gpu-pack" / "FashionMNIST" / "raw", root / PACKED_DATA / "FashionMNIST" / "raw", raw]
    done = []
    for name in IDX_FILES:
        if (raw / name).is_file():
            continue
        gz = next((f / f"{name}.gz" for f in sources if (f / f"{name}.gz").is_file()), None)
        if gz is None:
            continue
        raw.mkdir(parents=True, exist_ok=True)
        tmp = raw / f".{name}.part"
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, raw / name)
        done.append(str(gz))
    missing = [n for n in IDX_FILES if not (raw / n).is_file()]
    return {"folder": str(raw), "present": not missing, "missing": missing, "decompressed": done}


def write_tiny_fashion_mnist(src_raw: Path, dest_root: Path, n_train: int = 1024, n_test: int = 256) -> Path:
    """A small copy of Fashion-MNIST in torchvision's layout (the first images, or random ones without
    the real files), for the dry run's benchmarks."""
    raw = dest_root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "t10k": n_test}
    rng = random.Random(0)
    for name in IDX_FILES:
        n = sizes[name.split("-")[0]]
        images = "images" in name
        header, item = (16, 28 * 28) if images else (8, 1)
        src = src_raw / name
        if src.is_file():
            with open(src, "rb") as f:
                body = f.read(header + n * item)[header:]
        else:
            body = bytes(rng.randrange(256) if images else rng.randrange(10) for _ in range(n * item))
        dims = struct.pack(">IIII", 0x803, n, 28, 28) if images else struct.pack(">II", 0x801, n)
        (raw / name).write_bytes(dims + body)
    return dest_root


def nvidia_smi() -> str | None:
    """The GPU's name, driver and memory as nvidia-smi reports them, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# Run in a child Python (``python -c``) with MODULES and VERSIONS substituted: what the machine has.
PROBE = r"""
import importlib, importlib.metadata as md, importlib.util, json, os, platform, sys
out = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform()}
def ok(m):
    try:
        return importlib.util.find_spec(m) is not None
    except Exception:
        return False
out["importable"] = {m: ok(m) for m in MODULES}
out["versions"] = {}
for d in VERSIONS:
    try:
        out["versions"][d] = md.version(d)
    except Exception:
        pass
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda_available"] = torch.cuda.is_available()
    out["cuda_version"] = torch.version.cuda
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out["device_name"] = torch.cuda.get_device_name(0)
        out["device_count"] = torch.cuda.device_count()
        out["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
        out["memory_gib"] = round(p.total_memory / 2**30, 1)
        out["multiprocessors"] = p.multi_processor_count
    out["torch_threads"] = torch.get_num_threads()
except Exception as e:
    out["torch_error"] = repr(e)
try:
    import torchvision
    out["torchvision"] = torchvision.__version__
except Exception as e:
    out["torchvision_error"] = repr(e)
try:
    import course_lib.capstone, course_lib.data
    out["course_lib"] = os.path.dirname(course_lib.__file__)
except Exception as e:
    out["course_lib_error"] = repr(e)
try:
    from jupyter_client.kernelspec import KernelSpecManager
    out["kernel_argv"] = KernelSpecManager().get_kernel_spec("python3").argv
except Exception as e:
    out["kernel_error"] = repr(e)
try:
    with open("/proc/cpuinfo") as f:
        out["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
except OSError:
    out["cpu"] = platform.processor()
out["cpu_count"] = os.cpu_count()
print("GPU_CHECK_PROBE " + json.dumps(out))
"""


def probe_code(modules, versions) -> str:
    """The probe's source with the modules to look for and the distributions whose versions to report."""
    return PROBE.replace("MODULES", repr(tuple(modules))).replace("VERSIONS", repr(tuple(versions)))
