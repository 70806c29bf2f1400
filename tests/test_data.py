"""Tests for course_lib.data: real files where they exist, small real files written here otherwise."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.data.dataloader
import torchvision.datasets as tvd

from course_lib import data
from course_lib.data import DataError, Dataset, DeviceLoader, load_dataset, prepare

CPU = torch.device("cpu")
REAL_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------------------ helpers

def idx_bytes(arr: np.ndarray) -> bytes:
    """An array of uint8 in IDX format: magic 0x0000080N, N big-endian int32 dims, then the bytes."""
    header = np.array([0x0800 + arr.ndim, *arr.shape], dtype=">i4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def small_fashion(n_train=6, n_test=4, seed=0) -> dict[str, np.ndarray]:
    """A few random 28x28 images and labels under the four IDX file names."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def raw_dir(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def write_raw(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write uncompressed IDX files in torchvision's layout under ``root``."""
    raw = raw_dir(root)
    raw.mkdir(parents=True)
    for name, arr in arrays.items():
        (raw / name).write_bytes(idx_bytes(arr))
    return raw


def expected_x(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Point DEBIAN_FASHION_MNIST at a directory that does not exist."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-debian-dir")


@pytest.fixture
def fake_debian(tmp_path, monkeypatch):
    """A fake Debian directory holding four small gzip'd IDX files; yields (dir, arrays)."""
    arrays = small_fashion()
    debian = tmp_path / "debian-fashion-mnist"
    debian.mkdir()
    for name, arr in arrays.items():
        with gzip.open(debian / f"{name}.gz", "wb") as f:
            f.write(idx_bytes(arr))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    return debian, arrays


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------- real Debian data

@pytest.mark.skipif(not (REAL_DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", REAL_DEBIAN)
    ds = load_dataset("fashion_mnist", root=tmp_path, device=CPU, download=False, verbose=False)
    assert ds.name == "fashion_mnist"
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.device == CPU
    assert ds.classes == list(tvd.FashionMNIST.classes)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    assert ds.y_train.unique().tolist() == list(range(10))
    assert sorted(p.name for p in raw_dir(tmp_path).iterdir()) == sorted(data.IDX_FILES)


# --------------------------------------------------------------------------------- Debian .gz path

def test_gz_files_decompress_and_round_trip(tmp_path, fake_debian, capsys):
    debian, arrays = fake_debian
    before = snapshot(debian)
    root = tmp_path / "root"
    ds = load_dataset(root=root, device=CPU, download=False)
    assert torch.equal(ds.x_train, expected_x(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(ds.x_test, expected_x(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(ds.y_train, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long())
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # Uncompressed under torchvision's names, nothing else (no temp files) left behind.
    assert snapshot(raw_dir(root)) == {name: idx_bytes(arr) for name, arr in arrays.items()}
    assert snapshot(debian) == before
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "Fashion-MNIST" in out and err == ""


def test_existing_raw_files_are_used_not_overwritten(tmp_path, fake_debian, capsys):
    mine = small_fashion(n_train=3, n_test=2, seed=1)
    raw = write_raw(tmp_path / "root", mine)
    before = snapshot(raw)
    ds = load_dataset(root=tmp_path / "root", device=CPU, download=False, verbose=False)
    assert torch.equal(ds.x_train, expected_x(mine["train-images-idx3-ubyte"]))
    assert snapshot(raw) == before
    assert capsys.readouterr().out == ""


def test_course_data_env_and_checkout_default(tmp_path, fake_debian, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "env-root"))
    assert load_dataset(device=CPU, download=False, verbose=False).name == "fashion_mnist"
    assert raw_dir(tmp_path / "env-root").is_dir()
    monkeypatch.delenv("COURSE_DATA")
    monkeypatch.chdir(tmp_path)
    # Installed from a checkout, the default is the checkout's data/ wherever the notebook runs.
    checkout = Path(data.__file__).resolve().parents[1]
    assert data.data_root() == checkout / "data"
    monkeypatch.setattr(data, "_default_root", lambda: Path("data"))
    load_dataset(device=CPU, download=False, verbose=False)
    assert raw_dir(tmp_path / "data").is_dir()


def test_prepare_and_main(tmp_path, fake_debian, monkeypatch, capsys):
    where = prepare(tmp_path / "root")
    assert where == raw_dir(tmp_path / "root")
    assert sorted(p.name for p in where.iterdir()) == sorted(data.IDX_FILES)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "root2"))
    assert data.main() == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"course_lib.data: Fashion-MNIST is ready in {raw_dir(tmp_path / 'root2')}"]
    assert err == ""


def test_prepare_without_any_source(tmp_path, no_debian, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="digits"):
        prepare(tmp_path / "root", download=False)
    monkeypatch.setattr(tvd.FashionMNIST, "download", _offline)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "root"))
    assert data.main() == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "digits" in out and err == ""


