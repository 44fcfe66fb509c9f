"""Plotting helpers the chapters share: image grids, loss curves, labelled curves.

Every helper returns its matplotlib Figure and never calls ``plt.show()``, so the same
call works in a notebook, in a script that saves the figure, and in a test. In a
notebook, end the call with ``;`` (or assign it) so the figure is not shown twice.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _to_numpy(array, name: str) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric (a tensor, an array or a list); got {type(array).__name__}") from None


def _as_nhwc(images, value_range, name: str = "images") -> np.ndarray:
    """Images as (N, H, W, C) in [0, 1], C in {1, 3}: the layout ``imshow`` wants."""
    x = _to_numpy(images, name)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(
            f"{name} must have shape (N, C, H, W) with C = 1 or 3, or (N, H, W), with N >= 1; got {x.shape}"
        )
    lo, hi = _check_range(value_range)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).transpose(0, 2, 3, 1)


def _check_range(value_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not lo < hi:
        raise ValueError(f"value_range must be a pair (low, high) with low < high, e.g. (-1, 1); got {value_range!r}")
    return lo, hi


def image_grid(
    images, nrow: int | None = None, value_range=(-1, 1), padding: int = 1, pad_value: float = 1.0
) -> np.ndarray:
    """Tile N images into one array: (H', W') for grey images, (H', W', 3) for colour.

    ``nrow`` images go in each row (torchvision's convention; default about sqrt(N)).
    Values are mapped from ``value_range`` to [0, 1] and clipped, so samples that
    overshoot the data range show as saturated rather than rescaling the whole grid.
    """
    x = _as_nhwc(images, value_range)
    n, h, w, c = x.shape
    ncol = nrow if nrow is not None else math.ceil(math.sqrt(n))
    if isinstance(ncol, bool) or not isinstance(ncol, (int, np.integer)) or ncol < 1:
        raise ValueError(f"nrow must be a positive integer or None; got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer; got {padding!r}")
    ncol = min(ncol, n)
    rows = math.ceil(n / ncol)
    grid = np.full((rows * (h + padding) + padding, ncol * (w + padding) + padding, c), pad_value, dtype=np.float64)
    for i in range(n):
        top, left = padding + (i // ncol) * (h + padding), padding + (i % ncol) * (w + padding)
        grid[top : top + h, left : left + w] = x[i]
    return grid[..., 0] if c == 1 else grid


def _imshow(ax: Axes, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def show_images(
    images,
    nrow: int | None = None,
    titles: Sequence[str] | None = None,
    value_range=(-1, 1),
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Show a batch of images as one grid, or as separate panels when each has a title.

    A single grid keeps 64 samples cheap to draw; per-image ``titles`` (e.g. predicted
    labels) need a panel each, so they cannot be combined with a caller's ``ax``.
    """
    if titles is None:
        fig, ax = _figure(ax, figsize=(5, 5))
        _imshow(ax, image_grid(images, nrow, value_range))
        if title:
            ax.set_title(title)
        return fig
    x = _as_nhwc(images, value_range)
    if len(titles) != len(x):
        raise ValueError(f"titles must give one title per image: {len(titles)} titles for {len(x)} images")
    if ax is not None:
        raise ValueError("ax cannot be combined with titles: per-image titles need a panel per image")
    ncol = min(nrow or math.ceil(math.sqrt(len(x))), len(x))
    rows = math.ceil(len(x) / ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(1.4 * ncol, 1.6 * rows), squeeze=False)
    for i, panel in enumerate(axes.flat):
        if i < len(x):
            _imshow(panel, x[i].squeeze(-1) if x.shape[-1] == 1 else x[i])
            panel.set_title(str(titles[i]), fontsize=9)
        else:
            panel.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_strip(images, labels: Sequence[str], value_range=(-1, 1), title: str | None = None) -> Figure:
    """One row of images with a label under each: a process shown step by step (``"t=250"``)."""
    x = _as_nhwc(images, value_range)
    if len(labels) != len(x):
        raise ValueError(f"labels must give one label per image: {len(labels)} labels for {len(x)} images")
    fig, axes = plt.subplots(1, len(x), figsize=(1.5 * len(x), 1.9), squeeze=False)
    for panel, image, label in zip(axes[0], x, labels):
        _imshow(panel, image.squeeze(-1) if image.shape[-1] == 1 else image)
        panel.set_xlabel(str(label))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def moving_average(values, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values (length ``len(values) - window + 1``)."""
    v = _to_numpy(values, "values").ravel()
    return np.convolve(v, np.ones(window) / window, mode="valid")


def plot_losses(
    losses, smooth: int | None = None, title: str | None = "Training loss", logy: bool = False, ax: Axes | None = None
) -> Figure:
    """Raw per-step losses, faint, under their moving average.

    Minibatch losses are noisy enough to hide a trend; the average over ``smooth``
    steps (default: a twentieth of the run) shows it without hiding the noise level.
    """
    y = _to_numpy(losses, "losses")
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence of per-step losses; got shape {y.shape}")
    window = max(1, len(y) // 20) if smooth is None else smooth
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"smooth must be a positive integer window (in steps) or None; got {smooth!r}")
    window = min(window, len(y))
    fig, ax = _figure(ax, figsize=(6, 3.5))
    steps = np.arange(len(y))
    ax.plot(steps, y, alpha=0.3 if window > 1 else 1.0, lw=1, label="per step")
    if window > 1:
        ax.plot(steps[window - 1 :], moving_average(y, window), lw=2, label=f"mean of {window} steps")
        ax.legend()
    ax.set(xlabel="step", ylabel="loss", yscale="log" if logy else "linear")
    if title:
        ax.set_title(title)
    return fig


def plot_curves(
    x,
    curves: Mapping[str, object],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Several labelled curves over a shared x, e.g. noise schedules over the timestep t."""
    xs = _to_numpy(x, "x")
    if xs.ndim != 1:
        raise ValueError(f"x must be 1-D; got shape {xs.shape}")
    if not curves:
        raise ValueError("curves must map at least one label to its y values")
    fig, ax = _figure(ax, figsize=(6, 3.5))
    for label, values in curves.items():
        y = _to_numpy(values, f"curves[{label!r}]")
        if y.shape != xs.shape:
            raise ValueError(f"curves[{label!r}] has shape {y.shape} but x has shape {xs.shape}")
        ax.plot(xs, y, label=str(label))
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if logy else "linear")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def _figure(ax: Axes | None, figsize) -> tuple[Figure, Axes]:
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax
