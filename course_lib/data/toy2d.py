"""Two-dimensional toy distributions: data whose density and sampling paths can be drawn.

A diffusion model on 2-D points trains in seconds and can be looked at completely: its
samples, the density they form, and the path each one took from noise. The four sets
below are the field's usual test beds (Grathwohl et al. 2019, Lipman et al. 2023): two
clusters with curved shapes, several separated modes, a thin manifold, and sharp edges.

Every set is scaled to mean 0 and unit variance per coordinate (the same affine map for
every draw, fixed from a large reference sample), the scale the unit-variance noise of
the forward process assumes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

TOY_DATASETS = ("moons", "eight_gaussians", "spiral", "checkerboard")


def _raw(name: str, n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    if name == "moons":
        from sklearn.datasets import make_moons

        points, _ = make_moons(n, noise=noise, random_state=int(rng.integers(2**31)))
        return points
    if name == "eight_gaussians":
        angles = 2 * math.pi * rng.integers(0, 8, size=n) / 8
        centres = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return centres + noise * rng.standard_normal((n, 2))
    if name == "spiral":
        # radius grows with angle: one arm of an Archimedean spiral, denser near the centre
        angle = np.sqrt(rng.uniform(0, 1, n)) * 3 * math.pi
        points = np.stack([angle * np.cos(angle), angle * np.sin(angle)], axis=1)
        return points + noise * 3 * math.pi * rng.standard_normal((n, 2))
    # checkerboard: uniform on the 8 dark squares of a 4 x 4 board (Grathwohl et al. 2019)
    x = rng.uniform(-2, 2, n)
    y = rng.uniform(0, 1, n) - 2 * rng.integers(0, 2, n) + np.floor(x) % 2
    return np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))


DEFAULT_NOISE = {"moons": 0.05, "eight_gaussians": 0.1, "spiral": 0.02, "checkerboard": 0.0}


@lru_cache(maxsize=None)
def _standardisation(name: str, noise: float) -> tuple[np.ndarray, np.ndarray]:
    reference = _raw(name, 100_000, np.random.default_rng(12345), noise)
    return reference.mean(axis=0), reference.std(axis=0)


def toy_data(name: str, n: int, seed: int = 0, noise: float | None = None) -> torch.Tensor:
    """``n`` points of the 2-D distribution ``name`` (one of ``TOY_DATASETS``), float32 (n, 2).

    ``seed`` fixes the draw; ``noise`` (the spread around the ideal shape, in the raw
    units of the set) defaults to a value that keeps the shape crisp.
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"name must be one of {', '.join(map(repr, TOY_DATASETS))}, got {name!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of points, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    noise = DEFAULT_NOISE[name] if noise is None else noise
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    points = _raw(name, int(n), np.random.default_rng(seed), float(noise))
    mean, std = _standardisation(name, float(noise))
    return torch.from_numpy((points - mean) / std).float()
