"""Sample-quality metrics: definitions, closed forms, agreement with torchmetrics and scipy, bad input."""

import numpy as np
import pytest
import torch
from scipy import linalg, ndimage

from course_lib import metrics
from course_lib.data import load_digits
from course_lib.metrics import (
    add_noise,
    class_spread,
    classifier_fid,
    clip_score,
    confident_share,
    drop_classes,
    evaluate_samples,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_blur,
    inception_score,
    knn_radii,
    precision_recall,
)


def random_covariance(d, rng):
    a = rng.normal(size=(d, d + 3))
    return a @ a.T / d


# --- Frechet distance ----------------------------------------------------------------


def test_frechet_distance_of_a_gaussian_to_itself_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=5), random_covariance(5, rng)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_one_dimensional_closed_form():
    # For 1-D Gaussians d^2 = (m1 - m2)^2 + (s1 - s2)^2 with s the standard deviations.
    d2 = frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]])
    assert d2 == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2)


def test_frechet_distance_diagonal_closed_form():
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm_and_is_symmetric():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = random_covariance(8, rng), random_covariance(8, rng)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_handles_singular_covariances():
    # Fewer samples than dimensions: a rank-deficient covariance, as with small sample sets.
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 10)), rng.normal(size=(4, 10)) + 1
    d2 = frechet_distance_from_features(a, b)
    assert np.isfinite(d2) and d2 > 0
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-6)  # round-off of sqrt(eigenvalues ~ 0)


def test_feature_statistics_match_numpy():
    x = np.random.default_rng(3).normal(size=(50, 6))
    mu, sigma = feature_statistics(torch.from_numpy(x).float())
    assert mu.dtype == np.float64 and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-5, atol=1e-6)


class FixedFeatures(torch.nn.Module):
    """A frozen random convolutional feature extractor (any network will do for the comparison)."""

    def __init__(self, dim=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(8 * 64, dim)
        ).requires_grad_(False)
        self.num_features = dim

    def forward(self, x):
        return self.net(x)


def test_frechet_distance_matches_torchmetrics_fid_with_the_same_features():
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    extractor = FixedFeatures()
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 1, 8, 8, generator=g) * 2 - 1
    fake = gaussian_blur(real[:150], 0.7) + 0.5
    reference = fid_module.FrechetInceptionDistance(feature=extractor, normalize=True)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected = float(reference.compute())
    with torch.no_grad():
        ours = frechet_distance_from_features(extractor(real), extractor(fake))
    assert expected > 0.1  # the two sets really differ, so the comparison is not 0 == 0
    assert ours == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "args, error",
    [
        (([0.0, 0.0], np.eye(2), [0.0], np.eye(1)), "mu1 and mu2"),
        (([0.0, 0.0], np.eye(3), [0.0, 0.0], np.eye(2)), "sigma1"),
        (([0.0, 0.0], np.eye(2), [0.0, np.nan], np.eye(2)), "mu2 contains nan"),
        ((np.zeros((2, 2)), np.eye(2), np.zeros((2, 2)), np.eye(2)), "1-D"),
    ],
)
def test_frechet_distance_rejects_bad_input(args, error):
    with pytest.raises(ValueError, match=error):
        frechet_distance(*args)


def test_feature_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        feature_statistics(np.zeros(5))
    with pytest.raises(TypeError, match="features must be numeric"):
        feature_statistics("abc")
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance_from_features(np.zeros((3, 2)), np.zeros((3, 4)))


# --- precision and recall --------------------------------------------------------------


def brute_force_precision_recall(real, fake, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def covered(queries, support):
        d = np.linalg.norm(queries[:, None] - support[None], axis=-1)
        return (d <= radii(support)[None]).any(axis=1)

    return covered(fake, real).mean(), covered(real, fake).mean()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_the_definition(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(60, 4))
    fake = rng.normal(size=(45, 4)) * 1.5 + 1.0
    expected = brute_force_precision_recall(real, fake, k)
    assert precision_recall(real, fake, k=k) == pytest.approx(expected)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # a case that can tell right from wrong


def test_knn_radii_match_sklearn():
    neighbors = pytest.importorskip("sklearn.neighbors")
    x = np.random.default_rng(4).normal(size=(40, 3))
    distances, _ = neighbors.NearestNeighbors(n_neighbors=4).fit(x).kneighbors(x)
    np.testing.assert_allclose(knn_radii(x, k=3), distances[:, 3])


def test_precision_recall_separate_quality_from_coverage():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(10, 5)) * 10
    real = np.concatenate([c + rng.normal(size=(30, 5)) for c in centres])
    same = np.concatenate([c + rng.normal(size=(30, 5)) for c in centres])
    half_the_modes = np.concatenate([c + rng.normal(size=(60, 5)) for c in centres[:5]])
    far_away = real + 100
    p_same, r_same = precision_recall(real, same)
    p_half, r_half = precision_recall(real, half_the_modes)
    assert p_same > 0.8 and r_same > 0.8
    assert p_half > 0.8 and r_half < 0.6  # dropped modes: still precise, no longer covering
    assert precision_recall(real, far_away) == (0.0, 0.0)
    assert precision_recall(real, real) == (1.0, 1.0)


def test_precision_recall_reject_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="k must be smaller"):
        precision_recall(x, x, k=5)
    with pytest.raises(ValueError, match="k must be an integer"):
        precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="same feature dimension"):
        precision_recall(x, np.zeros((5, 2)))


# --- scores from class probabilities ----------------------------------------------------


