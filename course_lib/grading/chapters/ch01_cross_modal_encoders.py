"""Chapter 01, cross-modal encoders and the Vision Transformer: five graded functions.

The references are the library's tested versions where it has one (``patchify``,
``mean_attention_distance``, the token and parameter counts of a real ``ViT``, the
``l2_normalize`` of the joint space) and the defining formula otherwise. Real-valued
inputs are float64, and so must the answers be.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.grading.spec import Question

# The library's versions of the graded functions: withheld from the sandbox's view of course_lib.
LIBRARY_ANSWERS = ("course_lib/nn/encoders/vit.py",)


# --- patchify ------------------------------------------------------------------------------


def _patchify_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for channels, rows, cols, p in [(3, 2, 3, 4), (1, 4, 4, 2)] + [
        (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 6))) for _ in range(2)
    ]:
        shape = (int(rng.integers(1, 4)), channels, rows * p, cols * p)
        cases.append(dict(images=rng.standard_normal(shape), patch_size=p))
    return cases


def _patchify_reference(images, patch_size):
    from course_lib.nn.encoders.vit import patchify

    return patchify(torch.from_numpy(images), int(patch_size)).numpy()


# --- vit_sizes ------------------------------------------------------------------------------


def _sizes_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(height=224, width=224, patch_size=16, in_channels=3, dim=768)]
    for _ in range(3):
        p = int(rng.integers(1, 17))
        cases.append(
            dict(
                height=p * int(rng.integers(1, 15)),
                width=p * int(rng.integers(1, 15)),
                patch_size=p,
                in_channels=int(rng.integers(1, 5)),
                dim=int(rng.integers(1, 97)),
            )
        )
    return cases


def _sizes_reference(height, width, patch_size, in_channels, dim):
    from course_lib.nn.encoders.vit import ViT, count_parameters

    vit = ViT((int(height), int(width)), int(patch_size), int(in_channels), int(dim), depth=1, heads=1)
    values = int(in_channels) * int(patch_size) ** 2
    return np.array(
        [vit.num_tokens, values, count_parameters(vit.patch_embed), vit.pos_embedding.numel()], dtype=np.int64
    )


# --- cosine_similarity_matrix ---------------------------------------------------------------


def _cosine_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        n, m, d = (int(rng.integers(1, 9)) for _ in range(3))
        # rows of very different lengths: a dot product without normalisation fails these
        a = rng.standard_normal((n, d)) * rng.uniform(0.01, 100, size=(n, 1))
        b = rng.standard_normal((m, d)) * rng.uniform(0.01, 100, size=(m, 1))
        cases.append(dict(a=a, b=b))
    return cases


def _cosine_reference(a, b):
    from course_lib.nn.encoders.projection import l2_normalize

    return (l2_normalize(torch.from_numpy(a)) @ l2_normalize(torch.from_numpy(b)).T).numpy()


# --- attention_weights ----------------------------------------------------------------------


def _attention_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        n, dim, d = int(rng.integers(1, 10)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
        cases.append(
            dict(
                x=rng.standard_normal((n, dim)),
                w_q=rng.standard_normal((dim, d)) / np.sqrt(dim),
                w_k=rng.standard_normal((dim, d)) / np.sqrt(dim),
            )
        )
    return cases


def _attention_reference(x, w_q, w_k):
    scores = (x @ w_q) @ (x @ w_k).T / np.sqrt(w_k.shape[1])
    return torch.from_numpy(scores).softmax(dim=-1).numpy()


# --- mean_attention_distance ----------------------------------------------------------------


def _distance_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        rows, cols, heads = int(rng.integers(1, 6)), int(rng.integers(2, 6)), int(rng.integers(1, 5))
        n = rows * cols
        logits = rng.standard_normal((heads, n, n)) * rng.uniform(0.1, 5)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        cases.append(
            dict(weights=weights / weights.sum(-1, keepdims=True), rows=rows, cols=cols, patch_size=int(rng.integers(1, 17)))
        )
    return cases


def _distance_reference(weights, rows, cols, patch_size):
    from course_lib.nn.encoders.vit import mean_attention_distance

    return mean_attention_distance(torch.from_numpy(weights)[None], (int(rows), int(cols)), int(patch_size)).numpy()


QUESTIONS = [
    Question(
        name="patchify",
        points=2,
        make_cases=_patchify_cases,
        reference=_patchify_reference,
        tensor_args=("images",),
        rtol=0.0,
        atol=0.0,
        dtype="float64",
        summary="(B, C, H, W) -> (B, N, C p^2): patches row by row, each flattened channel first",
    ),
    Question(
        name="vit_sizes",
        points=1,
        make_cases=_sizes_cases,
        reference=_sizes_reference,
        rtol=0.0,
        atol=0.0,
        summary="[tokens incl. class token, values per patch, patch-embedding and position-embedding parameters]",
    ),
    Question(
        name="cosine_similarity_matrix",
        points=2,
        make_cases=_cosine_cases,
        reference=_cosine_reference,
        tensor_args=("a", "b"),
        dtype="float64",
        summary="(N, M) cosine similarities of the rows of a and b",
    ),
    Question(
        name="attention_weights",
        points=2,
        make_cases=_attention_cases,
        reference=_attention_reference,
        tensor_args=("x", "w_q", "w_k"),
        dtype="float64",
        summary="softmax(x w_q (x w_k)^T / sqrt(d)) of one head, rows summing to 1",
    ),
    Question(
        name="mean_attention_distance",
        points=2,
        make_cases=_distance_cases,
        reference=_distance_reference,
        tensor_args=("weights",),
        dtype="float64",
        summary="attention-weighted distance between patch centres in pixels, averaged over queries; (heads,)",
    ),
]
