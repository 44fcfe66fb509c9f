"""Datasets of the book, all usable offline.

``load_digits`` gives scikit-learn's bundled handwritten digits; ``load_image_dataset``
gives MNIST or Fashion-MNIST where torchvision and the files are at hand, and the
digits (with a one-line notice) where they are not. ``load_colour_digits`` paints the
digits in colour and captions them: the paired image-text data of the CLIP chapters.
"""

from .captions import (
    CAPTION_TEMPLATES,
    COLOUR_NAMES,
    DIGIT_NAMES,
    HELD_OUT_COMBINATIONS,
    CaptionedDigits,
    load_colour_digits,
    make_caption,
)
from .digits import DIGIT_CLASSES, load_digits, split_indices
from .images import SPLITS, ImageDataset, rescale, resize
from .torchvision_sets import DATASETS, default_root, load_image_dataset
from .toy2d import TOY_DATASETS, toy_data

__all__ = [
    "CAPTION_TEMPLATES",
    "COLOUR_NAMES",
    "DATASETS",
    "DIGIT_NAMES",
    "DIGIT_CLASSES",
    "HELD_OUT_COMBINATIONS",
    "SPLITS",
    "TOY_DATASETS",
    "CaptionedDigits",
    "ImageDataset",
    "default_root",
    "load_colour_digits",
    "load_digits",
    "load_image_dataset",
    "make_caption",
    "rescale",
    "resize",
    "split_indices",
    "toy_data",
]
