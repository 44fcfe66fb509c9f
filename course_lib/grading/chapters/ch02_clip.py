"""Chapter 02, contrastive learning and joint embedding spaces: five graded functions.

The references are ``course_lib.clip``'s tested versions (the loss is checked against
open_clip's in ``tests/test_clip.py``) or a few lines of torch written here. Inputs are
float64, and unit vectors where the question says so.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.grading.spec import Question

# The library's versions of the graded functions: withheld from the sandbox's view of course_lib.
LIBRARY_ANSWERS = ("course_lib/clip.py",)


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --- cosine_similarity_matrix -------------------------------------------------------


def _cosine_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        n, m, d = (int(v) for v in rng.integers(1, 12, size=3))
        scale_a, scale_b = rng.uniform(0.1, 10, size=(n, 1)), rng.uniform(0.1, 10, size=(m, 1))
        cases.append(dict(a=rng.standard_normal((n, d)) * scale_a, b=rng.standard_normal((m, d)) * scale_b))
    return cases


def _cosine_reference(a, b):
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a_unit @ b_unit.T


# --- clip_loss ----------------------------------------------------------------------


def _loss_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for scale in (1.0, 1 / 0.07, float(rng.uniform(1, 100))):
        n, d = int(rng.integers(2, 40)), int(rng.integers(2, 16))
        image = _unit_rows(rng, n, d)
        # partners correlated with their images, so the diagonal matters, and a non-square
        # relation between the terms (a missing transpose changes the answer)
        text = image + rng.uniform(0.3, 2.0) * rng.standard_normal((n, d))
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        cases.append(dict(image_features=image, text_features=text, logit_scale=scale))
    return cases


def _loss_reference(image_features, text_features, logit_scale):
    from course_lib import clip

    loss = clip.contrastive_loss(torch.from_numpy(image_features), torch.from_numpy(text_features), float(logit_scale))
    return loss.numpy()


# --- zero_shot_weights --------------------------------------------------------------


def _weights_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(3):
        c, t, d = int(rng.integers(1, 11)), int(rng.integers(1, 8)), int(rng.integers(2, 16))
        # template embeddings of very different lengths: normalising before averaging matters
        lengths = rng.uniform(0.1, 20, size=(c, t, 1))
        cases.append(dict(prompt_embeddings=rng.standard_normal((c, t, d)) * lengths))
    return cases


def _weights_reference(prompt_embeddings):
    unit = prompt_embeddings / np.linalg.norm(prompt_embeddings, axis=-1, keepdims=True)
    mean = unit.mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=-1, keepdims=True)).T


# --- recall_at_k --------------------------------------------------------------------


def _recall_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for density in (0.05, 0.2, 0.5, 0.0):
        q, m = int(rng.integers(3, 40)), int(rng.integers(3, 40))
        relevant = rng.uniform(size=(q, m)) < density
        cases.append(dict(similarity=rng.standard_normal((q, m)), relevant=relevant, k=int(rng.integers(1, m + 1))))
    # the diagonal case of the chapter, with k = 1
    n = int(rng.integers(3, 30))
    cases.append(dict(similarity=rng.standard_normal((n, n)) + 2 * np.eye(n), relevant=np.eye(n, dtype=bool), k=1))
    return cases


def _recall_reference(similarity, relevant, k):
    top = np.argsort(-similarity, axis=1, kind="stable")[:, : int(k)]
    return np.asarray(np.take_along_axis(relevant, top, axis=1).any(axis=1).mean(), dtype=np.float64)


# --- contrastive_update -------------------------------------------------------------


def _update_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        n, dx, dy = int(rng.integers(2, 30)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
        cases.append(
            dict(
                x=rng.standard_normal((n, dx)),
                y=rng.standard_normal((n, dy)),
                weights=0.3 * rng.standard_normal((dy, dx)),
                scale=float(rng.uniform(0.1, 5)),
            )
        )
    return cases


def _update_reference(x, y, weights, scale):
    """Minus the autograd gradient of the one-directional InfoNCE loss: the formula, checked independently."""
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    w = torch.from_numpy(weights).clone().requires_grad_()
    logits = float(scale) * x_t @ w.T @ y_t.T
    torch.nn.functional.cross_entropy(logits, torch.arange(len(x_t))).backward()
    return (-w.grad).numpy()


QUESTIONS = [
    Question(
        name="cosine_similarity_matrix",
        points=1,
        make_cases=_cosine_cases,
        reference=_cosine_reference,
        tensor_args=("a", "b"),
        dtype="float64",
        summary="(N, M) cosine similarities of the rows of a and b (normalise first)",
    ),
    Question(
        name="clip_loss",
        points=2,
        make_cases=_loss_cases,
        reference=_loss_reference,
        tensor_args=("image_features", "text_features"),
        dtype="float64",
        summary="symmetric CLIP loss: mean of the row and column cross-entropies of s I T^T",
    ),
    Question(
        name="zero_shot_weights",
        points=2,
        make_cases=_weights_cases,
        reference=_weights_reference,
        tensor_args=("prompt_embeddings",),
        dtype="float64",
        summary="(D, C): normalised mean of each class's normalised prompt embeddings",
    ),
    Question(
        name="recall_at_k",
        points=2,
        make_cases=_recall_cases,
        reference=_recall_reference,
        tensor_args=("similarity", "relevant"),
        rtol=0.0,
        atol=1e-9,
        summary="share of queries with a relevant item among their k best; a Python float",
    ),
    Question(
        name="contrastive_update",
        points=2,
        make_cases=_update_cases,
        reference=_update_reference,
        tensor_args=("x", "y", "weights"),
        dtype="float64",
        summary="scale/N * sum_i (y_i - sum_j p_ij y_j) x_i^T (minus the InfoNCE gradient)",
    ),
]
