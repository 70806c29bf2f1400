"""Datasets as float tensors that live on the compute device, and a loader that never leaves it.

- ``load_dataset(name)`` loads Fashion-MNIST, MNIST or CIFAR-10 through torchvision's dataset classes
  into a :class:`Dataset` (x float32 in [0, 1] shaped (N, C, H, W), y int64) on ``get_device()``.
  Files are looked for in ``root``, else ``$COURSE_DATA``, else ``./data`` (torchvision's layout);
  Fashion-MNIST is also taken from Debian's ``dataset-fashion-mnist`` package; then torchvision may
  download; failing all that, scikit-learn's bundled 8x8 digits stand in, with one line on stdout.
- A corrupt or truncated file raises :class:`DataError` naming the file. The loader never deletes
  or overwrites a file that is already there.
- ``DeviceLoader`` yields shuffled mini-batches by indexing tensors already on the device.
- ``prepare()`` / ``python -m course_lib.data`` (``make data``) puts Fashion-MNIST in place.
- ``colour_fashion_mnist()`` builds a colour version of Fashion-MNIST that runs offline: every garment
  tinted with a random colour and lit with a random lighting, both independent of the class, and the
  test split lit from a shifted range (chapter 01's colour augmentation experiment); ``relight`` shifts
  the lighting of colour photos (CIFAR-10) the same way.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from . import runtime
from .runtime import generator_device

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("fashion_mnist", "mnist", "cifar10", "digits")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_TITLES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "digits": "digits"}
_FOLDERS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}  # torchvision's folder (= class) names


def _tv_class(name: str):
    """torchvision's dataset class for ``name``, imported only when a dataset must be parsed (it costs ~2 s)."""
    from torchvision import datasets as tvd

    return {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]


def _read_idx(path: Path) -> Tensor:
    """One idx file, read by torchvision."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    return (read_image_file if "images" in path.name else read_label_file)(str(path))
_PREFIX = "course_lib.data:"


class DataError(RuntimeError):
    """A data file exists but cannot be read (corrupt or truncated); the message names the file."""


@dataclass
class Dataset:
    """Train and test split as tensors on one device: x float32 (N, C, H, W) in [0, 1], y int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one input, ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.x_train.device

    def subset(self, n_train: int | None = None, n_test: int | None = None,
               generator: torch.Generator | None = None) -> "Dataset":
        """A random subset of ``n_train`` / ``n_test`` samples (``None``: keep that split whole).

        Indices are drawn from ``generator`` (the global RNG if ``None``); counts above the split's
        size are clamped to it, so the call also works on the small digits fallback.
        """
        x_train, y_train = _take(self.x_train, self.y_train, n_train, generator)
        x_test, y_test = _take(self.x_test, self.y_test, n_test, generator)
        return Dataset(self.name, x_train, y_train, x_test, y_test, list(self.classes))

    def to(self, device) -> "Dataset":
        """The same data on ``device``."""
        device = torch.device(device)
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       self.x_test.to(device), self.y_test.to(device), list(self.classes))


def _permutation(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)`` drawn on the generator's device, returned on ``device``."""
    gen_device = generator_device(generator)
    return torch.randperm(n, generator=generator, device=gen_device).to(device)


def _take(x: Tensor, y: Tensor, n: int | None, generator) -> tuple[Tensor, Tensor]:
    """``n`` random rows of ``(x, y)``, or both unchanged when ``n`` is ``None``."""
    if n is None:
        return x, y
    if n < 0:
        raise ValueError(f"subset sizes must be >= 0, got {n}")
    index = _permutation(len(x), generator, x.device)[:n]
    return x[index], y[index]


class DeviceLoader:
    """Mini-batches ``(xb, yb)`` cut from tensors that already live on the device.

    No ``torch.utils.data.DataLoader`` and no per-sample Python: every batch is one indexing
    operation. With ``shuffle`` each epoch (each ``iter()``) draws a fresh permutation from
    ``generator`` (drawn on the generator's device, then moved to the data's), so the same seed
    gives the same batch order. ``transform`` is applied to every whole batch ``xb``.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = True,
                 generator: torch.Generator | None = None, transform: Callable | None = None,
                 drop_last: bool = False):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if x.device != y.device:
            raise ValueError(f"x is on {x.device} but y is on {y.device}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.shuffle, self.generator, self.transform, self.drop_last = shuffle, generator, transform, drop_last

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self) -> Tensor | None:
        """This epoch's sample order: a fresh permutation with ``shuffle``, else ``None`` (in order)."""
        return _permutation(len(self.x), self.generator, self.x.device) if self.shuffle else None

    def __iter__(self):
        """One epoch of ``(xb, yb)`` batches."""
        index = self.order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if index is None:
                xb, yb = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                batch = index[start:start + self.batch_size]
                xb, yb = self.x[batch], self.y[batch]
            yield (self.transform(xb) if self.transform is not None else xb), yb


