"""Dataset readers on tiny files written here in the exact formats, and on the real data.

Covers the IDX reader (MNIST / Fashion-MNIST layout), the CIFAR-10/100 python pickles, image
folders, the digits source, the decoded-data caches of each (a warm load equals the uncached
one exactly; a stale, corrupt or unwritable cache), the offline and download-failure paths,
the real MNIST files and a few hundred images of the real CIFAR-10 JPEG copy, and every preset
in ``benchmarks/``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong_kd.cli import main
from lifelong_kd.data import cache as data_cache
from lifelong_kd.data import cifar as data_cifar
from lifelong_kd.data import digits as data_digits
from lifelong_kd.data import idx as data_idx
from lifelong_kd.data import imagefolder as data_imagefolder
from lifelong_kd.data import sources, streams
from lifelong_kd.data.facts import (
    CIFAR10_CLASSES,
    DATASET_FACTS,
    FASHION_MNIST_CLASSES,
    KNOWN_CLASS_COUNTS,
    KNOWN_INPUT_SHAPES,
)
from lifelong_kd.data.idx import read_idx
from lifelong_kd.data.imagefolder import imagefolder_cache_dir
from lifelong_kd.data.sources import load_dataset
from lifelong_kd.errors import DataError
from lifelong_kd.presets import BENCHMARK_DIR, build_config, preset_names

# ----------------------------------------------------------------------------- writers


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file: 0x0000 08 ndim, big-endian dims, data."""
    raw = bytes([0, 0, 0x08, array.ndim])
    raw += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist_layout(raw_dir: Path, n_train: int = 12, n_test: int = 6) -> dict[str, np.ndarray]:
    """The four MNIST-named IDX files (gzip) of a tiny random dataset."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(raw_dir / f"{stem}.gz", arr, compress=True)
    return arrays


def cifar_batch(n: int, n_classes: int, label_key: str, seed: int) -> dict[bytes, object]:
    """One batch dict in the official layout (Python 2 byte-string keys, labels as a list)."""
    rng = np.random.default_rng(seed)
    batch: dict[bytes, object] = {
        b"batch_label": f"batch {seed}".encode(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key.encode(): [int(v) for v in rng.integers(0, n_classes, n)],
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }
    if label_key == "fine_labels":
        batch[b"coarse_labels"] = [int(v) % 20 for v in batch[b"fine_labels"]]
    return batch


def dump(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return path


def write_cifar10(data_dir: Path, n: int = 4) -> dict[str, dict[bytes, object]]:
    root = data_dir / "cifar-10-batches-py"
    files: dict[str, dict[bytes, object]] = {
        f"data_batch_{i}": cifar_batch(n, 10, "labels", i) for i in range(1, 6)
    }
    files["test_batch"] = cifar_batch(n, 10, "labels", 9)
    for name, batch in files.items():
        dump(root / name, batch)
    dump(root / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                                 b"num_cases_per_batch": n, b"num_vis": 3072})
    return files


def write_cifar100(data_dir: Path, n: int = 8) -> dict[str, dict[bytes, object]]:
    root = data_dir / "cifar-100-python"
    files = {"train": cifar_batch(n, 100, "fine_labels", 1),
             "test": cifar_batch(n, 100, "fine_labels", 2)}
    for name, batch in files.items():
        dump(root / name, batch)
    dump(root / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                         b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return files


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save a uint8 (H, W) or (H, W, 3) array; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_image_folder(
    root: Path, classes: tuple[str, ...] = ("zebra", "ant", "moth"), n_train: int = 3,
    n_test: int = 2, size: tuple[int, int] = (6, 5), grey: bool = False, suffix: str = ".png",
) -> dict[str, list[np.ndarray]]:
    """root/{train,test}/<class>/NN<suffix> with seeded random pixels; returns the arrays per
    split in the reader's order (sorted classes, sorted file names)."""
    rng = np.random.default_rng(1)
    h, w = size
    out: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in sorted(classes):
            for i in range(n):
                shape = (h, w) if grey else (h, w, 3)
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                write_image(root / split / cls / f"{i:02d}{suffix}", arr)
                out[split].append(arr)
    return out


