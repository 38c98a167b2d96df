"""Dataset readers: files on disk -> uint8 tensors in memory, with a fingerprint.

Every source returns a :class:`Dataset` whose images are ``uint8`` tensors of shape
``(N, C, H, W)`` and whose labels are ``int64`` tensors of class indices. The data directory
is laid out as ``torchvision.datasets`` lays out its root (``<data-dir>/MNIST/raw/...``).
Readers check what they read (magic numbers, sizes, label ranges) and raise
:class:`~lifelong_kd.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory."""

    name: str
    train_x: torch.Tensor  # uint8, (N, C, H, W)
    train_y: torch.Tensor  # int64, (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    #: Per-channel mean and std of the training images in [0, 1], used to normalise inputs.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: str
    fingerprint: str

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


def default_data_dir() -> Path:
    """``$LIFELONG_KD_DATA``, else a per-user cache folder (``$XDG_CACHE_HOME`` or ~/.cache)."""
    env = os.environ.get("LIFELONG_KD_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lifelong-kd" / "data"


def fingerprint(*arrays: torch.Tensor | np.ndarray) -> str:
    """sha256 over the shapes, dtypes and bytes of the arrays, in order."""
    digest = hashlib.sha256()
    for a in arrays:
        arr = a.numpy() if isinstance(a, torch.Tensor) else a
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), scaled to [0, 1]."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float32).div_(255.0)
    mean = x.mean(dim=1, dtype=torch.float64)
    std = x.std(dim=1).to(torch.float64).clamp_min(1e-8)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# --------------------------------------------------------------------------- IDX files

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
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a truncated or corrupt gzip file ({exc})") from None
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
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: the header declares shape {dims} ({expected} data bytes) but the file "
            f"holds {len(raw) - header} data bytes; the file is truncated or wrong"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


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


def _download_torchvision(name: str, root: Path, what: str, expected: str) -> None:
    """Download a dataset through torchvision into ``root``; a clear DataError on failure."""
    try:
        import torchvision.datasets as tvd

        getattr(tvd, name)(root=str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the download is the same problem
        raise DataError(
            f"{what} is not in the data directory {root} and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Put {expected} there, or point --data-dir "
            "(or LIFELONG_KD_DATA) at a folder that holds them."
        ) from None


def load_idx_dataset(
    name: str, folder: str, classes: tuple[str, ...], data_dir: Path, offline: bool
) -> Dataset:
    """MNIST-layout IDX files under ``<data_dir>/<folder>/raw/`` (gzip or plain)."""
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
            raise DataError(f"{name} download finished but the files are missing; expected {expected}")
    arrays = {k: read_idx(p) for k, p in paths.items() if p is not None}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        px, py = paths[f"{split}_x"], paths[f"{split}_y"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{px}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise DataError(f"{py}: expected uint8 labels of shape (N,), got {y.dtype} {y.shape}")
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


def make_dataset(
    name: str,
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    classes: tuple[str, ...], path: str,
) -> Dataset:
    """Wrap uint8 NCHW arrays and integer labels as a fingerprinted :class:`Dataset`."""
    tx = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.uint8))
    ex = torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.uint8))
    ty = torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    ey = torch.from_numpy(np.asarray(test_y, dtype=np.int64))
    mean, std = channel_stats(tx)
    return Dataset(
        name=name, train_x=tx, train_y=ty, test_x=ex, test_y=ey, classes=tuple(classes),
        mean=mean, std=std, path=path, fingerprint=fingerprint(tx, ty, ex, ey),
    )


def load_mnist(data_dir: Path, offline: bool = False, path: str = "") -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 + 10,000 grey 28 x 28 digits."""
    return load_idx_dataset("mnist", "MNIST", tuple(str(i) for i in range(10)), data_dir, offline)


# --------------------------------------------------------------------------- digits

def load_digits(data_dir: Path, offline: bool = False, path: str = "") -> Dataset:
    """The 8 x 8 digits scikit-learn ships (1,797 images, grey levels 0..16).

    Scaled to 0..255 and split by a fixed seeded shuffle into 1,437 training and 360 test
    images (80/20), the same on every machine.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    n_train = int(round(0.8 * len(labels)))
    tr, te = order[:n_train], order[n_train:]
    return make_dataset(
        "digits", images[tr], labels[tr], images[te], labels[te],
        tuple(str(i) for i in range(10)), "sklearn.datasets.load_digits",
    )


#: name -> loader(data_dir, offline, path). Add a dataset here.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "digits": load_digits,
}


def load_dataset(name: str, data_dir: Path, offline: bool = False, path: str = "") -> Dataset:
    """Load a registered dataset by name (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset `{name}`; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](Path(data_dir), offline=offline, path=path)


def subset(ds: Dataset, n_train: int, n_test: int) -> Dataset:
    """A seeded random subset (the same for every run seed) of the training and test sets.

    The fingerprint stays that of the full arrays read from disk; the subset sizes are part of
    the configuration recorded with the result.
    """
    def pick(n_keep: int, n_all: int, salt: int) -> torch.Tensor | None:
        if n_keep <= 0 or n_keep >= n_all:
            return None
        g = torch.Generator().manual_seed(1234 + salt)
        return torch.randperm(n_all, generator=g)[:n_keep].sort().values

    tr = pick(n_train, len(ds.train_y), 0)
    te = pick(n_test, len(ds.test_y), 1)
    if tr is None and te is None:
        return ds
    return Dataset(
        name=ds.name,
        train_x=ds.train_x if tr is None else ds.train_x[tr],
        train_y=ds.train_y if tr is None else ds.train_y[tr],
        test_x=ds.test_x if te is None else ds.test_x[te],
        test_y=ds.test_y if te is None else ds.test_y[te],
        classes=ds.classes, mean=ds.mean, std=ds.std, path=ds.path, fingerprint=ds.fingerprint,
    )