# ----------------------------------------------------------------------------------- file handling

def _default_root() -> Path:
    """``data/`` of the course checkout when course_lib is installed from one, else ``./data``.

    Notebooks run in their own chapter folders, so a bare ``./data`` would give each chapter its own copy.
    """
    checkout = Path(__file__).resolve().parents[1]
    return checkout / "data" if (checkout / "pyproject.toml").is_file() else Path("data")


def data_root(root=None) -> Path:
    """``root``, else ``$COURSE_DATA``, else the default data folder, as an absolute path."""
    chosen = root if root is not None else os.environ.get("COURSE_DATA") or _default_root()
    return Path(os.path.abspath(os.path.expanduser(chosen)))


def _required_files(name: str, root: Path) -> list[Path]:
    """The files torchvision needs under ``root`` for dataset ``name``."""
    if name == "cifar10":
        cls = _tv_class(name)
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / f for f in names]
    return [root / _FOLDERS[name] / "raw" / f for f in IDX_FILES]


def _present(name: str, root: Path) -> bool:
    """Whether every file of ``name`` exists under ``root`` (integrity is checked when loading)."""
    return all(p.is_file() for p in _required_files(name, root))


def _decompress(src: Path, dest: Path) -> None:
    """Gunzip ``src`` into ``dest`` atomically (temp file + ``os.replace``), checking the IDX content."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "xb") as out, gzip.open(src, "rb") as gz:
            shutil.copyfileobj(gz, out, 1 << 20)
        _read_idx(tmp)
        os.replace(tmp, dest)
    except Exception as exc:
        raise DataError(f"{_PREFIX} {src} is corrupt or truncated ({type(exc).__name__}: {exc}). "
                        "Reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`, "
                        "then run `make data`.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)  # only our own half-written temp file, never a user's file


def _copy_from_debian(root: Path) -> bool:
    """Decompress Debian's Fashion-MNIST ``.gz`` files into ``root`` where files are missing."""
    sources = [Path(DEBIAN_FASHION_MNIST) / f"{f}.gz" for f in IDX_FILES]
    targets = _required_files("fashion_mnist", root)
    if not all(s.is_file() for s in sources):
        return False
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    for src, dest in zip(sources, targets):
        if not dest.exists():
            _decompress(src, dest)
    return True


def _download(name: str, root: Path) -> bool:
    """Let torchvision download ``name`` into a temp dir in ``root``; move in only missing files.

    Returns False when the download fails (no network); torchvision's output is swallowed.
    """
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                _tv_class(name)(tmp, train=True, download=True)
        except Exception:
            return False
        for src, dest in zip(_required_files(name, Path(tmp)), _required_files(name, root)):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.replace(src, dest)
    return True


def _fix_hint(name: str, what: str = "that file") -> str:
    """What to do about a bad file (``what``) of dataset ``name``."""
    if name == "fashion_mnist":
        return (f"Delete {what} and run `make data` (it is recreated from {DEBIAN_FASHION_MNIST}; "
                "if that copy is damaged, `sudo apt-get install --reinstall dataset-fashion-mnist`).")
    return f"Delete {what} and call load_dataset({name!r}, download=True) to fetch it again."


def _bad_file(path: Path, name: str, reason: str) -> DataError:
    """A DataError naming ``path``."""
    return DataError(f"{_PREFIX} {path} is corrupt or truncated ({reason}). {_fix_hint(name)}")


def _find_bad_file(name: str, root: Path, exc: Exception) -> DataError:
    """After torchvision failed to load ``name``, re-check each file and blame the first bad one."""
    from torchvision.datasets.utils import check_integrity

    cls = _tv_class(name)
    if name == "cifar10":
        checks = [(f, md5) for f, md5 in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]
        for f, md5 in checks:
            if not check_integrity(root / cls.base_folder / f, md5):
                return _bad_file(root / cls.base_folder / f, name, "its md5 checksum does not match")
    else:
        for path in _required_files(name, root):
            try:
                _read_idx(path)
            except Exception as err:
                return _bad_file(path, name, f"{type(err).__name__}: {err}")
    folder = _required_files(name, root)[0].parent
    return DataError(f"{_PREFIX} could not load {_TITLES[name]} from {folder} ({type(exc).__name__}: {exc}). "
                     f"{_fix_hint(name, 'the files there')}")


