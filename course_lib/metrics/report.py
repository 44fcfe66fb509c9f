"""All the sample-quality numbers of the book for one set of samples, from one classifier.

``evaluate_samples`` is what chapter 09 and ``benchmarks/sample_quality.py`` use to put
samplers side by side: each row of their tables is one :class:`SampleQuality`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ._checks import check_int, check_number
from .classifier import DigitClassifier
from .frechet import frechet_distance_from_features
from .label_scores import class_spread, confident_share, inception_score
from .precision_recall import precision_recall


def _check_classifier(classifier) -> DigitClassifier:
    if not isinstance(classifier, torch.nn.Module) or not hasattr(classifier, "embed"):
        raise TypeError(
            f"classifier must be a DigitClassifier (see train_digit_classifier); got {type(classifier).__name__}"
        )
    return classifier


def classifier_fid(classifier: DigitClassifier, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between the classifier features of ``real`` and ``fake`` images.

    Heusel et al.'s (2017) FID with a digit classifier's penultimate layer in place of
    Inception-v3: only comparable between numbers made with the same classifier and
    the same numbers of images (the estimate is biased upwards for small sets).
    """
    classifier = _check_classifier(classifier)
    return frechet_distance_from_features(classifier.embed(real), classifier.embed(fake))


@dataclass(frozen=True)
class SampleQuality:
    """The measures of one set of samples: see :func:`evaluate_samples`."""

    n: int
    confident_share: float
    n_present: int
    min_share: float
    max_share: float
    entropy: float
    fid: float
    precision: float
    recall: float
    inception_score: float

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_samples(
    classifier: DigitClassifier,
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    k: int = 3,
    threshold: float = 0.9,
) -> SampleQuality:
    """Judge ``samples`` (N, 1, H, W) against real ``reference`` images with one classifier.

    Confident share (p(y|x) max above ``threshold``), class spread, Inception score,
    classifier-feature FID, and k-NN precision/recall (Kynkaanniemi et al. 2019) in the
    classifier's feature space.
    """
    classifier = _check_classifier(classifier)
    k = check_int(k, "k", 1)
    threshold = check_number(threshold, "threshold", 0.0, 1.0)
    probs = classifier.probabilities(samples)
    fake_features = classifier.embed(samples)
    real_features = classifier.embed(reference)
    spread = class_spread(probs)
    precision, recall = precision_recall(real_features, fake_features, k=k)
    return SampleQuality(
        n=len(samples),
        confident_share=confident_share(probs, threshold),
        n_present=spread.n_present,
        min_share=spread.min_share,
        max_share=spread.max_share,
        entropy=spread.entropy,
        fid=frechet_distance_from_features(real_features, fake_features),
        precision=precision,
        recall=recall,
        inception_score=inception_score(probs),
    )