def as_nchw(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([a if a.ndim == 3 else a[:, :, None] for a in images]).transpose(0, 3, 1, 2)


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every image decode (the in-process path; tiny folders never start a pool)."""
    calls: list[str] = []
    original: Callable[[str], np.ndarray] = data_imagefolder._decode_image

    def counting(path: str) -> np.ndarray:
        calls.append(path)
        return original(path)

    monkeypatch.setattr(data_imagefolder, "_decode_image", counting)
    return calls


# ----------------------------------------------------------------------------- IDX


def test_read_idx_plain_and_gzip_give_the_same_array(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = read_idx(write_idx(tmp_path / "x-idx3-ubyte", arr))
    # told apart by content, not by name: a gzip file without .gz is still read
    gz = read_idx(write_idx(tmp_path / "y-idx3-ubyte", arr, compress=True))
    np.testing.assert_array_equal(plain, arr)
    np.testing.assert_array_equal(gz, arr)
    assert plain.dtype == np.uint8


def test_read_idx_rejects_truncated_files(tmp_path):
    arr = np.arange(50, dtype=np.uint8).reshape(5, 10)
    cut = write_idx(tmp_path / "cut-idx2-ubyte", arr)
    cut.write_bytes(cut.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"cut-idx2-ubyte.*truncated"):
        read_idx(cut)
    gz = write_idx(tmp_path / "cut.gz", arr, compress=True)
    gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"cut\.gz.*(truncated|corrupt)"):
        read_idx(gz)


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match=r"bad-idx1-ubyte.*magic"):
        read_idx(bad)


def test_fashion_mnist_reads_the_mnist_file_layout(tmp_path):
    arrays = write_mnist_layout(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", tmp_path, offline=True)
    assert ds.classes == FASHION_MNIST_CLASSES
    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.path.endswith(str(Path("FashionMNIST") / "raw"))


def test_fashion_mnist_offline_and_missing_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"offline") as info:
        load_dataset("fashion-mnist", tmp_path, offline=True)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)


# ----------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_the_official_python_layout(tmp_path):
    files = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path, offline=True)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    # rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    row = files["data_batch_2"][b"data"][1]
    np.testing.assert_array_equal(ds.train_x[5, 1, 2, 3].item(), row[1024 + 2 * 32 + 3])
    labels = sum((files[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.train_y.tolist() == labels
    assert ds.test_y.tolist() == files["test_batch"][b"labels"]
    assert ds.path == str(tmp_path / "cifar-10-batches-py")


def test_cifar_reads_python2_numpy_names_without_warnings(tmp_path):
    """The official files were pickled by Python 2 and numpy 1 (``numpy.core.multiarray``)."""
    files = write_cifar10(tmp_path)
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        raw = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        path.write_bytes(raw)
    assert b"numpy.core.multiarray" in (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset("cifar10", tmp_path, offline=True)
    np.testing.assert_array_equal(ds.test_x.reshape(4, -1).numpy(), files["test_batch"][b"data"])


def test_cifar100_reads_the_fine_labels(tmp_path):
    files = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path, offline=True)
    assert ds.n_classes == 100 and ds.classes[7] == "fine7"
    assert ds.train_y.tolist() == files["train"][b"fine_labels"]
    np.testing.assert_array_equal(ds.test_x.reshape(8, -1).numpy(), files["test"][b"data"])


class _Evil:
    """Pickles to a call of os.getcwd: a reader that runs it would run any code."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getcwd, ())


def _break(kind: str, batch: dict[bytes, object]) -> object:
    b = dict(batch)
    if kind == "no-labels":
        del b[b"labels"]
    elif kind == "wrong-width":
        b[b"data"] = np.zeros((4, 3071), dtype=np.uint8)
    elif kind == "float-data":
        b[b"data"] = np.zeros((4, 3072), dtype=np.float32)
    elif kind == "count-mismatch":
        b[b"labels"] = [0, 1, 2]
    elif kind == "label-out-of-range":
        b[b"labels"] = [0, 1, 10, 3]
    elif kind == "negative-label":
        b[b"labels"] = [0, -1, 2, 3]
    elif kind == "not-a-dict":
        return [b[b"data"]]
    elif kind == "code":
        b[b"extra"] = _Evil()
    return b


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no-labels", r"no 'labels' entry"),
        ("wrong-width", r"shape \(4, 3071\).*expected .*\(N, 3072\)"),
        ("float-data", r"float32.*expected a uint8"),
        ("count-mismatch", r"4 images in 'data' but 3 entries"),
        ("label-out-of-range", r"label 10 .*out of range 0\.\.9"),
        ("negative-label", r"label -1 .*out of range"),
        ("not-a-dict", r"expected a pickled dict"),
        ("code", r"not a CIFAR python pickle.*refusing to load the global posix.getcwd"),
    ],
)
def test_cifar10_malformed_batches_are_named(tmp_path, kind, message):
    files = write_cifar10(tmp_path)
    bad = dump(tmp_path / "cifar-10-batches-py" / "data_batch_3",
               _break(kind, files["data_batch_3"]))
    with pytest.raises(DataError, match=message) as info:
        load_dataset("cifar10", tmp_path, offline=True)
    assert str(bad) in str(info.value)


def test_cifar_truncated_and_garbage_files_are_named(tmp_path):
    write_cifar10(tmp_path)
    test_batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:500])
    with pytest.raises(DataError, match=r"test_batch is truncated"):
        load_dataset("cifar10", tmp_path, offline=True)
    test_batch.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR python pickle"):
        load_dataset("cifar10", tmp_path, offline=True)


def test_cifar_meta_with_wrong_class_names_is_named(tmp_path):
    write_cifar100(tmp_path)
    meta = dump(tmp_path / "cifar-100-python" / "meta", {b"fine_label_names": [b"a", b"b"]})
    with pytest.raises(DataError, match=r"100 class names, found 2 names") as info:
        load_dataset("cifar100", tmp_path, offline=True)
    assert str(meta) in str(info.value)


@pytest.mark.parametrize(("name", "folder", "missing"),
                         [("cifar10", "cifar-10-batches-py", "data_batch_4"),
                          ("cifar100", "cifar-100-python", "train")])
def test_cifar_offline_and_missing_names_the_folder(tmp_path, name, folder, missing):
    (write_cifar10 if name == "cifar10" else write_cifar100)(tmp_path)
    (tmp_path / folder / missing).unlink()
    with pytest.raises(DataError, match=r"--offline") as info:
        load_dataset(name, tmp_path, offline=True)
    assert str(tmp_path / folder) in str(info.value) and missing in str(info.value)


