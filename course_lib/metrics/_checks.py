"""Argument checks shared by the metrics: clear errors that name the argument."""

from __future__ import annotations

import numpy as np


def as_float64(array, name: str) -> np.ndarray:
    """``array`` (tensor, array or nested list) as a finite float64 NumPy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().double().numpy()
    if isinstance(array, (str, bytes)) or array is None:
        raise TypeError(f"{name} must be numeric (a tensor or an array); got {type(array).__name__}")
    try:
        out = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric (a tensor or an array); got {type(array).__name__}") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains nan or inf")
    return out


def check_features(features, name: str, min_rows: int = 1) -> np.ndarray:
    """(N, D) features with N >= ``min_rows`` and D >= 1, as float64."""
    x = as_float64(features, name)
    if x.ndim != 2 or x.shape[1] < 1 or len(x) < min_rows:
        raise ValueError(f"{name} must have shape (N, D) with N >= {min_rows} and D >= 1; got shape {x.shape}")
    return x


def check_probabilities(probs, name: str = "probs") -> np.ndarray:
    """(N, C) rows of class probabilities (non-negative, each summing to 1), as float64."""
    p = check_features(probs, name)
    if p.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns); got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(
            f"{name} must hold probabilities: non-negative rows that sum to 1 (apply softmax to logits first)"
        )
    return p


def check_number(value, name: str, low: float, high: float, *, open_low: bool = False) -> float:
    """A real number in [low, high] (or (low, high] with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    value = float(value)
    ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}]; got {value!r}")
    return value


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)
