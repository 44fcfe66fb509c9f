"""Precision and recall of a generative model with k-nearest-neighbour balls.

Kynkaanniemi et al. (2019) estimate the real and the generated data manifolds in a
feature space as unions of balls: each feature vector phi gets a ball whose radius is
the distance to its k-th nearest neighbour within its own set. Then

* precision = the share of generated samples that fall inside the real manifold
  (how many samples look real: quality), and
* recall = the share of real samples that fall inside the generated manifold
  (how much of the real data the model can produce: coverage).

FID folds both failures into one number; the pair tells them apart. A model that draws
only a few classes well keeps a high precision and loses recall.
"""

from __future__ import annotations

import numpy as np
import torch

from ._checks import check_features, check_int


def knn_radii(features, k: int = 3) -> np.ndarray:
    """Distance from each row of ``features`` to its k-th nearest other row (Kynkaanniemi et al. 2019, eq. 2).

    The point itself (distance 0) is not counted as a neighbour, so ``k=1`` is the
    distance to the closest other point.
    """
    x = torch.from_numpy(check_features(features, "features"))
    k = check_int(k, "k", 1)
    if k >= len(x):
        raise ValueError(f"k must be smaller than the number of feature vectors ({len(x)}); got {k}")
    distances = torch.cdist(x, x)
    # the k+1 smallest distances include the point's zero distance to itself
    return distances.kthvalue(k + 1, dim=1).values.numpy()


def inside_manifold(queries, support, radii) -> np.ndarray:
    """Whether each query lies in at least one ball ``|query - support_j| <= radii_j`` (eq. 1).

    Returns a boolean array, one entry per row of ``queries``.
    """
    q = torch.from_numpy(check_features(queries, "queries"))
    s = torch.from_numpy(check_features(support, "support"))
    r = torch.from_numpy(np.asarray(radii, dtype=np.float64))
    if q.shape[1] != s.shape[1]:
        raise ValueError(f"queries and support must have the same feature dimension; got {q.shape[1]} and {s.shape[1]}")
    if r.shape != (len(s),):
        raise ValueError(f"radii must give one radius per support row ({len(s)}); got shape {tuple(r.shape)}")
    inside = torch.zeros(len(q), dtype=torch.bool)
    for start in range(0, len(q), 1024):  # bounds the (queries x support) distance matrix
        block = torch.cdist(q[start : start + 1024], s)
        inside[start : start + 1024] = (block <= r).any(dim=1)
    return inside.numpy()


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` against ``real`` features (Kynkaanniemi et al. 2019).

    ``real`` (N, D) and ``fake`` (M, D) are feature vectors (e.g. a classifier's
    penultimate layer); ``k`` sets the ball radii (the paper uses k = 3). Returns
    ``(precision, recall)``, each in [0, 1]. The estimates depend on N, M and k, so only
    compare numbers computed with the same sizes.
    """
    real = check_features(real, "real", min_rows=2)
    fake = check_features(fake, "fake", min_rows=2)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must have the same feature dimension; got {real.shape[1]} and {fake.shape[1]}")
    k = check_int(k, "k", 1)
    if k >= min(len(real), len(fake)):
        raise ValueError(f"k must be smaller than both set sizes ({len(real)} real, {len(fake)} fake); got {k}")
    precision = inside_manifold(fake, real, knn_radii(real, k)).mean()
    recall = inside_manifold(real, fake, knn_radii(fake, k)).mean()
    return float(precision), float(recall)
