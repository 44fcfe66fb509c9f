"""CLIP score: how well an image matches its text, read off a joint embedding space.

Hessel et al. (2021) score an image v against a caption c with a CLIP model's
embeddings as ``w * max(cos(v, c), 0)`` and average over the pairs. They take
w = 2.5 to stretch the typical cosines of about 0.2-0.4 over a wider range;
text-to-image papers and torchmetrics' ``CLIPScore`` use w = 100 instead, so always
say which w a number was computed with.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_features, check_number

HESSEL_WEIGHT = 2.5  # Hessel et al. (2021); torchmetrics uses 100


def clip_score(image_emb, text_emb, w: float = HESSEL_WEIGHT, reduction: str = "mean"):
    """CLIP-S = w * max(cos(image, text), 0) for each row pair (Hessel et al. 2021, eq. 1).

    ``image_emb`` and ``text_emb`` are (N, D) embeddings, row i of one paired with row i
    of the other; they need not be normalised. ``reduction="mean"`` returns the mean
    over the pairs as a float, ``"none"`` an array of the N per-pair scores.
    """
    images = check_features(image_emb, "image_emb")
    texts = check_features(text_emb, "text_emb")
    if images.shape != texts.shape:
        raise ValueError(
            f"image_emb and text_emb must have the same shape (N pairs, D); got {images.shape} and {texts.shape}"
        )
    w = check_number(w, "w", 0.0, np.inf, open_low=True)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    norms = np.linalg.norm(images, axis=1) * np.linalg.norm(texts, axis=1)
    if np.any(norms == 0):
        raise ValueError("image_emb and text_emb must not contain all-zero embeddings (their cosine is undefined)")
    cos = (images * texts).sum(axis=1) / norms
    per_pair = w * np.clip(cos, 0.0, None)
    return float(per_pair.mean()) if reduction == "mean" else per_pair