def test_inception_score_extremes():
    one_hot_all_classes = np.eye(10)[np.arange(100) % 10]
    assert inception_score(one_hot_all_classes) == pytest.approx(10.0, rel=1e-6)
    assert inception_score(np.eye(10)[np.zeros(50, dtype=int)]) == pytest.approx(1.0)
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)
    blurry = 0.5 * one_hot_all_classes + 0.05
    assert 1.0 < inception_score(blurry) < 10.0


def test_confident_share_and_class_spread():
    probs = np.array([[0.95, 0.05, 0.0], [0.5, 0.5, 0.0], [0.0, 0.05, 0.95], [0.1, 0.9, 0.0]])
    assert confident_share(probs, 0.9) == 0.5  # 0.9 itself is not above the threshold
    spread = class_spread(probs)
    np.testing.assert_allclose(spread.shares, [0.5, 0.25, 0.25])
    assert (spread.n_present, spread.min_share, spread.max_share) == (3, 0.25, 0.5)
    assert spread.entropy == pytest.approx(1.5)
    from_labels = class_spread(np.array([0, 0, 1]), n_classes=4)
    assert from_labels.n_present == 2 and not from_labels.all_present and from_labels.min_share == 0.0


def test_label_scores_reject_bad_input():
    with pytest.raises(ValueError, match="probabilities"):
        confident_share(np.array([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="threshold"):
        confident_share(np.array([[0.5, 0.5]]), threshold=1.5)
    with pytest.raises(ValueError, match="n_classes is needed"):
        class_spread(np.array([0, 1]))
    with pytest.raises(ValueError, match="integers in"):
        class_spread(np.array([0, 7]), n_classes=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        inception_score(np.ones((4, 1)))


# --- CLIP score ----------------------------------------------------------------------------


def test_clip_score_definition():
    images = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    texts = np.array([[3.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    per_pair = clip_score(images, texts, reduction="none")
    np.testing.assert_allclose(per_pair, 2.5 * np.array([1.0, np.sqrt(0.5), 0.0]))  # negative cosine -> 0
    assert clip_score(images, texts) == pytest.approx(per_pair.mean())
    assert clip_score(images, texts, w=100) == pytest.approx(per_pair.mean() * 40)
    assert clip_score(torch.tensor(images) * 7, torch.tensor(texts)) == pytest.approx(per_pair.mean())


def test_clip_score_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        clip_score(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="all-zero"):
        clip_score(np.zeros((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="w must be"):
        clip_score(np.ones((1, 4)), np.ones((1, 4)), w=0)
    with pytest.raises(ValueError, match="reduction"):
        clip_score(np.ones((1, 4)), np.ones((1, 4)), reduction="sum")


# --- damage -----------------------------------------------------------------------------------


def test_gaussian_blur_matches_scipy():
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (0.5, 1.0):
        expected = np.stack([ndimage.gaussian_filter(img[0], sigma, mode="nearest", truncate=3.0) for img in x.numpy()])
        np.testing.assert_allclose(gaussian_blur(x, sigma)[:, 0].numpy(), expected, atol=1e-12)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_noise_and_dropped_classes():
    x = torch.zeros(100, 1, 8, 8)
    noisy = add_noise(x, 0.5, torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(0.5, rel=0.05) and noisy.abs().max() <= 1.0
    labels = torch.arange(100) % 10
    images = labels.float().view(-1, 1, 1, 1).expand(100, 1, 8, 8)
    kept = drop_classes(images, labels, [2, 7], torch.Generator().manual_seed(0))
    assert kept.shape == images.shape and set(kept[:, 0, 0, 0].tolist()) == {2.0, 7.0}
    with pytest.raises(ValueError, match="keep must name"):
        drop_classes(images, labels, [11])
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        gaussian_blur(torch.zeros(8, 8), 1.0)


# --- the digit classifier and the full report -----------------------------------------------


@pytest.fixture(scope="module")
def digits_and_classifier():
    train, test = load_digits("train"), load_digits("test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and much faster on a busy machine
    try:
        classifier = metrics.train_digit_classifier(train.images, train.labels, steps=250, seed=0, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return train, test, classifier


def test_digit_classifier_learns_and_exposes_features(digits_and_classifier):
    train, test, classifier = digits_and_classifier
    assert classifier.accuracy(test.images, test.labels) > 0.9
    features = classifier.embed(test.images[:7])
    assert features.shape == (7, classifier.num_features) and features.dtype == np.float64
    probs = classifier.probabilities(test.images[:7])
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_metrics_rank_damaged_digits_as_a_person_would(digits_and_classifier):
    train, test, classifier = digits_and_classifier
    g = torch.Generator().manual_seed(0)
    damaged = [test.images, gaussian_blur(test.images, 0.6), gaussian_blur(test.images, 1.2)]
    fids = [classifier_fid(classifier, train.images, x) for x in damaged]
    assert fids[0] < fids[1] < fids[2]
    clean = evaluate_samples(classifier, test.images, train.images)
    noisy = evaluate_samples(classifier, add_noise(test.images, 0.6, g), train.images)
    two_classes = evaluate_samples(classifier, drop_classes(test.images, test.labels, [3, 7], g), train.images)
    assert clean.fid < noisy.fid and clean.confident_share > noisy.confident_share
    assert clean.n_present == 10 and two_classes.n_present < 10
    assert two_classes.recall < 0.5 * clean.recall  # mode dropping shows in recall ...
    assert two_classes.precision > 0.8 * clean.precision  # ... not in precision


def test_classifier_functions_reject_bad_input(digits_and_classifier):
    _, test, classifier = digits_and_classifier
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        classifier.embed(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        classifier.probabilities(np.zeros((3, 1, 8, 8)))
    with pytest.raises(TypeError, match="DigitClassifier"):
        classifier_fid(object(), test.images, test.images)
    with pytest.raises(ValueError, match="both images and labels"):
        metrics.train_digit_classifier(test.images)
