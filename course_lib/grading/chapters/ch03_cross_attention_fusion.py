"""Chapter 03, cross-attention and multimodal fusion: five graded functions.

Masked attention weights, single-head cross-attention, late fusion over the present
modalities, the modality-dropout mask and the multisensory enhancement index. Inputs are
float64 (masks bool); the references are written out here from their formulas, or are
``course_lib.nn.fusion``'s tested versions, which the sandbox withholds.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.grading.spec import Question

# The library's versions of late_fusion and modality_dropout_mask: withheld from the sandbox's view of course_lib.
LIBRARY_ANSWERS = ("course_lib/nn/fusion.py",)


def _size(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))


# --- attention_weights ----------------------------------------------------------------


def _weights_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for scale in (1.0, 1.0, 3.0, 0.2):
        b, n, m, d = _size(rng, 1, 3), _size(rng, 1, 6), _size(rng, 1, 7), _size(rng, 1, 16)
        mask = rng.random((b, n, m)) < 0.7
        mask[..., int(rng.integers(m))] = True  # every query may attend to at least one key
        cases.append(dict(q=scale * rng.standard_normal((b, n, d)), k=rng.standard_normal((b, m, d)), mask=mask))
    cases[0]["mask"] = np.ones_like(cases[0]["mask"])  # no key masked: plain softmax
    return cases


def _weights_reference(q, k, mask):
    q, k, mask = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(mask)
    scores = q @ k.transpose(-2, -1) / np.sqrt(q.shape[-1])
    return scores.masked_fill(~mask, float("-inf")).softmax(-1).numpy()


# --- cross_attention ------------------------------------------------------------------


def _cross_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        b, n, m = _size(rng, 1, 3), _size(rng, 1, 6), _size(rng, 1, 7)
        dx, dc, dk, dv, do = (_size(rng, 1, 10) for _ in range(5))
        cases.append(
            dict(
                x=rng.standard_normal((b, n, dx)),
                context=rng.standard_normal((b, m, dc)),
                w_q=rng.standard_normal((dx, dk)) / np.sqrt(dx),
                w_k=rng.standard_normal((dc, dk)) / np.sqrt(dc),
                w_v=rng.standard_normal((dc, dv)),
                w_o=rng.standard_normal((dv, do)),
            )
        )
    return cases


def _cross_reference(x, context, w_q, w_k, w_v, w_o):
    q, k, v = x @ w_q, context @ w_k, context @ w_v
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ v @ w_o


# --- late_fusion ----------------------------------------------------------------------


def _late_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for modalities in (2, 2, 3, 4):
        b, k = _size(rng, 1, 8), _size(rng, 2, 10)
        present = rng.random((b, modalities)) < 0.6
        empty = ~present.any(1)
        present[empty, rng.integers(modalities, size=int(empty.sum()))] = True
        cases.append(dict(logits=3 * rng.standard_normal((b, modalities, k)), present=present))
    cases[0]["present"] = np.ones_like(cases[0]["present"])
    return cases


def _late_reference(logits, present):
    from course_lib.nn.fusion import late_fusion

    return late_fusion(torch.from_numpy(logits), torch.from_numpy(present)).numpy()


# --- modality_dropout_mask ------------------------------------------------------------


def _dropout_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for modalities, p in ((2, float(rng.uniform(0.2, 0.8))), (2, 0.0), (3, float(rng.uniform(0.3, 0.9))), (2, 1.0)):
        cases.append(dict(uniform=rng.random((_size(rng, 4, 20), modalities)), p=p))
    return cases


def _dropout_reference(uniform, p):
    from course_lib.nn.fusion import modality_dropout_mask

    return modality_dropout_mask(torch.from_numpy(uniform), p).numpy()


# --- enhancement_index ----------------------------------------------------------------


def _enhancement_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for modalities in (2, 2, 3):
        n = _size(rng, 1, 10)
        unisensory = rng.uniform(0.5, 50.0, size=(n, modalities))
        multisensory = unisensory.max(1) * rng.uniform(0.5, 4.0, size=n)
        cases.append(dict(multisensory=multisensory, unisensory=unisensory))
    return cases


def _enhancement_reference(multisensory, unisensory):
    best = unisensory.max(1)
    return 100 * (multisensory - best) / best


QUESTIONS = [
    Question(
        name="attention_weights",
        points=2,
        make_cases=_weights_cases,
        reference=_weights_reference,
        tensor_args=("q", "k", "mask"),
        dtype="float64",
        summary="softmax(q k^T / sqrt(d)) over the keys, masked keys weight 0; (B, N, M)",
    ),
    Question(
        name="cross_attention",
        points=2,
        make_cases=_cross_cases,
        reference=_cross_reference,
        tensor_args=("x", "context", "w_q", "w_k", "w_v", "w_o"),
        dtype="float64",
        summary="softmax((x w_q)(c w_k)^T / sqrt(d_k)) (c w_v) w_o; (B, N, d_out)",
    ),
    Question(
        name="late_fusion",
        points=1,
        make_cases=_late_cases,
        reference=_late_reference,
        tensor_args=("logits", "present"),
        dtype="float64",
        summary="mean of the present modalities' logits; (B, K)",
    ),
    Question(
        name="modality_dropout_mask",
        points=2,
        make_cases=_dropout_cases,
        reference=_dropout_reference,
        tensor_args=("uniform",),
        rtol=0.0,
        atol=0.0,
        summary="keep where uniform >= p; a row left empty keeps its argmax; bool (B, M)",
    ),
    Question(
        name="enhancement_index",
        points=1,
        make_cases=_enhancement_cases,
        reference=_enhancement_reference,
        tensor_args=("multisensory", "unisensory"),
        dtype="float64",
        summary="100 (R_multi - max_m R_m) / max_m R_m; (N,)",
    ),
]