# ------------------------------------------------------------------------------- corrupt files

@pytest.mark.parametrize("victim", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@pytest.mark.parametrize("keep", [0.5, 3 / 16])
def test_truncated_raw_file_raises_data_error(tmp_path, no_debian, victim, keep):
    raw = write_raw(tmp_path, small_fashion())
    path = raw / victim
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    size = path.stat().st_size
    before = snapshot(raw)
    with pytest.raises(DataError) as info:
        load_dataset(root=tmp_path, device=CPU, download=True, verbose=False)
    message = str(info.value)
    assert str(path) in message and "make data" in message
    assert path.exists() and path.stat().st_size == size
    assert snapshot(raw) == before


def test_prepare_reports_truncated_file(tmp_path, no_debian, monkeypatch, capsys):
    raw = write_raw(tmp_path, small_fashion())
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match=str(path)):
        prepare(tmp_path)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.main() == 1
    assert str(path) in capsys.readouterr().err
    assert path.stat().st_size == 8 + 6 - 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-content"])
def test_corrupt_gz_raises_data_error(tmp_path, fake_debian, damage):
    debian, _ = fake_debian
    gz = debian / "train-images-idx3-ubyte.gz"
    blob = gz.read_bytes()
    if damage == "truncated":
        gz.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        gz.write_bytes(b"this is not gzip at all" * 10)
    else:  # a valid gzip whose IDX content is cut short
        gz.write_bytes(gzip.compress(gzip.decompress(blob)[:1000]))
    size = gz.stat().st_size
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        load_dataset(root=root, device=CPU, download=False, verbose=False)
    assert str(gz) in str(info.value) and "dataset-fashion-mnist" in str(info.value)
    assert gz.exists() and gz.stat().st_size == size
    # No half file left under the name torchvision looks for, and no temp file either.
    assert "train-images-idx3-ubyte" not in {p.name for p in raw_dir(root).iterdir()}
    assert not [p for p in raw_dir(root).iterdir() if p.name.endswith(".part")]


# ------------------------------------------------------------------------------------ fallback

def _offline(self):
    """Stand-in for torchvision's download: chatter on both streams, then a network failure."""
    print("Downloading https://example.invalid/train-images-idx3-ubyte.gz")
    print("progress bar", file=sys.stderr)
    raise urllib.error.URLError("no network")