def test_cifar_download_failure_is_one_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls: list[dict[str, object]] = []

    def no_network(**kwargs: object) -> None:
        calls.append(kwargs)
        raise RuntimeError("name resolution failed")

    monkeypatch.setattr(tvd, "CIFAR10", no_network)
    with pytest.raises(DataError, match=r"could not be downloaded.*name resolution failed") as info:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(info.value)
    assert calls == [{"root": str(tmp_path), "train": True, "download": True}]


def test_cifar_is_downloaded_through_torchvision_when_missing(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def fake_download(root: str, train: bool, download: bool) -> None:
        write_cifar100(Path(root))

    monkeypatch.setattr(tvd, "CIFAR100", fake_download)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.train_x.shape == (8, 3, 32, 32)


# ----------------------------------------------------------------------------- image folders


def test_image_folder_reads_classes_in_sorted_order(tmp_path, data_dir):
    expected = make_image_folder(tmp_path / "imgs")
    ds = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert ds.classes == ("ant", "moth", "zebra")
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.train_x.shape == (9, 3, 6, 5) and ds.train_x.dtype == torch.uint8
    # PNG is lossless: the pixels are exactly those written
    np.testing.assert_array_equal(ds.train_x.numpy(), as_nchw(expected["train"]))
    np.testing.assert_array_equal(ds.test_x.numpy(), as_nchw(expected["test"]))
    assert ds.path == str((tmp_path / "imgs").resolve())


def test_image_folder_grey_jpeg_and_mixed_modes(tmp_path, data_dir):
    make_image_folder(tmp_path / "grey", grey=True, suffix=".jpg", size=(8, 8))
    ds = load_dataset("imagefolder", data_dir, path=str(tmp_path / "grey"))
    assert ds.train_x.shape == (9, 1, 8, 8)
    # one colour image among grey ones: all become 3 channels, grey repeated
    write_image(tmp_path / "grey" / "test" / "ant" / "99.png",
                np.full((8, 8, 3), 7, dtype=np.uint8))
    ds = load_dataset("imagefolder", data_dir, path=str(tmp_path / "grey"))
    assert ds.train_x.shape == (9, 3, 8, 8)
    first = ds.train_x[0].numpy()
    np.testing.assert_array_equal(first[0], first[1])
    assert int(ds.test_x[2].max()) == 7  # the colour image is the last of class "ant"


def test_image_folder_relative_path_is_taken_from_the_data_directory(tmp_path):
    make_image_folder(tmp_path / "data" / "pets", n_train=1, n_test=1)
    ds = load_dataset("imagefolder", tmp_path / "data", path="pets")
    assert ds.path == str((tmp_path / "data" / "pets").resolve())
    with pytest.raises(DataError, match=r"does not exist.*relative path is taken from the data"):
        load_dataset("imagefolder", tmp_path / "data", path="nope")
    with pytest.raises(DataError, match=r"needs `data.path`"):
        load_dataset("imagefolder", tmp_path / "data")


def test_image_folder_second_load_hits_the_cache(tmp_path, data_dir, count_decodes):
    make_image_folder(tmp_path / "imgs")
    first = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert len(count_decodes) == 15
    cached = list(imagefolder_cache_dir().glob("*.npz"))
    assert len(cached) == 1 and str(imagefolder_cache_dir()).startswith(str(tmp_path / "cache"))
    second = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert len(count_decodes) == 15  # nothing decoded again
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.train_x, first.train_x) and torch.equal(second.test_y, first.test_y)
    assert not [p for p in imagefolder_cache_dir().iterdir() if p.suffix != ".npz"]  # no temp


def test_image_folder_change_invalidates_the_cache(tmp_path, data_dir, count_decodes):
    root = tmp_path / "imgs"
    make_image_folder(root)
    load_dataset("imagefolder", data_dir, path=str(root))
    # a new image: decoded again, and the stale cache of the same folder is replaced
    write_image(root / "train" / "ant" / "77.png", np.zeros((6, 5, 3), dtype=np.uint8))
    ds = load_dataset("imagefolder", data_dir, path=str(root))
    assert len(count_decodes) == 15 + 16 and len(ds.train_y) == 10
    assert len(list(imagefolder_cache_dir().glob("*.npz"))) == 1
    # the same file rewritten with other pixels (a new modification time): decoded again
    target = root / "train" / "ant" / "77.png"
    write_image(target, np.full((6, 5, 3), 200, dtype=np.uint8))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    ds = load_dataset("imagefolder", data_dir, path=str(root))
    assert len(count_decodes) == 15 + 16 + 16
    assert int(ds.train_x[3].min()) == 200


def test_image_folder_corrupt_cache_is_rebuilt(tmp_path, data_dir, count_decodes):
    make_image_folder(tmp_path / "imgs")
    first = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    (cache,) = imagefolder_cache_dir().glob("*.npz")
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"ignoring the image-folder cache .*rebuilding"):
        again = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert len(count_decodes) == 30 and again.fingerprint == first.fingerprint
    # the rebuilt cache is valid again: the next load decodes nothing and warns nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert len(count_decodes) == 30