# ----------------------------------------------------------------------------------------- loading

def _as_float(x_uint8: Tensor, device) -> Tensor:
    """uint8 (N, C, H, W) -> contiguous float32 in [0, 1] on ``device`` (converted there)."""
    return x_uint8.to(device).contiguous().float().div_(255)


def _parse(name: str, root: Path) -> dict:
    """Read ``name`` with torchvision's classes: uint8 images (N, C, H, W), int64 labels, class names.

    Any failure becomes a DataError naming the file.
    """
    cls = _tv_class(name)
    try:
        splits = [cls(str(root), train=train, download=False) for train in (True, False)]
    except Exception as exc:
        raise _find_bad_file(name, root, exc) from None
    out = {"classes": list(splits[0].classes)}
    for split, ds in zip(("train", "test"), splits):
        x = torch.as_tensor(ds.data)
        x = x.permute(0, 3, 1, 2) if name == "cifar10" else x.unsqueeze(1)
        y = torch.as_tensor(ds.targets, dtype=torch.int64)
        if len(x) != len(y) or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(out["classes"])):
            folder = _required_files(name, root)[0].parent
            raise DataError(f"{_PREFIX} images and labels in {folder} do not match "
                            f"({len(x)} images, {len(y)} labels). {_fix_hint(name, 'them')}")
        out[f"x_{split}"], out[f"y_{split}"] = x.contiguous(), y
    return out


CACHE_VERSION = 1


def _cache_file(name: str, root: Path) -> Path:
    """Where the parsed tensors of an MNIST-like dataset are kept, next to its ``raw/`` folder."""
    return root / _FOLDERS[name] / f"{name}.course_lib.pt"


def _stamp(name: str, root: Path) -> list:
    """Name, size and modification time of each raw file: a cache is valid only for these exact files."""
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in _required_files(name, root)]


def _cached(name: str, root: Path) -> dict | None:
    """The parsed tensors, from the cache when it matches the raw files, else parsed (and cached if we may).

    Reading the cache needs no torchvision import (about 2 s a kernel); a read-only data folder (the
    grader's sandbox) just parses every time.
    """
    if name not in _FOLDERS:
        return _parse(name, root)
    path = _cache_file(name, root)
    try:
        blob = torch.load(path, weights_only=True)
        if blob.get("version") == CACHE_VERSION and blob.get("stamp") == _stamp(name, root):
            return blob
    except Exception:  # noqa: BLE001 - missing, stale or damaged: parse again
        pass
    blob = {**_parse(name, root), "version": CACHE_VERSION, "stamp": _stamp(name, root)}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return blob


def _from_torchvision(name: str, root: Path, device) -> Dataset:
    """The Dataset of ``name`` on ``device``, parsed by torchvision (or from its cache)."""
    blob = _cached(name, root)
    return Dataset(name, _as_float(blob["x_train"], device), blob["y_train"].to(device),
                   _as_float(blob["x_test"], device), blob["y_test"].to(device), classes=list(blob["classes"]))


def _load_digits(device=None) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 0..16 scaled to [0, 1]): first 1500 train, rest test."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    device = device if device is not None else runtime.get_device()
    return Dataset("digits", x[:1500].to(device), y[:1500].to(device), x[1500:].to(device),
                   y[1500:].to(device), [str(i) for i in range(10)])


def _locate(name: str, root: Path, download: bool) -> str | None:
    """Make ``name``'s files present under ``root``; return where they came from, or None."""
    if _present(name, root):
        return str(_required_files(name, root)[0].parent)
    if name == "fashion_mnist" and _copy_from_debian(root) and _present(name, root):
        return f"{_required_files(name, root)[0].parent} (decompressed from {DEBIAN_FASHION_MNIST})"
    if download and _download(name, root) and _present(name, root):
        return f"{_required_files(name, root)[0].parent} (downloaded)"
    return None