@pytest.mark.parametrize("download", [False, True])
def test_fallback_to_digits(tmp_path, no_debian, monkeypatch, capsys, download):
    monkeypatch.setattr(tvd.FashionMNIST, "download", _offline)
    root = tmp_path / "empty"
    ds = load_dataset(root=root, device=CPU, download=download)
    assert ds.name == "digits"
    assert ds.x_train.shape == (1500, 1, 8, 8) and ds.x_test.shape == (297, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1 and ds.num_classes == 10
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert "digits" in out and "Fashion-MNIST" in out and str(root) in out
    assert err == ""
    if root.exists():  # the download attempt may create the root, but leaves nothing in it
        assert not list(root.rglob("*"))


def test_digits_by_name(capsys):
    ds = load_dataset("digits", device=CPU)
    assert ds.name == "digits" and ds.input_shape == (1, 8, 8)
    from sklearn.datasets import load_digits
    images = torch.from_numpy(load_digits().images).float()
    assert torch.equal(ds.x_train[:, 0] * 16, images[:1500])
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_bad_name():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet", device=CPU)
    for name in ("fashion_mnist", "mnist", "cifar10", "digits"):
        assert name in str(info.value)


# ------------------------------------------------------------------------------------- CIFAR-10

def write_cifar(root: Path, monkeypatch, per_batch=3, n_test=4):
    """Small CIFAR-10 pickles in the real format; patch torchvision's md5 table to match them.

    The real files are Python 2 pickles whose keys come back as ``str`` under torchvision's
    ``encoding="latin1"``; ``bytes`` keys (b"data") would come back as bytes and raise KeyError.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        batches[name] = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist(), "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                              "md5": md5("batches.meta")})
    return folder, batches, names


def test_cifar10_small_files(tmp_path, monkeypatch):
    _, batches, names = write_cifar(tmp_path, monkeypatch)
    ds = load_dataset("cifar10", root=tmp_path, device=CPU, download=False, verbose=False)
    train = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    expected = torch.from_numpy(train.reshape(-1, 3, 32, 32)).float() / 255
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_train.is_contiguous()
    assert torch.equal(ds.x_train, expected)
    assert torch.equal(ds.x_test, torch.from_numpy(batches["test_batch"]["data"].reshape(-1, 3, 32, 32)) / 255)
    assert ds.y_train.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert ds.y_test.dtype == torch.int64 and ds.y_test.tolist() == batches["test_batch"]["labels"]
    assert ds.classes == names and ds.input_shape == (3, 32, 32)


def test_cifar10_corrupt_file(tmp_path, monkeypatch):
    folder, _, _ = write_cifar(tmp_path, monkeypatch)
    victim = folder / "data_batch_3"
    victim.write_bytes(victim.read_bytes()[:-100])
    size = victim.stat().st_size
    with pytest.raises(DataError, match=str(victim)):
        load_dataset("cifar10", root=tmp_path, device=CPU, download=True, verbose=False)
    assert victim.stat().st_size == size


# ---------------------------------------------------------------------------- Dataset methods

def numbered(n: int, device=CPU) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] is filled with i, y[i] == i: lets a test check that x and y stay aligned."""
    y = torch.arange(n, device=device)
    return y.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(), y


def test_subset_and_to():
    x, y = numbered(50)
    ds = Dataset("toy", x, y, x[:20].clone(), y[:20].clone(), ["a", "b"])
    sub = ds.subset(10, 5, generator=torch.Generator().manual_seed(0))
    again = ds.subset(10, 5, generator=torch.Generator().manual_seed(0))
    assert len(sub.x_train) == 10 and len(sub.x_test) == 5
    assert torch.equal(sub.y_train, again.y_train) and torch.equal(sub.y_test, again.y_test)
    assert len(set(sub.y_train.tolist())) == 10
    assert torch.equal(sub.x_train[:, 0, 0, 0].long(), sub.y_train)
    assert sub.y_train.tolist() != list(range(10))
    assert len(ds.subset(n_train=1000).x_train) == 50 and ds.subset(n_test=3).x_train is ds.x_train
    assert ds.to("cpu").device == CPU and ds.to("cpu").classes == ["a", "b"]


# ------------------------------------------------------------------------------- DeviceLoader

def epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_loader_covers_every_sample_once():
    x, y = numbered(103)
    loader = DeviceLoader(x, y, 10, generator=torch.Generator().manual_seed(0))
    batches = epoch(loader)
    assert len(loader) == len(batches) == 11
    assert [len(yb) for _, yb in batches] == [10] * 10 + [3]
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(103)) and seen.tolist() != list(range(103))
    for xb, yb in batches:
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)