def test_image_folder_read_only_source_is_never_written(tmp_path, data_dir):
    root = tmp_path / "ro"
    make_image_folder(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for p in [root, *root.rglob("*")]:
        p.chmod(stat.S_IRUSR | stat.S_IXUSR if p.is_dir() else stat.S_IRUSR)
    try:
        ds = load_dataset("imagefolder", data_dir, path=str(root))
        load_dataset("imagefolder", data_dir, path=str(root))
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(stat.S_IRWXU)
    assert len(ds.train_y) == 9
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_image_folder_unwritable_cache_only_warns(tmp_path, data_dir, monkeypatch):
    make_image_folder(tmp_path / "imgs")
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    with pytest.warns(UserWarning, match=r"could not write the image-folder cache"):
        ds = load_dataset("imagefolder", data_dir, path=str(tmp_path / "imgs"))
    assert len(ds.train_y) == 9


def test_image_folder_process_pool_gives_the_same_arrays(tmp_path, data_dir, monkeypatch):
    root = tmp_path / "imgs"
    make_image_folder(root, n_train=4)
    serial = load_dataset("imagefolder", data_dir, path=str(root))
    for p in imagefolder_cache_dir().glob("*.npz"):
        p.unlink()
    monkeypatch.setattr(data_imagefolder, "_POOL_MIN_FILES", 1)
    monkeypatch.setattr(data_imagefolder, "_n_workers", lambda: 2)
    pooled = load_dataset("imagefolder", data_dir, path=str(root))
    assert pooled.fingerprint == serial.fingerprint
    # an unreadable file found by a worker is still named
    for p in imagefolder_cache_dir().glob("*.npz"):
        p.unlink()
    (root / "test" / "moth" / "01.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot decode image .*moth.01\.png"):
        load_dataset("imagefolder", data_dir, path=str(root))


def _no_train(root: Path) -> None:
    for p in sorted((root / "train").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / "train").rmdir()


def _empty_class(root: Path) -> None:
    for p in (root / "train" / "moth").iterdir():
        p.unlink()
    (root / "train" / "moth" / "notes.txt").write_text("not an image")


def _test_lacks_class(root: Path) -> None:
    for p in (root / "test" / "zebra").iterdir():
        p.unlink()
    (root / "test" / "zebra").rmdir()


@pytest.mark.parametrize(
    ("breakage", "message", "named"),
    [
        (_no_train, r"has no train/ sub-folder", ""),
        (lambda r: (r / "test").rename(r / "tests"), r"has no test/ sub-folder", ""),
        (_empty_class, r"class folder .* holds no images", "train/moth"),
        (_test_lacks_class, r"must hold the class folders of train/ \(missing: zebra\)", "test"),
        (lambda r: (r / "train" / "ant" / "01.png").write_bytes(b"\x89PNG broken"),
         r"cannot decode image", "train/ant/01.png"),
        (lambda r: write_image(r / "test" / "ant" / "05.png", np.zeros((7, 5), np.uint8)),
         r"is 5x7 pixels but .* is 5x6; every image .* same size", "test/ant/05.png"),
    ],
    ids=["no-train", "no-test", "empty-class", "test-lacks-class", "unreadable", "sizes"],
)
def test_image_folder_problems_are_named(tmp_path, data_dir, breakage, message, named):
    root = tmp_path / "imgs"
    make_image_folder(root)
    breakage(root)
    with pytest.raises(DataError, match=message) as info:
        load_dataset("imagefolder", data_dir, path=str(root))
    assert str(root.resolve() / named) in str(info.value)


def test_cifar10_jpeg_needs_the_ten_cifar_class_folders(tmp_path, data_dir):
    make_image_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"expected exactly airplane, automobile"):
        load_dataset("cifar10-jpeg", data_dir, path=str(tmp_path / "imgs"))
    with pytest.raises(DataError, match=r"JPEG copy is not at .*cannot be downloaded"):
        load_dataset("cifar10-jpeg", tmp_path)


# ----------------------------------------------------------------------------- digits, names


def test_digits_source_is_a_fixed_seeded_split():
    a = load_dataset("digits", Path("unused"))
    b = load_dataset("digits", Path("unused"))
    assert a.train_x.shape == (1438, 1, 8, 8) and a.test_x.shape == (359, 1, 8, 8)
    assert a.train_x.dtype == torch.uint8 and int(a.train_x.max()) == 255
    assert a.fingerprint == b.fingerprint
    assert sorted(set(a.train_y.tolist())) == list(range(10)) and a.n_classes == 10


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(DataError, match=r"unknown dataset `cifar11`.*cifar10, cifar10-jpeg"):
        load_dataset("cifar11", Path("unused"))


def test_known_class_counts_cover_every_fixed_dataset():
    assert set(sources.DATASETS) - set(KNOWN_CLASS_COUNTS) == {"imagefolder"}


def test_one_table_of_dataset_facts_and_the_older_names_are_views_of_it():
    assert set(DATASET_FACTS) == set(sources.DATASETS) - {"imagefolder"}
    assert KNOWN_CLASS_COUNTS == {"mnist": 10, "fashion-mnist": 10, "digits": 10, "cifar10": 10,
                                  "cifar100": 100, "cifar10-jpeg": 10}
    assert KNOWN_INPUT_SHAPES == {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                                  "digits": (1, 8, 8), "cifar10": (3, 32, 32),
                                  "cifar100": (3, 32, 32), "cifar10-jpeg": (3, 32, 32)}
    for name, facts in DATASET_FACTS.items():
        assert (KNOWN_CLASS_COUNTS[name], KNOWN_INPUT_SHAPES[name]) == (facts.n_classes,
                                                                        facts.input_shape)
    assert streams.KNOWN_CLASS_COUNTS is KNOWN_CLASS_COUNTS
    assert sources.KNOWN_INPUT_SHAPES is KNOWN_INPUT_SHAPES
    for name, facts in DATASET_FACTS.items():
        assert facts.classes is None or len(facts.classes) == facts.n_classes, name


