"""The 8 x 8 digits scikit-learn ships, read through scikit-learn once and then from the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import cached_load
from .dataset import Dataset, make_dataset
from .facts import DIGIT_CLASSES


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
    classes = DIGIT_CLASSES

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