def test_loader_drop_last_and_no_shuffle():
    x, y = numbered(103)
    loader = DeviceLoader(x, y, 10, drop_last=True, generator=torch.Generator().manual_seed(0))
    batches = epoch(loader)
    assert len(loader) == len(batches) == 10 and all(len(yb) == 10 for _, yb in batches)
    assert len(set(torch.cat([yb for _, yb in batches]).tolist())) == 100
    ordered = DeviceLoader(x, y, 25, shuffle=False)
    assert torch.cat([yb for _, yb in ordered]).tolist() == list(range(103))
    assert [len(yb) for _, yb in ordered] == [25, 25, 25, 25, 3]
    assert len(DeviceLoader(x, y, 200, drop_last=True)) == 0 and epoch(DeviceLoader(x, y, 200, drop_last=True)) == []


def test_loader_seed_and_epochs():
    x, y = numbered(64)

    def orders(seed, epochs=3):
        loader = DeviceLoader(x, y, 16, generator=torch.Generator().manual_seed(seed))
        return [torch.cat([yb for _, yb in loader]).tolist() for _ in range(epochs)]

    first = orders(1)
    assert first == orders(1)
    assert first[0] != first[1] != first[2]
    assert first != orders(2)


def test_loader_transform_on_whole_batches():
    x, y = numbered(30)
    calls = []

    def flip_and_double(xb):
        calls.append(tuple(xb.shape))
        return xb.flip(-1) * 2

    batches = epoch(DeviceLoader(x, y, 8, transform=flip_and_double, generator=torch.Generator().manual_seed(0)))
    assert calls == [(8, 1, 2, 2)] * 3 + [(6, 1, 2, 2)]
    for xb, yb in batches:
        assert torch.equal(xb[:, 0, 0, 0], 2 * yb.float())


