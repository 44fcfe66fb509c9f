"""A classifier trained on real digits: the feature extractor and judge of the sample metrics.

FID is defined with Inception-v3 features (Heusel et al. 2017), but Inception's weights
cannot be downloaded offline and were never trained on 8x8 digits. Any network trained
on real data of the right kind gives a Frechet distance in its own feature space; for
digits a small convolutional classifier does, and its class probabilities also give
the confident share, the class spread and the Inception score of a set of samples.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime, train
from ._checks import check_int


def _check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 1, H, W); got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 1 or len(images) == 0:
        raise ValueError(f"{name} must have shape (N, 1, H, W) with N >= 1; got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point (values in [-1, 1]); got {images.dtype}")
    return images


class DigitClassifier(nn.Module):
    """Two convolutions, a ``feature_dim``-wide penultimate layer, and a linear read-out.

    Input: (N, 1, H, W) images in [-1, 1] (the book's digits are 8x8; adaptive pooling to
    4x4 lets other sizes through). ``forward`` returns logits, :meth:`features` the
    penultimate activations (the "Inception pool3" of our FID), :meth:`probabilities`
    the softmax.
    """

    def __init__(self, n_classes: int = 10, width: int = 16, feature_dim: int = 64):
        super().__init__()
        check_int(n_classes, "n_classes", 2)
        check_int(width, "width", 1)
        check_int(feature_dim, "feature_dim", 1)
        self.num_features = feature_dim  # the attribute torchmetrics' FID reads from a custom extractor
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(2 * width * 16, feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, (N, feature_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def _batched(self, images: torch.Tensor, fn, batch_size: int) -> np.ndarray:
        images = _check_images(images)
        check_int(batch_size, "batch_size", 1)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = [fn(images[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out).numpy()

    def embed(self, images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """:meth:`features` in eval mode for any number of images, as a float64 (N, D) array."""
        return self._batched(images, self.features, batch_size)

    def probabilities(self, images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities p(y | x) in eval mode, as a float64 (N, C) array."""
        return self._batched(images, lambda x: F.softmax(self(x).double(), dim=1), batch_size)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of ``images`` whose most probable class is ``labels``."""
        probs = self.probabilities(images)
        labels = torch.as_tensor(labels)
        if labels.shape != (len(probs),):
            raise ValueError(f"labels must have shape ({len(probs)},); got {tuple(labels.shape)}")
        return float((probs.argmax(axis=1) == labels.cpu().numpy()).mean())


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by -1, 0 or +1 pixel in each direction (zero padding = background)."""
    lo = x.amin()
    padded = F.pad(x, (1, 1, 1, 1), value=float(lo))
    h, w = x.shape[-2:]
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[..., dy : dy + h, dx : dx + w]


def train_digit_classifier(
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    feature_dim: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on real digits with cross-entropy and return it in eval mode.

    Defaults to the book's training split of the bundled digits
    (:func:`course_lib.data.load_digits`). Each batch is shifted by up to one pixel
    (the same shift for the whole batch), which makes the judge less brittle towards
    samples that are good digits but not centred exactly like the scans.
    """
    if (images is None) != (labels is None):
        raise ValueError("give both images and labels, or neither (for the bundled digits' training split)")
    if images is None:
        from ..data import load_digits

        images, labels = load_digits("train").tensors
    images = _check_images(images)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),) or labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices of shape ({len(images)},); got {labels.dtype} {tuple(labels.shape)}")
    n_classes = int(labels.max()) + 1
    torch.manual_seed(seed)  # the initial weights
    model = DigitClassifier(n_classes=max(n_classes, 2), feature_dim=feature_dim)
    shift_generator = torch.Generator().manual_seed(seed)

    def loss_fn(net, batch):
        x, y = batch
        return F.cross_entropy(net(_shift(x, shift_generator)), y)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    device = torch.device(device) if device is not None else runtime.device()
    train.fit(model, loss_fn, (images, labels), steps=steps, optimizer=optimizer,
              batch_size=min(batch_size, len(images)), seed=seed, device=device, progress=progress)
    return model.eval()
