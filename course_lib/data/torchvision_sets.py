"""MNIST and Fashion-MNIST when they can be had, the bundled digits when not.

torchvision is optional (its registry builds do not import against the CPU torch used
here) and classrooms are often offline, so a missing package, a missing file or a
failed download becomes one printed line and the bundled digits, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .digits import load_digits
from .images import ImageDataset, check_image_args, rescale, resize

DATASETS = ("digits", "mnist", "fashion_mnist")
_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
DATA_DIR_ENV = "COURSE_DATA_DIR"


def default_root() -> Path:
    """Where downloads are cached: ``$COURSE_DATA_DIR``, else ``~/.cache/course_lib``."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "course_lib").expanduser()


def _torchvision_split(name: str, split: str, root: Path, download: bool):
    """(uint8 images (N, 28, 28), labels, class names) from torchvision; raises if unavailable."""
    from torchvision import datasets  # noqa: PLC0415 - optional, imported only when asked for

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    splits = ("train", "test") if split == "all" else (split,)
    parts = [cls(str(root), train=(s == "train"), download=download) for s in splits]
    images = torch.cat([torch.as_tensor(p.data) for p in parts])
    labels = torch.cat([torch.as_tensor(p.targets) for p in parts]).long()
    return images, labels, tuple(parts[0].classes)


def load_image_dataset(
    name: str = "digits",
    split: str = "train",
    size: int = 28,
    value_range: tuple[float, float] = (-1, 1),
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> ImageDataset:
    """``name``'s images as an :class:`ImageDataset`, falling back to the bundled digits.

    MNIST and Fashion-MNIST keep their official train/test split ("all" joins both).
    They are read from ``root`` (default :func:`default_root`) and fetched only when
    ``download=True``. Check ``dataset.name`` for what was actually loaded.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
    lo_hi = check_image_args(split, size, value_range)
    if name == "digits":
        return load_digits(split, size, lo_hi)
    try:
        images, labels, classes = _torchvision_split(name, split, Path(root) if root else default_root(), download)
    except ImportError:
        reason = "torchvision is not installed"
    except Exception as error:  # noqa: BLE001 - a broken build, missing files or no network: all mean "fall back"
        reason = _reason(error, download)
    else:
        x = rescale(resize(images.float().div(255).unsqueeze(1), size), lo_hi)
        return ImageDataset(x.contiguous(), labels, classes, name, split, lo_hi)
    print(f"{_TITLES[name]} not available ({reason}); using the bundled 8x8 digits instead.")
    return load_digits(split, size, lo_hi)


def _reason(error: Exception, download: bool) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 80:
        text = text[:77] + "..."
    hint = "" if download else "; pass download=True to fetch it"
    return f"{type(error).__name__}: {text}{hint}"