def test_loader_does_not_use_dataloader(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("DeviceLoader must not build a torch DataLoader")

    monkeypatch.setattr(torch.utils.data.dataloader.DataLoader, "__init__", forbidden)
    x, y = numbered(20)
    assert sum(len(yb) for _, yb in DeviceLoader(x, y, 7)) == 20


def test_loader_rejects_mismatched_inputs():
    x, y = numbered(10)
    with pytest.raises(ValueError):
        DeviceLoader(x, y[:9], 4)
    with pytest.raises(ValueError):
        DeviceLoader(x, y, 0)


# ------------------------------------------------------------------------------------------ GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_data_stays_on_cuda(tmp_path, fake_debian):
    cuda = torch.device("cuda")
    ds = load_dataset(root=tmp_path / "root", device=cuda, download=False, verbose=False)
    assert ds.device.type == "cuda" and ds.y_test.device.type == "cuda"
    sub = ds.subset(4, 2, generator=torch.Generator().manual_seed(0))
    assert sub.x_train.device.type == "cuda" and sub.y_test.device.type == "cuda"
    x, y = numbered(50, device=cuda)
    cpu_order = torch.cat([yb for _, yb in DeviceLoader(*numbered(50), 8,
                                                         generator=torch.Generator().manual_seed(3))])
    batches = epoch(DeviceLoader(x, y, 8, generator=torch.Generator().manual_seed(3), transform=lambda b: b + 1))
    assert all(xb.device.type == "cuda" and yb.device.type == "cuda" for xb, yb in batches)
    assert torch.equal(torch.cat([yb for _, yb in batches]).cpu(), cpu_order)  # CPU generator: same order
    on_gpu_gen = epoch(DeviceLoader(x, y, 8, generator=torch.Generator(device=cuda).manual_seed(3)))
    assert sorted(torch.cat([yb for _, yb in on_gpu_gen]).tolist()) == list(range(50))


# ---------------------------------------------------------------------------- colour Fashion-MNIST

def test_colourize_is_the_hsv_colour_of_the_grey_level():
    from course_lib import augment

    g = torch.Generator().manual_seed(0)
    grey = torch.rand(6, 1, 5, 5, generator=g)
    hue, sat = torch.rand(6, generator=g), 0.2 + 0.8 * torch.rand(6, generator=g)
    out = data.colourize(grey, hue, sat, torch.ones(6), torch.zeros(6, 3))
    assert out.shape == (6, 3, 5, 5) and out.dtype == torch.float32
    h, s, v = augment.rgb_to_hsv(out).unbind(1)
    assert torch.allclose(v, grey[:, 0], atol=1e-6), "V is the grey level"
    lit = grey[:, 0] > 0.05
    assert torch.allclose(s[lit], sat[:, None, None].expand_as(s)[lit], atol=1e-4), "one saturation per image"
    dh = (h - hue[:, None, None] + 0.5).remainder(1.0) - 0.5   # hue difference on the circle
    assert dh[lit].abs().max() < 1e-4, "one hue per image"
    red = data.colourize(torch.full((1, 1, 2, 2), 0.8), torch.zeros(1), torch.ones(1), torch.ones(1), torch.zeros(1, 3))
    assert torch.allclose(red[0, :, 0, 0], torch.tensor([0.8, 0.0, 0.0]))


def test_colourize_is_relight_of_hsv_to_rgb_and_needs_no_chapter_01_answer():
    """colourize converts with torchvision's HSV -> RGB, not chapter 01's answer (left out of the student release):
    the same images as augment.hsv_to_rgb within float tolerance, with every reference of augment disabled."""
    from course_lib import augment, grading

    g = torch.Generator().manual_seed(1)
    grey = torch.rand(20, 1, 6, 6, generator=g)
    hue, sat = 3 * torch.rand(20, generator=g) - 1, torch.rand(20, generator=g)   # hues outside [0, 1) wrap around
    gain, ambient = 0.5 + torch.rand(20, generator=g), 0.1 * torch.rand(20, 3, generator=g)
    marked = [f for f in vars(augment).values() if getattr(f, "__course_reference__", None) == "01_augmentation"]
    with grading._disabled(marked):
        out = data.colourize(grey, hue, sat, gain, ambient)
    hsv = torch.cat([hue.reshape(-1, 1, 1, 1).expand_as(grey), sat.reshape(-1, 1, 1, 1).expand_as(grey), grey], 1)
    torch.testing.assert_close(out, data.relight(augment.hsv_to_rgb(hsv), gain, ambient), rtol=0, atol=1e-6)


def test_relight_and_the_ambient_light():
    x = torch.full((2, 3, 4, 4), 0.5)
    out = data.relight(x, torch.tensor([0.5, 2.0]), torch.tensor([[0.1, 0.0, 0.2], [0.0, 0.0, 0.0]]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.35, 0.25, 0.45]))
    assert torch.equal(out[1], torch.ones(3, 4, 4)), "clamped to [0, 1]"
    black = data.colourize(torch.zeros(1, 1, 3, 3), torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([0.7]),
                           torch.tensor([[0.05, 0.1, 0.0]]))
    assert torch.allclose(black[0, :, 1, 1], torch.tensor([0.05, 0.1, 0.0])), "the background takes the ambient light"
    with pytest.raises(ValueError):
        data.relight(torch.zeros(2, 1, 4, 4), torch.ones(2), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        data.colourize(torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.zeros(2), torch.ones(2), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        data.relight(x, torch.ones(3), torch.zeros(2, 3))


def test_lighting_samples_in_range_and_reproducibly():
    for name, lighting in data.LIGHTING.items():
        draws = lighting.sample(5000, torch.Generator().manual_seed(1))
        assert draws["ambient"].shape == (5000, 3) and all(draws[k].shape == (5000,) for k in ("hue", "saturation", "gain"))
        for key in ("hue", "saturation", "gain", "ambient"):
            low, high = getattr(lighting, key)
            v = draws[key]
            assert low <= float(v.min()) and float(v.max()) <= high, (name, key)
            assert abs(float(v.mean()) - (low + high) / 2) < 0.02 * (high - low) + 1e-6, (name, key)
        again = lighting.sample(5000, torch.Generator().manual_seed(1))
        assert all(torch.equal(draws[k], again[k]) for k in draws)
    train, shifted = data.LIGHTING["train"], data.LIGHTING["shifted"]
    assert shifted.gain[1] <= train.gain[0] and shifted.saturation[0] >= train.saturation[1], "the test range is shifted"
    assert shifted.ambient[0] >= train.ambient[1]


def test_colour_dataset_of_grey_data_is_tinted_independently_of_the_class():
    from course_lib import augment

    g = torch.Generator().manual_seed(0)
    n = 4000
    x = 0.2 + 0.8 * torch.rand(n, 1, 4, 4, generator=g)
    y = torch.arange(n) % 10
    grey = Dataset("toy", x, y, x[:2000].clone(), y[:2000].clone(), [str(i) for i in range(10)])
    ds = data.colour_dataset(grey, generator=torch.Generator().manual_seed(2))
    assert ds.x_train.shape == (n, 3, 4, 4) and ds.x_test.shape == (2000, 3, 4, 4) and ds.name == "colour toy"
    assert torch.equal(ds.y_train, y) and ds.classes == grey.classes
    assert 0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1
    hue = augment.rgb_to_hsv(ds.x_train)[:, 0, 0, 0]
    per_class = torch.stack([torch.cos(2 * torch.pi * hue[y == c]).mean() for c in range(10)])
    assert per_class.abs().max() < 0.12, f"the colour must not depend on the class: {per_class}"
    bright_train, bright_test = ds.x_train.amax(1).mean(), ds.x_test.amax(1).mean()
    assert bright_test < bright_train, "the shifted test split is lit by a dimmer light"
    again = data.colour_dataset(grey, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.x_test, again.x_test)


def test_colour_dataset_of_colour_data_relights_the_test_split_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 4, 4, generator=g)
    rgb = Dataset("cifar10", x, torch.arange(20) % 10, x[:8].clone(), torch.arange(8), [str(i) for i in range(10)])
    ds = data.colour_dataset(rgb, generator=torch.Generator().manual_seed(1))
    assert ds.x_train is rgb.x_train and ds.name == "cifar10, test relit"
    draws = data.LIGHTING["shifted"].sample(8, torch.Generator().manual_seed(1))
    assert torch.allclose(ds.x_test, data.relight(rgb.x_test, draws["gain"], draws["ambient"]))
    with pytest.raises(ValueError):
        data.colour_dataset(Dataset("two", torch.zeros(2, 2, 3, 3), torch.zeros(2), torch.zeros(1, 2, 3, 3),
                                    torch.zeros(1), ["a"]))


def test_colour_fashion_mnist_from_files(tmp_path, fake_debian):
    ds = data.colour_fashion_mnist(5, 3, root=tmp_path / "root", device=CPU, download=False, verbose=False,
                                   generator=torch.Generator().manual_seed(0))
    assert ds.name == "colour fashion_mnist" and ds.x_train.shape == (5, 3, 28, 28) and ds.x_test.shape == (3, 3, 28, 28)
    grey = load_dataset(root=tmp_path / "root", device=CPU, download=False, verbose=False)
    assert set(ds.y_train.tolist()) <= set(grey.y_train.tolist())


def test_parsed_tensors_are_cached_next_to_the_raw_files_and_checked_against_them(tmp_path, no_debian):
    """A second load reads the cache (no torchvision import); changed raw files are parsed again."""
    import shutil
    import subprocess

    root = tmp_path / "root"
    write_raw(root, small_fashion(n_train=12, n_test=6))
    first = data.load_dataset("fashion_mnist", root=root, device="cpu", download=False, verbose=False)
    cache = root / "FashionMNIST" / "fashion_mnist.course_lib.pt"
    assert cache.exists()
    code = (f"import sys; from course_lib import data; ds = data.load_dataset('fashion_mnist', root={str(root)!r}, "
            "device='cpu', download=False, verbose=False); print(len(ds.x_train), 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["12", "False"]
    shutil.rmtree(raw_dir(root))
    write_raw(root, small_fashion(n_train=8, n_test=6))  # new files: the cache no longer matches
    again = data.load_dataset("fashion_mnist", root=root, device="cpu", download=False, verbose=False)
    assert len(first.x_train) == 12 and len(again.x_train) == 8