def test_readers_give_the_facts_of_their_dataset(tmp_path):
    write_mnist_layout(tmp_path / "MNIST" / "raw")
    write_mnist_layout(tmp_path / "FashionMNIST" / "raw")
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    for name in ("mnist", "fashion-mnist", "digits", "cifar10", "cifar100"):
        ds, facts = load_dataset(name, tmp_path, offline=True), DATASET_FACTS[name]
        assert (ds.n_classes, ds.input_shape) == (facts.n_classes, facts.input_shape), name
        assert facts.classes is None or ds.classes == facts.classes, name


def test_channel_stats_match_the_float_formula():
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = sources.channel_stats(x)
    flat = x.transpose(0, 1).reshape(3, -1).double() / 255
    np.testing.assert_allclose(mean, flat.mean(1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(1).numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- decoded-data caches


def assert_same_dataset(a: sources.Dataset, b: sources.Dataset) -> None:
    """Every field equal, exactly: arrays (values, dtypes, shapes), names, statistics, path."""
    for k in ("train_x", "train_y", "test_x", "test_y"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), k
        assert x.is_contiguous() and y.is_contiguous(), k
    assert (a.name, a.classes, a.path, a.fingerprint) == (b.name, b.classes, b.path, b.fingerprint)
    assert a.mean == b.mean and a.std == b.std  # floats, bit for bit


def hand_fingerprint(*arrays: np.ndarray) -> str:
    """sources.fingerprint written out: sha256 over f"{dtype}{shape}" and the bytes of each."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


@pytest.fixture
def uncached(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make every load decode its files, as before the caches existed (the readers
    that go through :func:`~lifelong_kd.data.cache.cached_load`)."""

    def build_only(kind, name, path, files, build, extra=""):  # noqa: ANN001, ANN202
        return build()

    def patch() -> None:
        for reader in (data_idx, data_cifar, data_digits):
            monkeypatch.setattr(reader, "cached_load", build_only)

    return patch


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every IDX file and CIFAR pickle decoded."""
    calls: list[str] = []
    idx, pickle_reader = data_idx.read_idx, data_cifar.read_cifar_pickle

    def counting_idx(path: Path) -> np.ndarray:
        calls.append(Path(path).name)
        return idx(path)

    def counting_pickle(path: Path) -> dict[str, object]:
        calls.append(Path(path).name)
        return pickle_reader(path)

    monkeypatch.setattr(data_idx, "read_idx", counting_idx)
    monkeypatch.setattr(data_cifar, "read_cifar_pickle", counting_pickle)
    return calls


def refuse_writes(*args: object, **kwargs: object) -> None:
    """``tempfile.mkstemp`` in a folder that cannot be written."""
    raise PermissionError(13, "Permission denied")


def only_cache(kind: str) -> Path:
    (cache,) = data_cache.cache_dir(kind).glob("*.npz")
    assert not [p for p in data_cache.cache_dir(kind).iterdir() if p.suffix != ".npz"]  # no temp
    return cache


def test_mnist_layout_warm_load_equals_the_uncached_load(tmp_path, count_reads, uncached):
    arrays = write_mnist_layout(tmp_path / "FashionMNIST" / "raw")
    cold = load_dataset("fashion-mnist", tmp_path, offline=True)
    assert len(count_reads) == 4
    cache = only_cache("fashion-mnist")
    assert cache.parent == tmp_path / "cache" / "lifelong-kd" / "fashion-mnist"
    assert cache.name.startswith("raw-")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warm = load_dataset("fashion-mnist", tmp_path, offline=True)
    assert len(count_reads) == 4  # nothing decoded again
    uncached()
    plain = load_dataset("fashion-mnist", tmp_path, offline=True)
    assert len(count_reads) == 8
    assert_same_dataset(warm, plain)
    assert_same_dataset(cold, plain)
    # the values themselves, by hand: labels 0..9 repeating, the fingerprint of the four arrays
    x, ex = arrays["train-images-idx3-ubyte"], arrays["t10k-images-idx3-ubyte"]
    assert warm.train_y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert warm.fingerprint == hand_fingerprint(
        x[:, None], np.arange(12, dtype=np.int64) % 10, ex[:, None], np.arange(6, dtype=np.int64))
    np.testing.assert_allclose(warm.mean, [x.astype(np.float64).mean() / 255], rtol=1e-12)
    np.testing.assert_allclose(warm.std, [x.astype(np.float64).std(ddof=1) / 255], rtol=1e-12)
    assert warm.classes == FASHION_MNIST_CLASSES
    assert warm.path == str(tmp_path / "FashionMNIST" / "raw")


def test_mnist_layout_changed_file_is_decoded_again(tmp_path, count_reads):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_layout(raw)
    load_dataset("mnist", tmp_path, offline=True)
    old_cache = only_cache("mnist")
    # other labels in the same file name, with a later modification time
    labels = raw / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(12, 7, dtype=np.uint8), compress=True)
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    ds = load_dataset("mnist", tmp_path, offline=True)
    assert len(count_reads) == 8 and ds.train_y.tolist() == [7] * 12
    assert only_cache("mnist") != old_cache  # replaced, not added beside it
    # a plain (not gzipped) file now beside the .gz one is the file read (the reader's rule)
    write_idx(raw / "train-labels-idx1-ubyte", np.full(12, 3, dtype=np.uint8))
    assert load_dataset("mnist", tmp_path, offline=True).train_y.tolist() == [3] * 12
    assert len(count_reads) == 12


def _truncate(cache: Path) -> None:
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])


def _rewrite(cache: Path, fresh_checksum: bool = True, **changes: object) -> None:
    """The cache with ``changes`` (None: an entry removed), its checksum made anew (a cache
    malformed when written) unless not ``fresh_checksum`` (a cache changed since)."""
    with np.load(cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    if fresh_checksum and "checksum" in arrays:
        arrays["checksum"] = np.array(data_cache._checksum(arrays))
    np.savez(cache, **arrays)


def _shift_labels_in_place(cache: Path, name: str = "test_y") -> None:
    """The issue's tampering: the labels ``name`` shifted by one class inside the cache file
    (a valid zip again, its CRCs made anew), its size and modification time kept as written."""
    st = cache.stat()
    with np.load(cache, allow_pickle=False) as z:
        labels = z[name]
    _rewrite(cache, fresh_checksum=False, **{name: (labels + 1) % (int(labels.max()) + 1)})
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.stat().st_size == st.st_size


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate, r"BadZipFile|EOFError|ValueError"),
        (lambda c: c.write_bytes(b"not a zip file"), r"BadZipFile|ValueError"),
        (lambda c: _rewrite(c, fingerprint=None), r"no `fingerprint` entry"),
        (lambda c: _rewrite(c, checksum=None), r"no `checksum` entry"),
        (lambda c: _rewrite(c, fresh_checksum=False, train_y=np.zeros(12, np.int64)),
         r"do not match the checksum written with it"),
        (_shift_labels_in_place, r"do not match the checksum written with it"),
        (lambda c: _rewrite(c, fingerprint=np.array("abc")), r"fingerprint is malformed"),
        (lambda c: _rewrite(c, key=np.array("0" * 64)), r"belongs to other source files"),
        (lambda c: _rewrite(c, train_y=np.full(12, 10, dtype=np.int64)), r"train labels .*range"),
        (lambda c: _rewrite(c, test_x=np.zeros((6, 1, 4, 4), np.uint8)), r"differ in shape"),
        (lambda c: _rewrite(c, mean=np.array([0.1, 0.2])), r"channel mean is malformed"),
        (lambda c: _rewrite(c, train_x=np.zeros((12, 1, 28, 28), np.float32)),
         r"train arrays are malformed"),
    ],
    ids=["truncated", "garbage", "no-fingerprint", "no-checksum", "changed", "shifted-in-place",
         "bad-fingerprint", "other-key", "labels",
         "shapes", "mean", "float-images"],
)
def test_corrupt_mnist_cache_is_ignored_with_a_warning_and_rebuilt(tmp_path, count_reads,
                                                                   damage, problem):
    write_mnist_layout(tmp_path / "MNIST" / "raw")
    first = load_dataset("mnist", tmp_path, offline=True)
    damage(only_cache("mnist"))
    with pytest.warns(UserWarning, match=rf"ignoring the mnist cache .*\(.*({problem}).*\); "
                                         "rebuilding it"):
        again = load_dataset("mnist", tmp_path, offline=True)
    assert len(count_reads) == 8
    assert_same_dataset(again, first)
    with warnings.catch_warnings():  # rebuilt: valid again
        warnings.simplefilter("error")
        assert_same_dataset(load_dataset("mnist", tmp_path, offline=True), first)
    assert len(count_reads) == 8


def test_unwritable_cache_folder_is_a_warning_not_an_error(tmp_path, monkeypatch, count_reads):
    write_mnist_layout(tmp_path / "MNIST" / "raw")
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    with pytest.warns(UserWarning, match=r"could not write the mnist cache .*not-a-folder"):
        ds = load_dataset("mnist", tmp_path, offline=True)
    assert ds.train_x.shape == (12, 1, 28, 28)
    # a read-only cache folder that holds a valid cache: read, and nothing written or warned
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_dataset("mnist", tmp_path, offline=True)
    assert len(count_reads) == 8
    # root ignores chmod: the folder refuses new files here
    monkeypatch.setattr(data_cache.tempfile, "mkstemp", refuse_writes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_dataset(load_dataset("mnist", tmp_path, offline=True), ds)
    assert len(count_reads) == 8
    # ... and one that cannot take a new cache: a warning, the data decoded
    only_cache("mnist").unlink()
    with pytest.warns(UserWarning, match=r"could not write the mnist cache .*Permission denied"):
        assert_same_dataset(load_dataset("mnist", tmp_path, offline=True), ds)
    assert len(count_reads) == 12 and not list(data_cache.cache_dir("mnist").iterdir())


def test_cifar_warm_load_equals_the_uncached_load_and_follows_the_meta_file(
        tmp_path, count_reads, uncached):
    files = write_cifar10(tmp_path)
    cold = load_dataset("cifar10", tmp_path, offline=True)
    assert len(count_reads) == 7  # meta, 5 training batches, test batch
    assert only_cache("cifar10").name.startswith("cifar-10-batches-py-")
    warm = load_dataset("cifar10", tmp_path, offline=True)
    assert len(count_reads) == 7
    assert_same_dataset(warm, cold)
    assert warm.train_y.tolist() == sum((files[f"data_batch_{i}"][b"labels"]
                                         for i in range(1, 6)), [])
    # other class names in batches.meta (a later modification time): read again
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    dump(meta, {b"label_names": [f"c{i}".encode() for i in range(10)]})
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 10**9))
    renamed = load_dataset("cifar10", tmp_path, offline=True)
    assert len(count_reads) == 14 and renamed.classes[3] == "c3"
    assert renamed.fingerprint == cold.fingerprint  # the arrays are the same
    uncached()
    assert_same_dataset(load_dataset("cifar10", tmp_path, offline=True), renamed)


def test_cifar100_cache_round_trip(tmp_path, count_reads):
    files = write_cifar100(tmp_path)
    cold = load_dataset("cifar100", tmp_path, offline=True)
    warm = load_dataset("cifar100", tmp_path, offline=True)
    assert len(count_reads) == 3 and only_cache("cifar100").is_file()
    assert_same_dataset(warm, cold)
    assert warm.classes[99] == "fine99" and warm.test_y.tolist() == files["test"][b"fine_labels"]


def test_digits_warm_load_needs_no_scikit_learn(monkeypatch, uncached):
    source = data_digits._sklearn_digits_file()
    assert source is not None and source.name == "digits.csv.gz"
    cold = load_dataset("digits", Path("unused"))
    assert only_cache("digits").is_file()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "sklearn.datasets", None)  # importing it now fails
        warm = load_dataset("digits", Path("unused"))
    assert_same_dataset(warm, cold)
    assert warm.train_x.shape == (1438, 1, 8, 8) and warm.test_x.shape == (359, 1, 8, 8)
    uncached()
    assert_same_dataset(load_dataset("digits", Path("unused")), warm)


def test_image_folder_cache_holds_the_fingerprint_and_ignores_older_layouts(
        tmp_path, data_dir, count_decodes, monkeypatch):
    root = tmp_path / "imgs"
    make_image_folder(root)
    cold = load_dataset("imagefolder", data_dir, path=str(root))
    cache = only_cache("imagefolder")
    with np.load(cache) as z:
        assert str(z["fingerprint"]) == cold.fingerprint
        assert tuple(z["mean"]) == cold.mean and tuple(z["std"]) == cold.std
        assert str(z["checksum"]) == data_cache._checksum({k: z[k] for k in z.files})
    # a cache of the layout before checksums: another key, so another file, never read
    monkeypatch.setattr(data_cache, "_DECODED_CACHE_VERSION", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_dataset(load_dataset("imagefolder", data_dir, path=str(root)), cold)
    assert len(count_decodes) == 30 and only_cache("imagefolder") != cache  # replaced


def test_image_folder_cache_changed_in_place_is_rebuilt(tmp_path, data_dir, count_decodes):
    root = tmp_path / "imgs"
    make_image_folder(root)
    cold = load_dataset("imagefolder", data_dir, path=str(root))
    _shift_labels_in_place(only_cache("imagefolder"), "train_y")
    with pytest.warns(UserWarning, match=r"ignoring the image-folder cache .*checksum.*rebuilding"):
        again = load_dataset("imagefolder", data_dir, path=str(root))
    assert len(count_decodes) == 30
    assert_same_dataset(again, cold)


def test_digits_cache_with_shifted_labels_is_rebuilt_not_used(uncached):
    """The issue's case: the digits cache's test labels shifted in place (same size, same
    modification time): a warning and a rebuild, the clean data and its fingerprint."""
    cold = load_dataset("digits", Path("unused"))
    _shift_labels_in_place(only_cache("digits"))
    with pytest.warns(UserWarning, match=r"ignoring the digits cache .*checksum.*rebuilding"):
        again = load_dataset("digits", Path("unused"))
    assert_same_dataset(again, cold)
    uncached()
    assert_same_dataset(again, load_dataset("digits", Path("unused")))


class _Trap:
    """An object whose unpickling writes a file: proof that a load unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "unpickled"))


