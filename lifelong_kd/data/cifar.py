"""The CIFAR python layout (pickled dicts): CIFAR-10 and CIFAR-100, read without running code."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .cache import cached_load
from .dataset import Dataset, _download_torchvision, _one_line, make_dataset

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

