"""Chapter 09, measuring generative models: six graded functions on NumPy arrays.

The references are ``course_lib.metrics``' tested versions. Inputs are float64 arrays
built so that every answer is well conditioned: covariances with a bounded condition
number, points without ties in their neighbour distances, probabilities bounded away
from 0 where a logarithm would amplify a student's choice of epsilon.
"""

from __future__ import annotations

import numpy as np

from course_lib.grading.spec import Question

# The library's versions of the graded functions: withheld from the sandbox's view of course_lib.
LIBRARY_ANSWERS = ("course_lib/metrics",)


def _covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random symmetric positive-definite matrix with eigenvalues in [0.1, 3]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * rng.uniform(0.1, 3.0, size=d)) @ q.T


def _points(rng: np.random.Generator, n: int, d: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return scale * rng.standard_normal((n, d)) + shift


def _probabilities(rng: np.random.Generator, n: int, c: int, sharpness: float) -> np.ndarray:
    logits = sharpness * rng.standard_normal((n, c))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


# --- frechet_distance ---------------------------------------------------------------


def _frechet_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(mu1=np.array([1.0]), sigma1=np.array([[4.0]]), mu2=np.array([-2.0]), sigma2=np.array([[9.0]]))]
    for d in (2, int(rng.integers(3, 9)), int(rng.integers(10, 33))):
        cases.append(dict(mu1=rng.normal(size=d), sigma1=_covariance(rng, d),
                          mu2=rng.normal(size=d), sigma2=_covariance(rng, d)))
    same = _covariance(rng, 5)
    mu = rng.normal(size=5)
    cases.append(dict(mu1=mu, sigma1=same, mu2=mu.copy(), sigma2=same.copy()))  # identical: 0
    return cases


def _frechet_reference(mu1, sigma1, mu2, sigma2):
    from course_lib.metrics import frechet_distance

    return np.asarray(frechet_distance(mu1, sigma1, mu2, sigma2))


# --- fid_from_features -------------------------------------------------------------


def _fid_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(3):
        d = int(rng.integers(2, 12))
        cases.append(dict(real=_points(rng, int(rng.integers(40, 200)), d),
                          fake=_points(rng, int(rng.integers(40, 200)), d, rng.uniform(0.5, 2.0), rng.uniform(-1, 1))))
    return cases


def _fid_reference(real, fake):
    from course_lib.metrics import frechet_distance_from_features

    return np.asarray(frechet_distance_from_features(real, fake))


# --- knn_radii ------------------------------------------------------------------------


def _radii_cases(rng: np.random.Generator) -> list[dict]:
    return [dict(features=_points(rng, int(rng.integers(10, 80)), int(rng.integers(1, 8))), k=k)
            for k in (1, 3, int(rng.integers(2, 8)))]


def _radii_reference(features, k):
    from course_lib.metrics import knn_radii

    return knn_radii(features, int(k))


# --- share_inside ---------------------------------------------------------------------


def _share_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for k in (1, 3, int(rng.integers(2, 6))):
        d = int(rng.integers(2, 6))
        real = _points(rng, int(rng.integers(30, 120)), d)
        fake = _points(rng, int(rng.integers(30, 120)), d, rng.uniform(0.4, 1.8), rng.uniform(-0.8, 0.8))
        cases.append(dict(queries=fake, support=real, k=k))  # precision
        cases.append(dict(queries=real, support=fake, k=k))  # recall
    return cases


def _share_reference(queries, support, k):
    from course_lib.metrics import inside_manifold, knn_radii

    return np.asarray(inside_manifold(queries, support, knn_radii(support, int(k))).mean())


# --- inception_score ------------------------------------------------------------------


def _is_cases(rng: np.random.Generator) -> list[dict]:
    c = int(rng.integers(3, 12))
    return [
        dict(probs=_probabilities(rng, int(rng.integers(20, 200)), c, rng.uniform(0.5, 2.0))),
        dict(probs=_probabilities(rng, int(rng.integers(20, 200)), 10, 3.0)),
        dict(probs=np.full((int(rng.integers(5, 30)), c), 1.0 / c)),  # every row the marginal: IS = 1
    ]


def _is_reference(probs):
    from course_lib.metrics import inception_score

    return np.asarray(inception_score(probs))


# --- clip_score -------------------------------------------------------------------------


def _clip_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for w in (2.5, 100.0, float(rng.uniform(0.5, 10.0))):
        n, d = int(rng.integers(3, 40)), int(rng.integers(4, 64))
        images = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=(n, 1))  # not normalised
        texts = 0.6 * images + rng.normal(size=(n, d))  # mostly positive cosines, some negative
        cases.append(dict(image_emb=images, text_emb=texts, w=w))
    return cases


def _clip_reference(image_emb, text_emb, w):
    from course_lib.metrics import clip_score

    return np.asarray(clip_score(image_emb, text_emb, w=float(w)))


QUESTIONS = [
    Question(
        name="frechet_distance",
        points=2,
        make_cases=_frechet_cases,
        reference=_frechet_reference,
        rtol=1e-5,
        atol=1e-6,
        summary="|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), a float",
    ),
    Question(
        name="fid_from_features",
        points=1,
        make_cases=_fid_cases,
        reference=_fid_reference,
        rtol=1e-5,
        atol=1e-6,
        summary="Frechet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets",
    ),
    Question(
        name="knn_radii",
        points=2,
        make_cases=_radii_cases,
        reference=_radii_reference,
        rtol=1e-6,
        atol=1e-9,
        summary="distance from each row to its k-th nearest other row, shape (N,)",
    ),
    Question(
        name="share_inside",
        points=2,
        make_cases=_share_cases,
        reference=_share_reference,
        rtol=0.0,
        atol=1e-9,
        summary="share of query rows inside the union of the support's k-NN balls (precision / recall)",
    ),
    Question(
        name="inception_score",
        points=1,
        make_cases=_is_cases,
        reference=_is_reference,
        rtol=1e-6,
        atol=1e-6,
        summary="exp(mean KL(p(y|x) || p(y))), a float",
    ),
    Question(
        name="clip_score",
        points=1,
        make_cases=_clip_cases,
        reference=_clip_reference,
        rtol=1e-6,
        atol=1e-9,
        summary="mean of w * max(cos(image_i, text_i), 0), a float",
    ),
]