def test_loading_a_cache_never_unpickles(tmp_path, count_reads):
    write_mnist_layout(tmp_path / "MNIST" / "raw")
    first = load_dataset("mnist", tmp_path, offline=True)
    cache, trap = only_cache("mnist"), tmp_path / "trap"
    trapped = np.empty(1, dtype=object)
    trapped[0] = _Trap(trap)
    _rewrite(cache, fresh_checksum=False, classes=trapped)
    with pytest.warns(UserWarning, match=r"ignoring the mnist cache .*allow_pickle"):
        again = load_dataset("mnist", tmp_path, offline=True)
    assert not trap.exists()
    assert_same_dataset(again, first)


# ----------------------------------------------------------------------------- real data


@pytest.fixture
def cifar_jpeg_subset(tmp_path: Path, data_dir: Path) -> Path:
    """A 300-image image folder of the real CIFAR-10 JPEG copy (20 train + 10 test per class),
    made of symbolic links."""
    src = data_dir / "cifar10-jpeg"
    dst = tmp_path / "cifar10-jpeg-subset"
    for split, n in (("train", 20), ("test", 10)):
        for cls in CIFAR10_CLASSES:
            names = sorted(os.listdir(src / split / cls))[:n]
            (dst / split / cls).mkdir(parents=True)
            for name in names:
                (dst / split / cls / name).symlink_to(src / split / cls / name)
    return dst


