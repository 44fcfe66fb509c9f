"""Deliberate damage to real images, for checking that a metric ranks samples as a person would.

A metric is only useful if it agrees with human judgment where that judgment is not in
doubt. Blurring real digits, adding noise to them or removing whole classes gives sample
sets whose order is obvious by construction: more damage is worse. A metric that does
not rank them in that order should not be trusted to rank models either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_number


def _check(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (N, C, H, W)")
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) with N >= 1; got {tuple(images.shape)}")
    return images


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels (0: unchanged).

    Separable: a 1-D kernel of half-width round(3 sigma) along rows, then columns, with
    replicated borders so the background of a digit stays background (the same result
    as ``scipy.ndimage.gaussian_filter(..., mode="nearest", truncate=3)``).
    """
    images = _check(images)
    sigma = check_number(sigma, "sigma", 0.0, 100.0)
    radius = int(3 * sigma + 0.5)
    if radius == 0:  # the kernel would be a single tap: no blur
        return images.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def add_noise(
    images: torch.Tensor, std: float, generator: torch.Generator | None = None, value_range=(-1.0, 1.0)
) -> torch.Tensor:
    """Add Gaussian pixel noise of standard deviation ``std`` and clip back into ``value_range``."""
    images = _check(images)
    std = check_number(std, "std", 0.0, 100.0)
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high; got {value_range!r}")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + std * noise).clamp(lo, hi)


def drop_classes(
    images: torch.Tensor, labels: torch.Tensor, keep, generator: torch.Generator | None = None
) -> torch.Tensor:
    """As many images as given, drawn (with replacement) only from the classes in ``keep``.

    Imitates mode dropping: every image is still a real digit, but the set covers only
    some classes.
    """
    images = _check(images)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},); got {tuple(labels.shape)}")
    keep = torch.as_tensor(list(keep), dtype=labels.dtype)
    pool = torch.nonzero(torch.isin(labels, keep)).flatten()
    if len(pool) == 0:
        raise ValueError(f"keep must name at least one class present in labels; got {keep.tolist()}")
    pick = torch.randint(len(pool), (len(images),), generator=generator)
    return images[pool[pick]].clone()