def _fallback_message(name: str, root: Path, download: bool) -> str:
    """The one line that says digits stand in for ``name``."""
    places = f"{root}" + (f" or {DEBIAN_FASHION_MNIST}" if name == "fashion_mnist" else "")
    why = "could not be downloaded" if download else "download=False"
    return (f"{_PREFIX} {_TITLES[name]} not found in {places} and {why}; "
            "using scikit-learn's digits (1797 8x8 images) instead.")


def load_dataset(name: str = "fashion_mnist", *, root=None, device=None, download: bool = True,
                 verbose: bool = True) -> Dataset:
    """Load ``name`` (one of :data:`NAMES`) as a :class:`Dataset` on ``device`` (default ``get_device()``).

    Looks in ``root`` / ``$COURSE_DATA`` / ``./data``, then (Fashion-MNIST) Debian's package, then
    downloads if ``download``; otherwise falls back to digits and says so in one stdout line.
    ``verbose=False`` prints nothing. Raises :class:`DataError` for a corrupt or truncated file.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names are {', '.join(NAMES)}")
    device = torch.device(device) if device is not None else runtime.get_device()
    if name == "digits":
        ds, line = _load_digits(device), f"{_PREFIX} digits from scikit-learn"
    else:
        root = data_root(root)
        source = _locate(name, root, download)
        if source is None:
            ds, line = _load_digits(device), _fallback_message(name, root, download)
        else:
            ds, line = _from_torchvision(name, root, device), f"{_PREFIX} {_TITLES[name]} from {source}"
    if verbose:
        if ds.name == name:
            line += (f": {len(ds.x_train)} train / {len(ds.x_test)} test images of "
                     f"{'x'.join(map(str, ds.input_shape))}, {ds.num_classes} classes, on {device}.")
        print(line)
    return ds


def prepare(root=None, *, download: bool = True) -> Path:
    """Put Fashion-MNIST's raw files under ``root`` (from Debian, else a download) and return their directory.

    The files are read once to check them (``DataError`` if one is bad); ``FileNotFoundError`` when
    neither source is available (notebooks then fall back to digits).
    """
    root = data_root(root)
    if _locate("fashion_mnist", root, download) is None:
        raise FileNotFoundError(_fallback_message("fashion_mnist", root, download))
    _cache_file("fashion_mnist", root).unlink(missing_ok=True)  # parsed afresh: a check of the files
    _cached("fashion_mnist", root)
    return _required_files("fashion_mnist", root)[0].parent


def main() -> int:
    """``python -m course_lib.data``: run :func:`prepare` and print one line about the result."""
    try:
        where = prepare()
    except FileNotFoundError as exc:
        print(exc)
        return 0
    except DataError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{_PREFIX} Fashion-MNIST is ready in {where}")
    return 0


# ---------------------------------------------------------------------------- colour Fashion-MNIST


@dataclass(frozen=True)
class Lighting:
    """Ranges of the random colour and lighting of :func:`colourize`, each ``(low, high)``, drawn uniformly.

    ``hue`` and ``saturation`` give the garment's colour (HSV, hue as a fraction of a turn), ``gain`` the
    intensity of the light, ``ambient`` an ambient light added to every pixel, drawn independently for
    R, G and B (so it has a colour of its own).
    """

    hue: tuple = (0.0, 1.0)
    saturation: tuple = (0.3, 0.7)
    gain: tuple = (0.6, 1.0)
    ambient: tuple = (0.0, 0.05)

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict:
        """``n`` draws: ``hue``, ``saturation``, ``gain`` of shape ``(n,)`` and ``ambient`` of shape ``(n, 3)``."""
        gen_device = generator_device(generator)

        def uniform(bounds, *shape):
            low, high = bounds
            return low + (high - low) * torch.rand(*shape, generator=generator, device=gen_device)

        return {"hue": uniform(self.hue, n), "saturation": uniform(self.saturation, n),
                "gain": uniform(self.gain, n), "ambient": uniform(self.ambient, n, 3)}


#: The training split's lighting, and the test split's shifted one: dimmer light, more saturated
#: colours and a stronger coloured ambient light. Hue covers the whole colour wheel in both.
LIGHTING = {"train": Lighting(),
            "shifted": Lighting(saturation=(0.7, 1.0), gain=(0.3, 0.6), ambient=(0.05, 0.15))}


def _per_image(value, x: Tensor, width: int | None = None) -> Tensor:
    """``value`` as a float tensor on ``x``'s device, shaped ``(N, 1, 1, 1)`` (or ``(N, width, 1, 1)``)."""
    t = torch.as_tensor(value, dtype=x.dtype).to(x.device)
    shape = (x.shape[0],) if width is None else (x.shape[0], width)
    if t.shape != shape:
        raise ValueError(f"expected shape {shape}, got {tuple(t.shape)}")
    return t.reshape(*shape, 1, 1) if width is not None else t.reshape(-1, 1, 1, 1)