def test_real_cifar10_jpeg_subset(cifar_jpeg_subset, data_dir):
    ds = load_dataset("cifar10-jpeg", data_dir, path=str(cifar_jpeg_subset))
    assert ds.name == "cifar10-jpeg" and ds.classes == CIFAR10_CLASSES
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.test_x.shape == (100, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [20] * 10
    first = sorted(os.listdir(data_dir / "cifar10-jpeg" / "train" / "bird"))[0]
    with Image.open(data_dir / "cifar10-jpeg" / "train" / "bird" / first) as im:
        direct = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds.train_x[40].numpy(), direct)  # bird = class 2
    assert all(0.35 < m < 0.6 for m in ds.mean) and all(0.18 < s < 0.32 for s in ds.std)


#: The fingerprint of the MNIST files of ../shared/datasets (train-images restored from a PNG
#: copy, see its README), as the reader computed it before the caches existed.
SHARED_MNIST_FINGERPRINT = "947d2aa742f268b092ee3abec5c3a85716fcc9f981ab07a8f6d327c05bee6554"


def test_real_mnist_cold_and_warm_loads_are_the_same(data_dir, count_reads):
    cold = load_dataset("mnist", data_dir, offline=True)
    warm = load_dataset("mnist", data_dir, offline=True)
    assert len(count_reads) == 4
    assert_same_dataset(warm, cold)
    assert warm.fingerprint == SHARED_MNIST_FINGERPRINT
    assert warm.train_x.shape == (60000, 1, 28, 28) and warm.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(warm.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                    974, 1009]
    assert round(warm.mean[0], 4) == 0.1307 and round(warm.std[0], 4) == 0.3082
    assert warm.path == str(data_dir / "MNIST" / "raw")


