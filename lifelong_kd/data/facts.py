"""What is known of each named dataset before any of its files is read: one table.

:data:`DATASET_FACTS` gives, for every dataset of fixed content, its number of classes, its
image shape and (where the reader names them) its class names. Settings are checked against it
before any data is loaded (a ConvNet that pools the images to nothing, a class order or a
memory budget that does not fit), the readers take their class names from here, and the
manual's dataset page prints it. ``imagefolder`` is not here: its classes and shape are those of
the folder it reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetFacts:
    """The fixed facts of one named dataset."""

    n_classes: int
    #: Image shape (C, H, W).
    input_shape: tuple[int, int, int]
    #: The class names, in label order, that its reader gives; None where the reader reads them
    #: from the data files (CIFAR's meta files).
    classes: tuple[str, ...] | None = None


DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

#: name -> facts, for every registered dataset whose content is fixed. Add a dataset here.
DATASET_FACTS: dict[str, DatasetFacts] = {
    "mnist": DatasetFacts(10, (1, 28, 28), DIGIT_CLASSES),
    "fashion-mnist": DatasetFacts(10, (1, 28, 28), FASHION_MNIST_CLASSES),
    "digits": DatasetFacts(10, (1, 8, 8), DIGIT_CLASSES),
    "cifar10": DatasetFacts(10, (3, 32, 32)),  # names from batches.meta
    "cifar100": DatasetFacts(100, (3, 32, 32)),  # names from meta
    # the copy at its default place; a data.path may differ in shape (not in classes)
    "cifar10-jpeg": DatasetFacts(10, (3, 32, 32), CIFAR10_CLASSES),
}

#: Class counts of the known datasets, for checks before any data is loaded (a view of
#: :data:`DATASET_FACTS`).
KNOWN_CLASS_COUNTS: dict[str, int] = {name: f.n_classes for name, f in DATASET_FACTS.items()}
#: Image shape (C, H, W) of the datasets whose shape is fixed, so that settings that do not
#: fit it (a ConvNet that pools it to nothing) are rejected before any data is loaded (a view
#: of :data:`DATASET_FACTS`).
KNOWN_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    name: f.input_shape for name, f in DATASET_FACTS.items()}