def relight(images: Tensor, gain, ambient) -> Tensor:
    """Change the lighting of colour images ``(N, 3, H, W)``: ``clamp(gain_n · x + ambient_n, 0, 1)``.

    ``gain`` has shape ``(N,)`` (the light's intensity), ``ambient`` ``(N, 3)`` (an ambient light of its
    own colour, added to every pixel).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected colour images (N, 3, H, W), got {tuple(images.shape)}")
    return (images * _per_image(gain, images) + _per_image(ambient, images, 3)).clamp_(0, 1)


def colourize(images: Tensor, hue, saturation, gain, ambient) -> Tensor:
    """Grey images ``(N, 1, H, W)`` in [0, 1] as colour images ``(N, 3, H, W)``, one colour and light per image.

    The grey level ``g`` of a pixel becomes the HSV colour ``(hue_n, saturation_n, g)``, converted to RGB
    (torchvision's, on the images' device), then lit by :func:`relight` with ``gain_n`` and ``ambient_n``:
    ``clamp(gain_n · hsv_to_rgb(hue_n, saturation_n, g) + ambient_n, 0, 1)``. Black stays black before the
    ambient light, so the background takes the ambient's colour.
    """
    # torchvision's HSV -> RGB (private, but torchvision is pinned to 0.29), not chapter 01's answer
    # (augment.hsv_to_rgb, left out of the student release); imported here to keep data's imports light
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb

    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images (N, 1, H, W), got {tuple(images.shape)}")
    hsv = torch.cat([_per_image(hue, images).expand_as(images), _per_image(saturation, images).expand_as(images),
                     images], dim=1)
    hsv[:, 0].remainder_(1.0)  # torchvision's hue is a fraction of a turn in [0, 1)
    return relight(_hsv_to_rgb(hsv), gain, ambient)


def colour_dataset(ds: Dataset, *, train: Lighting = LIGHTING["train"], test: Lighting = LIGHTING["shifted"],
                   generator: torch.Generator | None = None) -> Dataset:
    """A colour copy of ``ds`` whose lighting does not depend on the class, the test split's from ``test``.

    Grey data (one channel, Fashion-MNIST) are tinted and lit by :func:`colourize` with draws of ``train``
    for the training split and of ``test`` for the test split. Colour data (CIFAR-10) keep their own colours:
    the training split is unchanged and the test split is lit by :func:`relight` with ``test``'s gain and
    ambient. Every draw comes from ``generator``, never from the labels.
    """
    if ds.x_train.shape[1] == 1:
        x_train = colourize(ds.x_train, **train.sample(len(ds.x_train), generator))
        x_test = colourize(ds.x_test, **test.sample(len(ds.x_test), generator))
        name = f"colour {ds.name}"
    elif ds.x_train.shape[1] == 3:
        draws = test.sample(len(ds.x_test), generator)
        x_train, x_test = ds.x_train, relight(ds.x_test, draws["gain"], draws["ambient"])
        name = f"{ds.name}, test relit"
    else:
        raise ValueError(f"expected grey or colour images, got {ds.x_train.shape[1]} channels")
    return Dataset(name, x_train, ds.y_train, x_test, ds.y_test, list(ds.classes))


def colour_fashion_mnist(n_train: int | None = None, n_test: int | None = None, *,
                         generator: torch.Generator | None = None, train: Lighting = LIGHTING["train"],
                         test: Lighting = LIGHTING["shifted"], **load_kwargs) -> Dataset:
    """Colour Fashion-MNIST, offline: a random subset of ``n_train`` / ``n_test`` images (``None``: all),
    every garment tinted with a random colour and lit by a random light independent of its class, the test
    split from the shifted lighting ``test`` (:func:`colour_dataset`). ``load_kwargs`` go to
    :func:`load_dataset` (where Fashion-MNIST cannot be had, its digits stand-in is coloured instead).
    """
    ds = load_dataset("fashion_mnist", **load_kwargs).subset(n_train, n_test, generator=generator)
    return colour_dataset(ds, train=train, test=test, generator=generator)


if __name__ == "__main__":
    sys.exit(main())
