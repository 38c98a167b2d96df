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
import math
import multiprocessing
import os
import pickle
import tempfile
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import closest_name
from ..errors import DataError


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (some messages span several, e.g.
    pickle's), so that the DataError quoting it stays one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


# --------------------------------------------------------------------------- decoded-data caches
#
# Decoding is the slow part of reading a dataset (gunzip of the MNIST files, unpickling CIFAR,
# importing scikit-learn for its digits, PIL for an image folder). Each source's decoded arrays
# are therefore kept in one uncompressed ``.npz`` per source under ``cache_dir(kind)``, with
# what would otherwise be computed from them (the fingerprint, the channel statistics), so
# that a warm start is one ``np.load``. The cache is keyed by what was read: the resolved path,
# size and modification time of every source file, so a changed file is decoded again. Each
# cache file also holds a checksum of everything else in it, written with it and checked on
# every load (one sha256 pass, about as long as reading the file), so that a cache changed
# since (by a disk, a copy or a hand) is never used as if it held what its source held. A
# cache that cannot be read, or does not match its checksum, is ignored with a warning and
# rebuilt; one that cannot be written is a warning; the data directory itself is only read,
# never written. Caches are read with ``allow_pickle=False``: loading one never unpickles.

#: Bump when the layout of the decoded-data caches changes: older cache files are then ignored
#: (their key, and so their file name, changes). 2: every cache holds a ``checksum``.
_DECODED_CACHE_VERSION = 2
#: The entries of a cached dataset, besides ``key`` (what it was made from).
_CACHED_ARRAYS = ("classes", "train_x", "train_y", "test_x", "test_y")
_CACHED_SUMMARY = ("fingerprint", "mean", "std")


def cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/lifelong-kd/<kind>`` (else ``~/.cache/lifelong-kd/<kind>``): where the
    decoded arrays of one kind of source are cached (``imagefolder``, ``mnist``, ...)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lifelong-kd" / kind


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text) or "root"


def _files_key(kind: str, files: Sequence[Path], extra: str = "") -> str:
    """sha256 of the cache layout's version, ``kind``, ``extra`` (what else decides the arrays)
    and the resolved path, size and modification time (ns) of each of ``files``, in order.
    Raises OSError when a file cannot be looked at."""
    digest = hashlib.sha256(f"lifelong-kd {kind} v{_DECODED_CACHE_VERSION}\n{extra}\n".encode())
    for f in files:
        path = Path(f).resolve()
        st = path.stat()
        digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _decoded_cache_file(kind: str, folder: Path, key: str) -> Path:
    """``cache_dir(kind)/<folder name>-<hash of its path>-<key>.npz``: one file per source
    folder, whose older versions :func:`_write_cache` removes."""
    folder = Path(folder).resolve()
    path_hash = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir(kind) / f"{_slug(folder.name)}-{path_hash[:12]}-{key[:20]}.npz"


def _dataset_entries(ds: Dataset, key: str) -> dict[str, np.ndarray]:
    """What the cache of ``ds`` holds: its arrays, class names, fingerprint, channel
    statistics (float64, exact) and the ``key`` of what it was made from."""
    return {
        "key": np.array(key), "classes": np.array(ds.classes, dtype=str),
        "train_x": ds.train_x.numpy(), "train_y": ds.train_y.numpy(),
        "test_x": ds.test_x.numpy(), "test_y": ds.test_y.numpy(),
        "fingerprint": np.array(ds.fingerprint),
        "mean": np.array(ds.mean, dtype=np.float64), "std": np.array(ds.std, dtype=np.float64),
    }


