"""Measuring generative models: one idea a module.

- ``frechet``: Gaussian statistics of features and the Frechet distance (FID's formula)
- ``classifier``: a digit classifier whose penultimate layer gives the features of a classifier-feature FID
- ``label_scores``: confident share, class spread and Inception score from class probabilities
- ``precision_recall``: k-nearest-neighbour precision and recall (Kynkaanniemi et al. 2019)
- ``clip_score``: the CLIP score of image/text embedding pairs (Hessel et al. 2021)
- ``degrade``: blur, noise and dropped classes, damage whose ranking is obvious to a person
- ``report``: every measure for one set of samples (``evaluate_samples``)
"""

from course_lib.metrics.classifier import DigitClassifier, train_digit_classifier
from course_lib.metrics.clip_score import HESSEL_WEIGHT, clip_score
from course_lib.metrics.degrade import add_noise, drop_classes, gaussian_blur
from course_lib.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
from course_lib.metrics.label_scores import ClassSpread, class_spread, confident_share, inception_score
from course_lib.metrics.precision_recall import inside_manifold, knn_radii, precision_recall
from course_lib.metrics.report import SampleQuality, classifier_fid, evaluate_samples

__all__ = [
    "HESSEL_WEIGHT",
    "ClassSpread",
    "DigitClassifier",
    "SampleQuality",
    "add_noise",
    "class_spread",
    "classifier_fid",
    "clip_score",
    "confident_share",
    "drop_classes",
    "evaluate_samples",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_blur",
    "inception_score",
    "inside_manifold",
    "knn_radii",
    "precision_recall",
    "train_digit_classifier",
]
