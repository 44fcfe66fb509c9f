"""Colour digits with captions: a small, real image-text data set that needs no download.

Each real handwritten digit (the bundled scikit-learn digits, or MNIST where it can be had)
is painted with a foreground and a background colour from :data:`COLOUR_NAMES` and
described by a caption generated from its true attributes::

    "a thick red seven on a blue background"

The attributes are the digit, the two colours, and the stroke thickness *measured from the
image* (ink mass above or below the median of its digit class), so every word of a caption
is true of its picture. Captions use one of several :data:`CAPTION_TEMPLATES`, drawn per image
with a fixed seed, so a text encoder must learn that different sentences can say the same thing.

Splits:

* ``"train"``: the training images in every *seen* (digit, foreground colour) combination;
* ``"test"``: unseen images, again in seen combinations;
* ``"compositional"``: unseen images in the combinations training never shows. Each digit
  ``d`` is never painted in the foreground colour :func:`held_out_colour` ``(d)`` =
  ``COLOUR_NAMES[(d + 3) % 6]`` during training (so "a red three" is held out, while "a red
  five" and "a blue three" are seen). Every digit and every colour still appears in training,
  only their pairing is new: a test of compositional generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .caption_text import (
    CAPTION_TEMPLATES,
    COLOUR_NAMES,
    DIGIT_NAMES,
    THICKNESS_NAMES,
    caption_vocabulary,
    captions_for,
    captions_true_of,
    every_caption,
    make_caption,
    template_fields,
)
from .digits import load_digits
from .images import check_image_args

PALETTE = torch.tensor(
    [
        [0.90, 0.10, 0.10],  # red
        [0.10, 0.65, 0.15],  # green
        [0.15, 0.25, 0.95],  # blue
        [0.95, 0.85, 0.10],  # yellow
        [0.60, 0.15, 0.75],  # purple
        [0.05, 0.05, 0.05],  # black
    ]
)
SOURCES = ("digits", "mnist")
CAPTION_SPLITS = ("train", "test", "compositional")
_HOLD_OUT_SHIFT = 3
_SPLIT_STREAM = {"train": 0, "test": 1, "compositional": 2}


def held_out_colour(digit: int) -> int:
    """The foreground colour index that ``digit`` never has in the training split."""
    return (int(digit) + _HOLD_OUT_SHIFT) % len(COLOUR_NAMES)


HELD_OUT_COMBINATIONS = frozenset((d, held_out_colour(d)) for d in range(10))
"""(digit, foreground colour index) pairs reserved for the ``"compositional"`` split."""


def paint(ink: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Colour grey ink maps: ``image = (1 - ink) * background + ink * foreground``.

    ``ink`` is (N, 1, H, W) in [0, 1]; ``foreground`` and ``background`` are colour indices (N,).
    The result is (N, 3, H, W) in [0, 1]: the ink blends linearly between the two colours,
    so anti-aliased stroke edges get the in-between shades a real print would have.
    """
    palette = PALETTE.to(ink.device)
    fg = palette[foreground.to(ink.device)].view(-1, 3, 1, 1)
    bg = palette[background.to(ink.device)].view(-1, 3, 1, 1)
    return (1 - ink) * bg + ink * fg


def _draw_colours(digits: torch.Tensor, split: str, integers) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foreground, background and template indices for ``digits`` under ``split``'s rule.

    ``integers(low, high, n)`` returns n random integers in [low, high) as an int64 tensor.
    The training and test splits never give digit ``d`` its held-out colour; the
    compositional split always does. The background always differs from the foreground.
    """
    n, n_colours = len(digits), len(COLOUR_NAMES)
    held = (digits + _HOLD_OUT_SHIFT) % n_colours
    if split == "compositional":
        foreground = held
    else:  # uniform over the colours other than the held-out one
        foreground = (held + integers(1, n_colours, n)) % n_colours
    background = (foreground + integers(1, n_colours, n)) % n_colours
    return foreground, background, integers(0, len(CAPTION_TEMPLATES), n)


def repaint(
    ink: torch.Tensor,
    digits: torch.Tensor,
    thickness: torch.Tensor,
    split: str = "train",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """The same grey digits in fresh colours with fresh captions: ``(images, captions)``.

    Colour augmentation for contrastive training: drawn anew at every step, colours and
    caption templates stop being a property of a particular handwritten digit, so the image
    tower cannot tell training images apart by their paint and must learn their shapes.
    Colours follow ``split``'s rule (by default the training combinations only, so the
    compositional split stays unseen). ``ink`` is (N, 1, H, W) in [0, 1]; ``digits`` and
    ``thickness`` are (N,) indices, as in :class:`CaptionedDigits`. Draws use ``generator``
    (a CPU generator; the global one by default); the images are on ``ink``'s device.
    """
    if split not in CAPTION_SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, CAPTION_SPLITS))}; got {split!r}")
    if not isinstance(ink, torch.Tensor) or ink.ndim != 4 or ink.shape[1] != 1:
        got = tuple(ink.shape) if isinstance(ink, torch.Tensor) else type(ink).__name__
        raise ValueError(f"ink must be a (N, 1, H, W) tensor of grey digits; got {got}")
    for name, value in (("digits", digits), ("thickness", thickness)):
        if not isinstance(value, torch.Tensor) or value.shape != (len(ink),):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a tensor of shape ({len(ink)},), one per ink map; got {got}")
    digits, thickness = digits.long().cpu(), thickness.long().cpu()

    def integers(low, high, n):
        return torch.randint(low, high, (n,), generator=generator)

    foreground, background, template = _draw_colours(digits, split, integers)
    return paint(ink, foreground, background), captions_for(digits, foreground, background, thickness, template)


@dataclass(eq=False)
class CaptionedDigits(Dataset):
    """Colour digit images with one caption each; ``dataset[i]`` is ``(image, label)`` like ImageDataset.

    ``attributes`` maps ``"digit"``, ``"foreground"``, ``"background"``, ``"thickness"`` and
    ``"template"`` to int64 tensors (N,), indices into :data:`DIGIT_NAMES`,
    :data:`COLOUR_NAMES`, :data:`THICKNESS_NAMES` and :data:`CAPTION_TEMPLATES`.
    ``ink`` keeps the grey (N, 1, H, W) stroke map each image was painted from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    attributes: dict[str, torch.Tensor]
    captions: list[str]
    ink: torch.Tensor = field(repr=False)
    name: str = "digits"
    split: str = "train"
    classes: tuple[str, ...] = DIGIT_NAMES

    def __post_init__(self) -> None:
        n = len(self.labels)
        lengths = [len(self.images), len(self.captions), len(self.ink)] + [len(v) for v in self.attributes.values()]
        if any(length != n for length in lengths):
            raise ValueError(f"images, labels, captions, ink and attributes must all have length {n}; got {lengths}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)``, the same pair as ``ImageDataset.tensors``."""
        return self.images, self.labels

    def attribute_tuple(self, index: int) -> tuple[int, int, int, int]:
        """(digit, foreground, background, thickness) of image ``index``."""
        return tuple(int(self.attributes[k][index]) for k in ("digit", "foreground", "background", "thickness"))

    def caption(self, index: int, template: int | None = None) -> str:
        """Image ``index``'s caption, with its own template or with ``CAPTION_TEMPLATES[template]``."""
        chosen = int(self.attributes["template"][index]) if template is None else template
        return make_caption(*self.attribute_tuple(index), template=chosen)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return f"CaptionedDigits({self.name!r}, split={self.split!r}, {len(self)} images of {shape}, captioned)"


def _full_strength(ink: torch.Tensor) -> torch.Tensor:
    """Scale each ink map so its darkest stroke is 1: resizing blurs the peaks, and the
    foreground colour should appear at full strength somewhere in every image."""
    return ink / ink.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)