def _entries_problem(arrays: dict[str, np.ndarray], key: str) -> str | None:
    """Why ``arrays`` (read from a cache) are not a valid cache for ``key``; None if they are.
    The arrays' own checks: dtypes, ranks, lengths, image shapes, label range, the form of the
    fingerprint and statistics."""
    if str(arrays["key"]) != key:
        return "it belongs to other source files"
    classes = arrays["classes"]
    if classes.ndim != 1 or classes.dtype.kind != "U" or len(classes) == 0:
        return "its class names are malformed"
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != np.int64 or y.ndim != 1 \
                or len(x) != len(y):
            return f"its {split} arrays are malformed"
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            return f"its {split} labels are out of range"
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        return "its train and test images differ in shape"
    digest, channels = str(arrays["fingerprint"]), arrays["train_x"].shape[1]
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        return "its fingerprint is malformed"
    for name in ("mean", "std"):
        v = arrays[name]
        if v.dtype != np.float64 or v.shape != (channels,) or not np.isfinite(v).all():
            return f"its channel {name} is malformed"
    return None


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every entry of a cache but ``checksum`` itself: each entry's name, dtype,
    shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == "checksum":
            continue
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\t{a.dtype.str}\t{a.shape}\n".encode())
        digest.update(a.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return digest.hexdigest()


def _read_npz(
    path: Path, names: Sequence[str], what: str, problem: Callable[[dict[str, np.ndarray]], str | None],
) -> dict[str, np.ndarray] | None:
    """The entries ``names`` of the cache file ``path`` when its checksum is that of its
    contents and ``problem`` finds nothing wrong in them; None when the file is absent, or
    (with a warning naming the ``what`` and the problem) unreadable, changed since it was
    written, or invalid. Never unpickles."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        missing = [k for k in ("checksum", *names) if k not in stored]
        if missing:
            found = f"it has no `{missing[0]}` entry"
        elif str(stored["checksum"]) != _checksum(stored):
            found = "its contents do not match the checksum written with it: it changed since"
        else:
            found = problem(stored)
    except Exception as exc:  # noqa: BLE001 - any failure to read means: rebuild
        found = _one_line(exc)
    if found is not None:
        warnings.warn(f"ignoring the {what} {path} ({found}); rebuilding it", stacklevel=4)
        return None
    return stored


def _dataset_of_entries(name: str, arrays: dict[str, np.ndarray], path: str) -> Dataset:
    """The :class:`Dataset` a complete cache holds, without recomputing its fingerprint or
    statistics (they were computed from the same arrays when the cache was written, and the
    checksum checked on loading says the arrays are those)."""
    return Dataset(
        name=name,
        **{k: torch.from_numpy(np.ascontiguousarray(arrays[k]))
           for k in ("train_x", "train_y", "test_x", "test_y")},
        classes=tuple(str(c) for c in arrays["classes"]),
        mean=tuple(float(v) for v in arrays["mean"]), std=tuple(float(v) for v in arrays["std"]),
        path=path, fingerprint=str(arrays["fingerprint"]),
    )


def _write_cache(path: Path, arrays: dict[str, np.ndarray], what: str = "image-folder cache") -> None:
    """Write the cache, with the checksum of ``arrays``, atomically (temporary file + rename)
    and remove older caches of the same source (same name up to the key). A cache folder that
    cannot be written is a warning, not an error."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays, checksum=np.array(_checksum(arrays)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{prefix}*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not write the {what} {path}: {exc}", stacklevel=4)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached_load(
    kind: str, name: str, path: str, files: Sequence[Path], build: Callable[[], Dataset],
    extra: str = "",
) -> Dataset:
    """``build()``, the dataset ``name`` decoded from ``files``, through the cache
    ``cache_dir(kind)``.

    The cache file of the source (named after the folder of ``files[0]``) is used when its key,
    :func:`_files_key` of ``files`` and ``extra`` (whatever else decides the arrays), is that
    of the files now; otherwise (absent, stale, unreadable: the last with a warning)
    ``build()`` runs and what it returns is written to the cache. A warm load gives exactly
    what ``build()`` would, with ``name`` and ``path`` (``Dataset.path``): the same arrays,
    class names, channel statistics and fingerprint.
    """
    try:
        key = _files_key(kind, files, extra)
    except OSError:  # a file that cannot be looked at: build() names the problem
        return build()
    cache = _decoded_cache_file(kind, Path(files[0]).parent, key)
    what = f"{kind} cache"
    arrays = _read_npz(cache, ("key", *_CACHED_ARRAYS, *_CACHED_SUMMARY), what,
                       lambda a: _entries_problem(a, key))
    if arrays is not None:
        return _dataset_of_entries(name, arrays, path)
    ds = build()
    _write_cache(cache, _dataset_entries(ds, key), what)
    return ds


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


