"""Image folders (one sub-folder per class), decoded with PIL by a process pool, and the
CIFAR-10 JPEG copy, which is one."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cache import (
    _CACHED_ARRAYS,
    _CACHED_SUMMARY,
    _dataset_entries,
    _dataset_of_entries,
    _decoded_cache_file,
    _entries_problem,
    _lines_key,
    _read_npz,
    _write_cache,
    cache_dir,
)
from .dataset import Dataset, _one_line, make_dataset
from .facts import CIFAR10_CLASSES

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
    key = _lines_key("imagefolder", str(root), sorted(stats))
    return _FolderListing(root, tuple(classes), files, labels, key)


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


def _default_signals() -> None:
    """A decoding worker ends on SIGTERM and SIGINT, whatever handlers the process it was
    forked from had: the pool ends its workers with SIGTERM once the images are decoded, and
    a worker that inherited a handler that does not exit (the command line's stop request,
    which waits for the current step) would never end, nor the pool's join."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def decoding_pool(workers: int) -> multiprocessing.pool.Pool:
    """A pool of ``workers`` processes whose SIGTERM and SIGINT are the defaults
    (:func:`_default_signals`)."""
    return multiprocessing.get_context().Pool(workers, _default_signals)


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
            pool = decoding_pool(workers)
            try:
                for i, batch in enumerate(pool.imap(_decode_chunk, chunks)):
                    take(batch, i * size)
                    bar.update(len(batch))
                pool.close()  # the workers end by themselves: none killed holding a lock
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
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

