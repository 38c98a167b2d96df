"""A dataset in memory: uint8 images and int64 labels, with their fingerprint and statistics.

Every reader (``idx.py``, ``cifar.py``, ``digits.py``, ``imagefolder.py``) returns a
:class:`Dataset` whose images are ``uint8`` tensors of shape ``(N, C, H, W)`` and whose labels
are ``int64`` tensors of class indices, made by :func:`make_dataset`. The data directory is laid
out as ``torchvision.datasets`` lays out its root (``<data-dir>/MNIST/raw/...``). Readers check
what they read (magic numbers, sizes, label ranges) and raise
:class:`~lifelong_kd.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
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
    """Per-channel mean and std (unbiased) of uint8 images (N, C, H, W), scaled to [0, 1].

    Computed exactly in float64 from a histogram of the 256 grey levels of each channel, which
    is fast and needs no float copy of the images.
    """
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = float(counts.sum())
        mean = float((counts * levels).sum()) / max(n, 1.0)
        var = float((counts * (levels - mean) ** 2).sum()) / max(n - 1.0, 1.0)
        means.append(mean)
        stds.append(max(var ** 0.5, 1e-8))
    return tuple(means), tuple(stds)


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


# --------------------------------------------------------------------------- shared by the readers

def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (some messages span several, e.g.
    pickle's), so that the DataError quoting it stays one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
