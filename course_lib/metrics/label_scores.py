"""Scores computed from a classifier's class probabilities p(y | x) for each sample.

A classifier trained on real data is a cheap, automatic judge of samples: a good sample
of a digit is one the classifier recognises confidently, and a good model produces all
ten digits about equally often. The Inception score (Salimans et al. 2016) folds both
ideas into one number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import as_float64, check_int, check_number, check_probabilities


def confident_share(probs, threshold: float = 0.9) -> float:
    """The share of samples whose most probable class has probability above ``threshold``.

    ``probs`` is (N, C), one row of class probabilities per sample.
    """
    p = check_probabilities(probs)
    threshold = check_number(threshold, "threshold", 0.0, 1.0)
    return float((p.max(axis=1) > threshold).mean())


@dataclass(frozen=True)
class ClassSpread:
    """How the samples spread over the classes (each sample counted as its most probable class).

    ``shares[c]`` is the share of samples labelled c; ``entropy`` is the entropy of
    ``shares`` in bits, at most log2(C) = 3.32 bits for ten equally frequent digits.
    """

    shares: np.ndarray
    min_share: float
    max_share: float
    n_present: int
    entropy: float

    @property
    def all_present(self) -> bool:
        return self.n_present == len(self.shares)


def class_spread(probs_or_labels, n_classes: int | None = None) -> ClassSpread:
    """Share of each class among the samples, and summaries of how even it is.

    Takes either (N, C) class probabilities (each sample counts as its argmax) or (N,)
    integer labels with ``n_classes``. A model that drops modes (Salimans et al. 2016
    call it mode collapse) shows classes with share 0.
    """
    array = as_float64(probs_or_labels, "probs_or_labels")
    if array.ndim == 2:
        p = check_probabilities(array, "probs_or_labels")
        if n_classes is not None and n_classes != p.shape[1]:
            raise ValueError(f"n_classes={n_classes} does not match the {p.shape[1]} columns of the probabilities")
        n_classes = p.shape[1]
        labels = p.argmax(axis=1)
    elif array.ndim == 1:
        if n_classes is None:
            raise ValueError("n_classes is needed when probs_or_labels holds integer labels")
        n_classes = check_int(n_classes, "n_classes", 2)
        if len(array) == 0 or np.any(array != np.round(array)) or array.min() < 0 or array.max() >= n_classes:
            raise ValueError(f"labels must be a non-empty array of integers in [0, {n_classes}); got {array[:5]}...")
        labels = array.astype(np.int64)
    else:
        raise ValueError(
            f"probs_or_labels must be (N, C) probabilities or (N,) integer labels; got shape {array.shape}"
        )
    counts = np.bincount(labels, minlength=n_classes)
    shares = counts / counts.sum()
    nonzero = shares[shares > 0]
    return ClassSpread(
        shares=shares,
        min_share=float(shares.min()),
        max_share=float(shares.max()),
        n_present=int((counts > 0).sum()),
        entropy=float(-(nonzero * np.log2(nonzero)).sum()),
    )


def inception_score(probs, eps: float = 1e-12) -> float:
    """exp(E_x KL(p(y|x) || p(y))), with p(y) the mean of the rows (Salimans et al. 2016).

    High when each sample is classified confidently (sharp p(y|x)) and the classes are
    used evenly (broad p(y)); it ranges from 1 to the number of classes C. It never
    looks at real data, so it cannot tell a model that copies one perfect image per
    class from a good one. ``eps`` guards log(0).
    """
    p = check_probabilities(probs)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))
