"""The Frechet distance between two Gaussians fitted to feature vectors: the "D" of FID.

Heusel et al. (2017) compare a set of generated images with a set of real ones by
passing both through a network, fitting a Gaussian N(mu, Sigma) to each set of
features, and measuring the Frechet (2-Wasserstein) distance between the Gaussians
(eq. 6 of the paper)::

    d^2 = |mu_1 - mu_2|^2 + tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))

The network is a choice, not part of the formula: Inception-v3 gives "FID"; here a
small classifier trained on real digits gives a classifier-feature FID.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float64, check_features


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divided by N - 1) of N feature vectors, in float64.

    ``features`` is (N, D) with N >= 2. These are the mu and Sigma of the Gaussian that
    FID fits to each set (Heusel et al. 2017), computed the way torchmetrics does.
    """
    x = check_features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (len(x) - 1)
    return mu, sigma


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix, by its eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6).

    The matrix square root term is computed as tr (S1^(1/2) S2 S1^(1/2))^(1/2), which
    has the same eigenvalues as (S1 S2)^(1/2) but is symmetric, so its eigenvalues are
    real and round-off cannot make them complex (scipy's ``sqrtm`` of S1 S2 can). All
    arithmetic is float64: in float32 the two large traces cancel and leave noise.
    Negative eigenvalues from round-off are clipped to zero.
    """
    mu1 = as_float64(mu1, "mu1")
    mu2 = as_float64(mu2, "mu2")
    sigma1 = as_float64(sigma1, "sigma1")
    sigma2 = as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise ValueError(f"mu1 and mu2 must be 1-D vectors of the same length; got shapes {mu1.shape} and {mu2.shape}")
    d = len(mu1)
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise ValueError(f"{name} must be a ({d}, {d}) covariance matrix to match the means; got shape {sigma.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_from_features(features1, features2) -> float:
    """:func:`frechet_distance` between the Gaussians fitted to two sets of (N, D) features."""
    mu1, sigma1 = feature_statistics(features1)
    mu2, sigma2 = feature_statistics(features2)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"features1 and features2 must have the same feature dimension; got {mu1.shape[0]} and {mu2.shape[0]}"
        )
    return frechet_distance(mu1, sigma1, mu2, sigma2)
