"""The image dataset every chapter trains on, and the two transforms it needs.

All image data in the book, whatever its source, arrives as an :class:`ImageDataset`:
float32 images of shape (N, 1, size, size) scaled to one ``value_range`` and int64
labels, so a chapter can swap the bundled digits for MNIST without touching its code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLITS = ("train", "test", "all")


@dataclass(eq=False)
class ImageDataset(Dataset):
    """Images and labels held in memory; ``dataset[i]`` is ``(image, label)`` like a TensorDataset.

    ``name`` records the data actually used (``"digits"`` after a fallback), so a
    figure caption never claims MNIST when the run had only the bundled digits.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    value_range: tuple[float, float]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"images ({len(self.images)}) and labels ({len(self.labels)}) differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same pair as ``TensorDataset.tensors``."""
        return self.images, self.labels

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return (
            f"ImageDataset({self.name!r}, split={self.split!r}, {len(self)} images of {shape}, "
            f"{len(self.classes)} classes, values in {self.value_range})"
        )


def check_image_args(split: str, size: int, value_range) -> tuple[float, float]:
    """Validate the arguments every loader shares; return ``value_range`` as a float pair."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer (e.g. 8, 16, 28, 32); got {size!r}")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be a pair (low, high) with low < high, e.g. (-1, 1); got {value_range!r}")
    return lo, hi


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) images to (N, C, size, size).

    Antialiasing when shrinking averages over each output pixel's footprint instead of
    sampling it, so downsampled digits keep their thin strokes rather than aliasing.
    """
    if images.shape[-2:] == (size, size):
        return images
    shrinking = size < images.shape[-1] or size < images.shape[-2]
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def rescale(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map images in [0, 1] linearly onto ``value_range``.

    Diffusion models want data in [-1, 1], the scale of their unit-variance noise;
    clamping first removes the small overshoot bilinear resizing can leave.
    """
    lo, hi = value_range
    return images.clamp(0.0, 1.0) * (hi - lo) + lo