def _grey_digits(source: str, split: str, size: int, max_images: int | None):
    """(ink (N,1,size,size) in [0,1], labels, thickness threshold per class, data name) for one image split."""
    image_split = "train" if split == "train" else "test"
    if source == "digits":
        data = load_digits(image_split, size=size, value_range=(0, 1))
        reference = load_digits("train", size=size, value_range=(0, 1))
    else:
        from .torchvision_sets import load_image_dataset

        data = load_image_dataset(source, image_split, size=size, value_range=(0, 1))
        reference = data if image_split == "train" else load_image_dataset(source, "train", size, (0, 1))
    ink, labels = _full_strength(data.images), data.labels
    if max_images is not None:
        ink, labels = ink[:max_images], labels[:max_images]
    # Thickness is relative to the digit's class: a "1" has less ink than an "8" at any stroke width.
    mass = _full_strength(reference.images).sum(dim=(1, 2, 3))
    thresholds = torch.stack([mass[reference.labels == d].median() for d in range(10)])
    return ink.contiguous(), labels, thresholds, data.name


def load_colour_digits(
    split: str = "train",
    size: int = 16,
    seed: int = 0,
    copies: int = 1,
    source: str = "digits",
    max_images: int | None = None,
) -> CaptionedDigits:
    """The colour-digit caption data set (see the module docstring for the splits).

    Each grey digit is painted ``copies`` times, each time with colours drawn at random from
    the combinations the split allows (foreground differs from background) and a caption
    template drawn at random; everything is fixed by ``seed``. ``source="mnist"`` uses
    MNIST where torchvision and the files are at hand and the bundled digits otherwise (one
    printed line; ``dataset.name`` tells which); ``max_images`` keeps the first grey images.
    Images are (N, 3, size, size) floats in [0, 1].
    """
    if split not in CAPTION_SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, CAPTION_SPLITS))}; got {split!r}")
    check_image_args("train", size, (0, 1))
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCES))}; got {source!r}")
    for name, value, minimum in (("seed", seed, 0), ("copies", copies, 1), ("max_images", max_images, 1)):
        if value is None and name == "max_images":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")

    ink, labels, thresholds, data_name = _grey_digits(source, split, size, max_images)
    thickness = (ink.sum(dim=(1, 2, 3)) > thresholds[labels]).long()
    ink, labels, thickness = ink.repeat(copies, 1, 1, 1), labels.repeat(copies), thickness.repeat(copies)

    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])

    def integers(low, high, n):
        return torch.from_numpy(rng.integers(low, high, size=n)).long()

    foreground, background, template = _draw_colours(labels, split, integers)
    attributes = {
        "digit": labels.clone(),
        "foreground": foreground,
        "background": background,
        "thickness": thickness,
        "template": template,
    }
    captions = captions_for(labels, foreground, background, thickness, template)
    images = paint(ink, foreground, background)
    return CaptionedDigits(
        images=images.contiguous(),
        labels=labels,
        attributes=attributes,
        captions=captions,
        ink=ink,
        name=data_name,
        split=split,
    )


__all__ = [
    "CAPTION_SPLITS",
    "CAPTION_TEMPLATES",
    "COLOUR_NAMES",
    "DIGIT_NAMES",
    "HELD_OUT_COMBINATIONS",
    "PALETTE",
    "THICKNESS_NAMES",
    "CaptionedDigits",
    "caption_vocabulary",
    "captions_for",
    "captions_true_of",
    "every_caption",
    "held_out_colour",
    "load_colour_digits",
    "make_caption",
    "paint",
    "repaint",
    "template_fields",
]
