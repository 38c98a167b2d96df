"""The decoded-data cache: a source's decoded arrays, kept in one checked ``.npz`` file.

Decoding is the slow part of reading a dataset (gunzip of the MNIST files, unpickling CIFAR,
importing scikit-learn for its digits, PIL for an image folder). Each source's decoded arrays
are therefore kept in one uncompressed ``.npz`` per source under ``cache_dir(kind)``, with
what would otherwise be computed from them (the fingerprint, the channel statistics), so
that a warm start is one ``np.load``. The cache is keyed by what was read: the resolved path,
size and modification time of every source file, so a changed file is decoded again. Each
cache file also holds a checksum of everything else in it, written with it and checked on
every load (one sha256 pass, about as long as reading the file), so that a cache changed
since (by a disk, a copy or a hand) is never used as if it held what its source held. A
cache that cannot be read, or does not match its checksum, is ignored with a warning and
rebuilt; one that cannot be written is a warning; the data directory itself is only read,
never written. Caches are read with ``allow_pickle=False``: loading one never unpickles.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, _one_line

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


def _lines_key(kind: str, extra: str, lines: Sequence[str]) -> str:
    """sha256 of the cache layout's version, ``kind``, ``extra`` and ``lines`` (one line per
    file read, e.g. its relative path, size and modification time), joined by newlines."""
    digest = hashlib.sha256(f"lifelong-kd {kind} v{_DECODED_CACHE_VERSION}\n{extra}\n".encode())
    digest.update("\n".join(lines).encode("utf-8", "surrogateescape"))
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