def load_mnist(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 + 10,000 grey 28 x 28 digits."""
    return load_idx_dataset("mnist", "MNIST", tuple(str(i) for i in range(10)), data_dir, offline)


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 grey 28 x 28 clothing images, in the
    MNIST file layout under ``<data_dir>/FashionMNIST/raw/``."""
    return load_idx_dataset("fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES, data_dir,
                            offline)


# --------------------------------------------------------------------------- digits

def _sklearn_digits_file() -> Path | None:
    """The file scikit-learn reads its digits from (``sklearn/datasets/data/digits.csv.gz``),
    found without importing scikit-learn; None when it is not there."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """The 8 x 8 digits scikit-learn ships (1,797 images, grey levels 0..16).

    Scaled to 0..255 and split by a fixed seeded shuffle into 1,438 training and 359 test
    images (80/20), the same on every machine. Cached in ``cache_dir("digits")``, keyed by
    scikit-learn's data file and numpy's version (which draws the shuffle), so that a warm
    start does not import scikit-learn.
    """
    classes = tuple(str(i) for i in range(10))

    def build() -> Dataset:
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
        labels = bunch.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(labels))
        n_train = int(round(0.8 * len(labels)))
        tr, te = order[:n_train], order[n_train:]
        return make_dataset("digits", images[tr], labels[tr], images[te], labels[te], classes,
                            "sklearn.datasets.load_digits")

    source = _sklearn_digits_file()
    if source is None:
        return build()
    return cached_load("digits", "digits", "sklearn.datasets.load_digits", [source], build,
                       extra=f"numpy {np.__version__}\t" + "\t".join(classes))


# --------------------------------------------------------------------------- CIFAR pickles

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

#: The globals a CIFAR pickle may name: numpy arrays and dtypes (as written by Python 2 and 3
#: numpy) and the latin-1 codec that protocol-2 pickles use for bytes. Anything else is refused,
#: so a pickle in the data directory cannot run code.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that only builds plain containers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        if module.startswith("numpy.core."):  # Python 2 / numpy 1 name of numpy._core
            module = "numpy._core." + module.removeprefix("numpy.core.")
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                module = "numpy.core." + module.removeprefix("numpy._core.")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """Read one file of the CIFAR python layout: a pickled dict (Python 2 byte-string keys).

    Keys are returned as ``str``; only dicts, lists, strings, numbers and numpy arrays are
    built (see :data:`_PICKLE_GLOBALS`).
    """
    try:
        with path.open("rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except EOFError:
        raise DataError(f"{path} is truncated (the pickle ends early)") from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise DataError(f"{path} is truncated (the pickle ends early)") from None
        raise DataError(f"{path} is not a CIFAR python pickle ({' '.join(str(exc).split())})") \
            from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise DataError(f"{path} is not a CIFAR python pickle ({_one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(
    path: Path, label_key: str, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one CIFAR batch file, checked."""
    d = read_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(
                f"{path}: no '{key}' entry (found: {', '.join(sorted(d)) or 'none'}); "
                "not a file of the CIFAR python layout"
            )
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        desc = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else f"a {type(data).__name__}")
        raise DataError(
            f"{path}: 'data' is {desc}; expected a uint8 array of shape (N, 3072), one row of "
            "3 x 32 x 32 pixels (red, green, blue planes) per image"
        )
    try:
        labels = np.asarray(d[label_key])
    except Exception:  # noqa: BLE001
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' must be a list of integer class indices")
    if len(labels) != len(data):
        raise DataError(
            f"{path}: {len(data)} images in 'data' but {len(labels)} entries in '{label_key}'"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        bad = int(labels.max()) if int(labels.max()) >= n_classes else int(labels.min())
        raise DataError(f"{path}: label {bad} in '{label_key}' is out of range 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_class_names(path: Path, key: str, n_classes: int) -> tuple[str, ...]:
    meta = read_cifar_pickle(path)
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != n_classes:
        found = f"{len(names)} names" if isinstance(names, (list, tuple)) else "no such entry"
        raise DataError(f"{path}: expected '{key}' with {n_classes} class names, found {found}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(
    name: str, data_dir: Path, offline: bool, *, folder: str, tv_class: str,
    train_files: Sequence[str], test_file: str, meta_file: str, label_key: str,
    names_key: str, n_classes: int,
) -> Dataset:
    """A dataset in the CIFAR python layout under ``<data_dir>/<folder>/`` (downloaded through
    ``torchvision.datasets.<tv_class>`` when missing, unless ``offline``), unpickled once and
    then read from ``cache_dir(name)`` (:func:`cached_load`)."""
    root = data_dir / folder
    wanted = [*train_files, test_file, meta_file]
    expected = f"{root}/{{{','.join(wanted)}}}"
    missing = [f for f in wanted if not (root / f).is_file()]
    if missing:
        if offline:
            raise DataError(
                f"{name} files missing from {root} (--offline, so no download): "
                f"{', '.join(missing)}. Expected the official python layout: {expected}."
            )
        _download_torchvision(tv_class, data_dir, name, expected)
        missing = [f for f in wanted if not (root / f).is_file()]
        if missing:
            raise DataError(
                f"{name} download finished but {', '.join(missing)} is missing from {root}"
            )

    def build() -> Dataset:
        classes = _cifar_class_names(root / meta_file, names_key, n_classes)
        train = [_cifar_batch(root / f, label_key, n_classes) for f in train_files]
        test_x, test_y = _cifar_batch(root / test_file, label_key, n_classes)
        return make_dataset(
            name, np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test_x, test_y, classes, str(root),
        )

    return cached_load(name, name, str(root), [root / f for f in wanted], build,
                       extra=f"{label_key}\t{names_key}\t{n_classes}")


def load_cifar10(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 + 10,000 colour 32 x 32 images of 10 classes, from the
    official python files ``<data_dir>/cifar-10-batches-py/data_batch_1..5, test_batch,
    batches.meta``."""
    return load_cifar(
        "cifar10", Path(data_dir), offline, folder="cifar-10-batches-py", tv_class="CIFAR10",
        train_files=[f"data_batch_{i}" for i in range(1, 6)], test_file="test_batch",
        meta_file="batches.meta", label_key="labels", names_key="label_names", n_classes=10,
    )


def load_cifar100(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """CIFAR-100 (Krizhevsky 2009) with its 100 fine labels: 50,000 + 10,000 colour 32 x 32
    images, from ``<data_dir>/cifar-100-python/train, test, meta``."""
    return load_cifar(
        "cifar100", Path(data_dir), offline, folder="cifar-100-python", tv_class="CIFAR100",
        train_files=["train"], test_file="test", meta_file="meta", label_key="fine_labels",
        names_key="fine_label_names", n_classes=100,
    )


# --------------------------------------------------------------------------- image folders

#: File name endings read as images (those of ``torchvision.datasets.ImageFolder``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Below this many images the decoding runs in this process (no pool start-up cost).
_POOL_MIN_FILES = 2000


def imagefolder_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lifelong-kd/imagefolder`` (else ``~/.cache/lifelong-kd/imagefolder``)."""
    return cache_dir("imagefolder")


@dataclass(frozen=True)
class _FolderListing:
    """The images of an image folder, in a fixed order, and what identifies its contents."""

    root: Path
    classes: tuple[str, ...]
    files: dict[str, list[str]]  # split -> absolute paths
    labels: dict[str, np.ndarray]  # split -> int64 class indices
    key: str  # sha256 of the resolved path and every file's (relative path, size, mtime)


def _class_folders(split_dir: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(split_dir)
                      if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list {split_dir}: {exc.strerror or exc}") from None


def _walk_images(folder: str, rel: str, paths: list[str], stats: list[str]) -> None:
    """Append the image files under ``folder`` (recursively, sorted, symlinks followed, hidden
    names skipped) to ``paths``, and ``relative path\tsize\tmtime_ns`` of each to ``stats``."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir():
                _walk_images(e.path, f"{rel}{e.name}/", paths, stats)
                continue
            if not e.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            st = e.stat()
        except OSError as exc:
            raise DataError(f"cannot read {e.path}: {exc.strerror or exc}") from None
        paths.append(e.path)
        stats.append(f"{rel}{e.name}\t{st.st_size}\t{st.st_mtime_ns}")


def _scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> _FolderListing:
    """List ``root/{train,test}/<class>/**/<image>``. Classes are the sorted folder names of
    ``train/``, or ``classes`` (in that order) when given; ``test/`` must hold the same."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(
                f"image folder {root} has no {split}/ sub-folder; expected "
                f"{root}/train/<class>/<image> and {root}/test/<class>/<image>"
            )
    found = _class_folders(root / "train")
    if classes is None:
        if not found:
            raise DataError(f"{root / 'train'} holds no class folders (one sub-folder per class)")
        classes = found
    elif sorted(found) != sorted(classes):
        raise DataError(
            f"{root / 'train'}: class folders {', '.join(found) or '(none)'}; expected exactly "
            f"{', '.join(classes)}"
        )
    test_found = _class_folders(root / "test")
    if sorted(test_found) != sorted(classes):
        missing = sorted(set(classes) - set(test_found))
        extra = sorted(set(test_found) - set(classes))
        what = "; ".join(
            part for part in (missing and f"missing: {', '.join(missing)}",
                              extra and f"not in train/: {', '.join(extra)}") if part
        )
        raise DataError(f"{root / 'test'} must hold the class folders of train/ ({what})")
    files: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    stats: list[str] = []
    for split in ("train", "test"):
        paths: list[str] = []
        counts: list[int] = []
        for cls in classes:
            class_dir = root / split / cls
            n_before = len(paths)
            _walk_images(str(class_dir), f"{split}/{cls}/", paths, stats)
            if len(paths) == n_before:
                raise DataError(
                    f"class folder {class_dir} holds no images "
                    f"(files ending in {', '.join(IMAGE_EXTENSIONS)})"
                )
            counts.append(len(paths) - n_before)
        files[split] = paths
        labels[split] = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
    digest = hashlib.sha256(f"lifelong-kd imagefolder v{_DECODED_CACHE_VERSION}\n{root}\n".encode())
    digest.update("\n".join(sorted(stats)).encode("utf-8", "surrogateescape"))
    return _FolderListing(root, tuple(classes), files, labels, digest.hexdigest())


def _decode_image(path: str) -> np.ndarray:
    """Decode one image file with PIL: (H, W) uint8 for grey images, (H, W, 3) otherwise."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
            im = im.convert("L") if im.mode != "L" else im
        elif im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im, dtype=np.uint8)


def _decode_or_error(path: str) -> np.ndarray | str:
    try:
        return _decode_image(path)
    except Exception as exc:  # noqa: BLE001 - reported with the file name by the caller
        return _one_line(exc)


def _decode_chunk(paths: list[str]) -> list[np.ndarray | str]:
    return [_decode_or_error(p) for p in paths]


def _n_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _decode_all(paths: list[str], progress: bool, desc: str) -> np.ndarray:
    """Decode every image (a process pool for many files) into uint8 (N, C, H, W).

    All images must share one size; grey images are repeated to 3 channels when any image is
    in colour. The first unreadable file raises a DataError naming it.
    """
    from tqdm.auto import tqdm

    out: list[np.ndarray] = []

    def take(batch: list[np.ndarray | str], start: int) -> None:
        for i, r in enumerate(batch):
            if isinstance(r, str):
                raise DataError(f"cannot decode image {paths[start + i]}: {r}")
            out.append(r)

    workers = _n_workers()
    with tqdm(total=len(paths), desc=desc, unit="img", disable=None if progress else True,
              dynamic_ncols=True) as bar:
        if workers > 1 and len(paths) >= _POOL_MIN_FILES:
            size = max(64, min(1000, -(-len(paths) // (workers * 8))))
            chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
            with multiprocessing.get_context().Pool(workers) as pool:
                for i, batch in enumerate(pool.imap(_decode_chunk, chunks)):
                    take(batch, i * size)
                    bar.update(len(batch))
        else:
            for i, p in enumerate(paths):
                take([_decode_or_error(p)], i)
                bar.update(1)
    first = out[0]
    h, w = first.shape[:2]
    c = 3 if any(a.ndim == 3 for a in out) else 1
    images = np.empty((len(out), h, w, c), dtype=np.uint8)
    for i, a in enumerate(out):
        if a.shape[:2] != (h, w):
            raise DataError(
                f"{paths[i]} is {a.shape[1]}x{a.shape[0]} pixels but {paths[0]} is {w}x{h}; "
                "every image of an image folder must have the same size (resize them first)"
            )
        images[i] = a if a.ndim == 3 else a[:, :, None]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _cache_file(listing: _FolderListing) -> Path:
    return _decoded_cache_file("imagefolder", listing.root, listing.key)


def _read_cache(path: Path, listing: _FolderListing) -> dict[str, np.ndarray] | None:
    """The cached arrays if ``path`` holds a valid cache of ``listing``; None otherwise (a
    corrupt, changed or stale file is reported as a warning and ignored)."""

    def problem(arrays: dict[str, np.ndarray]) -> str | None:
        found = _entries_problem(arrays, listing.key)
        if found is None and tuple(str(c) for c in arrays["classes"]) != listing.classes:
            found = "its class names differ"
        for split in ("train", "test"):
            if found is None and not np.array_equal(arrays[f"{split}_y"], listing.labels[split]):
                found = f"its {split} arrays do not match the folder"
        return found

    return _read_npz(path, ("key", *_CACHED_ARRAYS, *_CACHED_SUMMARY), "image-folder cache",
                     problem)


def load_image_folder(
    root: Path, name: str = "imagefolder", classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Dataset:
    """Images in the one-folder-per-class layout ``root/{train,test}/<class>/<image>``.

    Classes are the sorted names of the class folders (or ``classes``, in that order). The
    images are decoded once with PIL and cached as uint8 arrays, with their fingerprint and
    channel statistics, in :func:`imagefolder_cache_dir`, keyed by the resolved path and the
    (relative path, size, modification time) of every image, so a changed folder is decoded
    again; ``root`` is only read, never written.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    listing = _scan_image_folder(root, classes)
    cache = _cache_file(listing)
    arrays = _read_cache(cache, listing)
    if arrays is not None:
        return _dataset_of_entries(name, arrays, str(root))
    paths = listing.files["train"] + listing.files["test"]
    images = _decode_all(paths, progress, f"decoding {root.name}")
    n_train = len(listing.files["train"])
    ds = make_dataset(
        name, images[:n_train], listing.labels["train"], images[n_train:], listing.labels["test"],
        listing.classes, str(root),
    )
    _write_cache(cache, _dataset_entries(ds, listing.key))
    return ds


def _resolve_folder(data_dir: Path, path: str) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken from the data directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_dir) / p


def load_imagefolder(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """Any image folder (``data.path``, relative to the data directory or absolute) with
    ``train/`` and ``test/`` sub-folders of one folder per class; see :func:`load_image_folder`."""
    if not path:
        raise DataError("the `imagefolder` dataset needs `data.path`: a folder with train/ and "
                        "test/ sub-folders, one sub-folder per class in each")
    folder = _resolve_folder(data_dir, path)
    if not folder.is_dir():
        raise DataError(
            f"image folder {folder} does not exist (data.path = {path!r}; a relative path is "
            f"taken from the data directory {data_dir})"
        )
    return load_image_folder(folder, "imagefolder", progress=progress)


def load_cifar10_jpeg(
    data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """The CIFAR-10 JPEG copy: an image folder at ``<data_dir>/cifar10-jpeg`` (or ``data.path``)
    whose class folders are the ten CIFAR-10 classes, labelled in the official order
    (airplane = 0 ... truck = 9). JPEG is lossy: results on it are CIFAR-10-like, not CIFAR-10.
    It cannot be downloaded."""
    folder = _resolve_folder(data_dir, path or "cifar10-jpeg")
    if not folder.is_dir():
        raise DataError(
            f"the CIFAR-10 JPEG copy is not at {folder} (it cannot be downloaded); put the "
            "folder there (train/<class>/*.jpg and test/<class>/*.jpg), or point --data-dir "
            "(or LIFELONG_KD_DATA, or data.path) at it"
        )
    return load_image_folder(folder, "cifar10-jpeg", CIFAR10_CLASSES, progress=progress)


#: name -> loader(data_dir, offline=False, path="", progress=True). Add a dataset here.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "cifar10-jpeg": load_cifar10_jpeg,
    "imagefolder": load_imagefolder,
    "digits": load_digits,
}

#: Other spellings people type for a dataset, as the "did you mean" hint of an unknown name
#: (never accepted as the name itself). Matching ignores case and punctuation, so
#: ``FashionMNIST`` (torchvision's class and folder name), ``Fashion_MNIST`` and
#: ``CIFAR-10`` need no entry; these are the abbreviations and the data folders' names.
DATASET_ALIASES: dict[str, str] = {
    "fmnist": "fashion-mnist", "fashion": "fashion-mnist",
    "cifar10batchespy": "cifar10", "cifar100python": "cifar100",
    "cifar10jpg": "cifar10-jpeg", "cifarjpeg": "cifar10-jpeg",
    "folder": "imagefolder", "images": "imagefolder",
    "sklearndigits": "digits", "loaddigits": "digits",
}

#: Image shape (C, H, W) of the datasets whose shape is fixed, so that settings that do not
#: fit it (a ConvNet that pools it to nothing) are rejected before any data is loaded.
KNOWN_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "digits": (1, 8, 8),
    "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
    "cifar10-jpeg": (3, 32, 32),  # the copy at its default place; a data.path may differ
}


def dataset_hint(name: str) -> str:
    """`` (did you mean `fashion-mnist`?)`` for a near-miss dataset name, else empty."""
    close = closest_name(name, sorted(DATASETS), DATASET_ALIASES)
    return f" (did you mean `{close}`?)" if close else ""


def load_dataset(
    name: str, data_dir: Path, offline: bool = False, path: str = "", progress: bool = True
) -> Dataset:
    """Load a registered dataset by name (see :data:`DATASETS`). ``path``: the folder of an
    image-folder dataset; ``progress``: show a progress bar for slow first loads (on a
    terminal)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset `{name}`{dataset_hint(name)}; valid datasets: "
                        f"{', '.join(sorted(DATASETS))}")
    return DATASETS[name](Path(data_dir), offline=offline, path=path, progress=progress)


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
