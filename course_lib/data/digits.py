"""scikit-learn's bundled handwritten digits: real data that needs no download.

1,797 8x8 scans (values 0..16) from 43 writers (UCI "optdigits"). They ship inside
scikit-learn, so every chapter runs offline and in CI on the same real images.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .images import ImageDataset, check_image_args, rescale, resize

DIGIT_CLASSES = tuple(str(d) for d in range(10))


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def split_indices(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices, fixed by ``seed``.

    Written out rather than borrowed from scikit-learn so the split cannot change with a
    library upgrade: every chapter's "test accuracy" is measured on the same images.
    Each class contributes ``round(test_fraction * count)`` (at least one) test images.
    """
    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1 (e.g. 0.2); got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(
    split: str = "train",
    size: int = 8,
    value_range: tuple[float, float] = (-1, 1),
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """The bundled digits as an :class:`ImageDataset` of shape (N, 1, size, size).

    Pixel values 0..16 are mapped linearly to ``value_range``; ``size`` other than 8
    resizes bilinearly (e.g. 16 or 32 so that a U-Net can halve the resolution a few
    times). The default split (80/20, seed 0) is the one every chapter uses.
    """
    lo_hi = check_image_args(split, size, value_range)
    images, labels = _raw_digits()
    train_idx, test_idx = split_indices(labels, test_fraction, seed)
    index = {"train": train_idx, "test": test_idx, "all": np.arange(len(labels))}[split]
    x = torch.from_numpy(images[index] / 16.0).unsqueeze(1)
    x = rescale(resize(x, size), lo_hi)
    return ImageDataset(
        images=x.contiguous(),
        labels=torch.from_numpy(labels[index]),
        classes=DIGIT_CLASSES,
        name="digits",
        split=split,
        value_range=lo_hi,
    )
