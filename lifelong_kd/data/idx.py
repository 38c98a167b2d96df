"""IDX files (LeCun et al.) and the datasets in the MNIST file layout: MNIST, Fashion-MNIST."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cache import cached_load
from .dataset import Dataset, _download_torchvision, _one_line, make_dataset
from .facts import DIGIT_CLASSES, FASHION_MNIST_CLASSES

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed, told apart by content, not by name).

    Format (LeCun et al.): two zero bytes, a type code (0x08 = unsigned byte), the number of
    dimensions, one big-endian uint32 per dimension, then the data, row-major.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
            raise DataError(f"{path} is a truncated or corrupt gzip file ({_one_line(exc)})") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} "
            "(expected 0x000008NN for unsigned bytes)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header truncated or with {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # exact: int64 arithmetic could wrap around
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: the header declares shape {dims} ({expected} data bytes) but the file "
            f"holds {len(raw) - header} data bytes; the file is truncated or wrong"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- MNIST family

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _find_idx(raw_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw_dir / name).is_file():
            return raw_dir / name
    return None


def load_idx_dataset(
    name: str, folder: str, classes: tuple[str, ...], data_dir: Path, offline: bool
) -> Dataset:
    """MNIST-layout IDX files under ``<data_dir>/<folder>/raw/`` (gzip or plain), decoded once
    and then read from ``cache_dir(name)`` (:func:`cached_load`)."""
    raw_dir = data_dir / folder / "raw"
    expected = ", ".join(f"{raw_dir}/{stem}[.gz]" for stem in MNIST_FILES.values())
    paths = {k: _find_idx(raw_dir, stem) for k, stem in MNIST_FILES.items()}
    if any(p is None for p in paths.values()):
        missing = [MNIST_FILES[k] for k, p in paths.items() if p is None]
        if offline:
            raise DataError(
                f"{name} files missing from the data directory {data_dir} (--offline, so no "
                f"download): {', '.join(missing)}. Expected: {expected}."
            )
        _download_torchvision(folder, data_dir, name, expected)
        paths = {k: _find_idx(raw_dir, stem) for k, stem in MNIST_FILES.items()}
        if any(p is None for p in paths.values()):
            raise DataError(
                f"{name} download finished but the files are missing; expected {expected}"
            )
    files = [p for p in paths.values() if p is not None]

    def build() -> Dataset:
        arrays = {k: read_idx(p) for k, p in paths.items() if p is not None}
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            px, py = paths[f"{split}_x"], paths[f"{split}_y"]
            if x.ndim != 3 or x.dtype != np.uint8:
                raise DataError(
                    f"{px}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}"
                )
            if y.ndim != 1 or y.dtype != np.uint8:
                raise DataError(
                    f"{py}: expected uint8 labels of shape (N,), got {y.dtype} {y.shape}")
            if len(x) != len(y):
                raise DataError(f"{px} holds {len(x)} images but {py} holds {len(y)} labels")
            if len(y) and int(y.max()) >= len(classes):
                raise DataError(f"{py}: label {int(y.max())} out of range 0..{len(classes) - 1}")
        return make_dataset(
            name,
            arrays["train_x"][:, None], arrays["train_y"],
            arrays["test_x"][:, None], arrays["test_y"],
            classes, str(raw_dir),
        )

    return cached_load(name, name, str(raw_dir), files, build, extra="\t".join(classes))


def load_mnist(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 + 10,000 grey 28 x 28 digits."""
    return load_idx_dataset("mnist", "MNIST", DIGIT_CLASSES, data_dir, offline)


def load_fashion_mnist(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 grey 28 x 28 clothing images, in the
    MNIST file layout under ``<data_dir>/FashionMNIST/raw/``."""
    return load_idx_dataset("fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES, data_dir,
                            offline)
