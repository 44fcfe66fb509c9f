"""Datasets of the book, all usable offline.

``load_digits`` gives scikit-learn's bundled handwritten digits; ``load_image_dataset``
gives MNIST or Fashion-MNIST where torchvision and the files are at hand, and the
digits (with a one-line notice) where they are not.
"""

from .digits import DIGIT_CLASSES, load_digits, split_indices
from .images import SPLITS, ImageDataset, rescale, resize
from .torchvision_sets import DATASETS, default_root, load_image_dataset

__all__ = [
    "DATASETS",
    "DIGIT_CLASSES",
    "SPLITS",
    "ImageDataset",
    "default_root",
    "load_digits",
    "load_image_dataset",
    "rescale",
    "resize",
    "split_indices",
]