def test_cli_run_on_a_small_cifar10_jpeg_folder(cifar_jpeg_subset, tmp_path):
    out = tmp_path / "out"
    code = main(["run", "split-cifar10-jpeg", "--strategy", "lwf", "--offline", "--quiet",
                 "--out", str(out), "--set", f"data.path={cifar_jpeg_subset}",
                 "--set", "model.channels=[8]", "--set", "train.epochs=1",
                 "--set", "train.batch_size=32"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["data"]["dataset"] == "cifar10-jpeg"
    assert result["data"]["path"] == str(cifar_jpeg_subset.resolve())
    assert result["data"]["n_train"] == 200 and result["n_tasks"] == 5
    assert len(result["accuracy_matrix"]) == 5


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name):
    from lifelong_kd.presets import suite_members

    members = suite_members(name)
    if members is not None:  # a suite: every member resolves, with its own settings
        for m in members:
            config = build_config(m.benchmark, overrides=m.settings)
            assert config.description
            plain = config.to_dict()
            flat = {f"{section}.{k}": v for section, table in plain.items()
                    if isinstance(table, dict) for k, v in table.items()}
            flat.update({k: v for k, v in plain.items() if not isinstance(v, dict)})
            assert all(flat[k] == v for k, v in m.settings.items())
        return
    config = build_config(name)
    assert config.benchmark == name and config.description
    if config.data.dataset.startswith("cifar"):
        assert config.train.augment and config.model.name in ("convnet", "resnet18")


def test_new_presets_exist_with_their_shapes():
    expected = {"split-mnist": (5, "mnist"), "rotated-mnist": (10, "mnist"),
                "split-cifar10": (5, "cifar10"), "split-cifar100": (10, "cifar100"),
                "split-cifar100-20": (20, "cifar100"), "split-cifar10-jpeg": (5, "cifar10-jpeg"),
                "permuted-digits": (5, "digits"), "split-digits": (5, "digits")}
    for name, (n_tasks, dataset) in expected.items():
        assert (BENCHMARK_DIR / f"{name}.toml").is_file(), name
        config = build_config(name)
        assert (config.stream.n_tasks, config.data.dataset) == (n_tasks, dataset), name
    assert "CIFAR-10 (JPEG copy)" in build_config("split-cifar10-jpeg").description


def test_the_decoding_pool_ends_under_a_sigterm_handler_that_does_not_exit(tmp_path):
    """A decoding worker has the default SIGTERM and SIGINT whatever its parent had: one forked
    from a process whose SIGTERM handler does not exit (the command line's stop request, which
    waits for the current step) survived the pool's terminate(), and the pool's join hung
    (seen once in CI). The workers now end by themselves (close, then join) and, if killed,
    die. A subprocess, so that a regression is a timeout here and not a hung suite."""
    root = tmp_path / "imgs"
    make_image_folder(root, n_train=4)
    code = (
        "import signal, sys\n"
        "from lifelong_kd.data import imagefolder\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)\n"
        "signal.signal(signal.SIGINT, lambda *a: None)\n"
        "with imagefolder.decoding_pool(2) as pool:\n"
        "    print(pool.apply(signal.getsignal, (signal.SIGTERM,)) == signal.SIG_DFL,\n"
        "          pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_DFL)\n"
        "imagefolder._POOL_MIN_FILES = 1\n"
        "imagefolder._n_workers = lambda: 2\n"
        "print(len(imagefolder.load_image_folder(sys.argv[1], progress=False).train_y))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "12"], done.stdout
