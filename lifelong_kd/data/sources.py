"""The dataset registry: names -> readers, and the public names of the data sources.

Each format has its module: ``idx.py`` (MNIST, Fashion-MNIST), ``cifar.py`` (CIFAR-10/100),
``digits.py`` (scikit-learn's digits), ``imagefolder.py`` (image folders, the CIFAR-10 JPEG
copy); ``dataset.py`` holds :class:`Dataset` and what makes one, ``cache.py`` the decoded-data
cache every reader goes through, ``facts.py`` the one table of what is known of each dataset
before it is read. This module names the datasets (:data:`DATASETS`) and loads one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import closest_name
from ..errors import DataError
from .cache import cache_dir, cached_load
from .cifar import load_cifar, load_cifar10, load_cifar100, read_cifar_pickle
from .dataset import Dataset, channel_stats, default_data_dir, fingerprint, make_dataset, subset
from .digits import load_digits
from .facts import (
    CIFAR10_CLASSES,
    DATASET_FACTS,
    FASHION_MNIST_CLASSES,
    KNOWN_INPUT_SHAPES,
    DatasetFacts,
)
from .idx import MNIST_FILES, load_fashion_mnist, load_idx_dataset, load_mnist, read_idx
from .imagefolder import (
    IMAGE_EXTENSIONS,
    imagefolder_cache_dir,
    load_cifar10_jpeg,
    load_image_folder,
    load_imagefolder,
)

__all__ = [
    "CIFAR10_CLASSES", "DATASETS", "DATASET_ALIASES", "DATASET_FACTS", "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS", "KNOWN_INPUT_SHAPES", "MNIST_FILES", "Dataset", "DatasetFacts",
    "cache_dir", "cached_load", "channel_stats", "dataset_hint", "default_data_dir",
    "fingerprint", "imagefolder_cache_dir", "load_cifar", "load_cifar10", "load_cifar100",
    "load_cifar10_jpeg", "load_dataset", "load_digits", "load_fashion_mnist", "load_idx_dataset",
    "load_image_folder", "load_imagefolder", "load_mnist", "make_dataset", "read_cifar_pickle",
    "read_idx", "subset",
]

#: name -> loader(data_dir, offline=False, path="", progress=True). Add a dataset here, and
#: its class count and image shape (unless the data decide them) to ``facts.DATASET_FACTS``.
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
