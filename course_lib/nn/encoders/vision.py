"""A small convolutional network: the image encoder the Vision Transformer is measured against.

A CNN is built on two assumptions about images (LeCun et al. 1998): what matters is local
(each unit sees a small window, a 3x3 kernel) and the same anywhere (one kernel slides over
the whole image, so features move with the input). Stacking and pooling grow each unit's
receptive field layer by layer, as along the ventral stream of visual cortex. A ViT assumes
neither: every token may attend to every other from the first layer, and where a patch lies
is only what its learned position embedding tells it. These priors cost the CNN nothing
when they are true and save it from having to learn them from data, which is what chapter
01 measures on the bundled digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CNN(nn.Module):
    """Stages of two 3x3 convolutions (BatchNorm, GELU), 2x2 max-pooling between stages, global average pooling.

    ``channels[k]`` is the width of stage ``k``. ``features(images)`` is the pooled
    (B, channels[-1]) vector (``feature_dim``), what a projection head reads;
    ``num_classes`` adds a linear head and ``forward`` returns logits, else the features.
    ``receptive_fields()`` lists how many input pixels each layer's units see.
    """

    def __init__(self, in_channels: int = 1, num_classes: int | None = None, channels: Sequence[int] = (32, 64)):
        super().__init__()
        channels = tuple(channels) if isinstance(channels, (list, tuple)) else channels
        if not isinstance(channels, tuple) or not channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels
        ):
            raise ValueError(f"channels must be a non-empty sequence of positive integers, got {channels!r}")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_channels, self.channels, self.feature_dim = in_channels, channels, channels[-1]
        layers: list[nn.Module] = []
        width = in_channels
        for stage, out in enumerate(channels):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
                width = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes is not None else None

    @property
    def min_image_size(self) -> int:
        """Smallest input side the pooling stages can halve without reaching zero."""
        return 2 ** (len(self.channels) - 1)

    def _check(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"images must have shape (batch, {self.in_channels}, height, width), got {tuple(images.shape)}"
            )
        if min(images.shape[-2:]) < self.min_image_size:
            raise ValueError(
                f"images of {images.shape[-2]}x{images.shape[-1]} are too small for {len(self.channels)} stages; "
                f"need at least {self.min_image_size}x{self.min_image_size}"
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Global average of the last feature map, (B, feature_dim)."""
        self._check(images)
        return self.body(images).mean(dim=(-2, -1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y = self.features(images)
        return self.head(y) if self.head is not None else y

    def receptive_fields(self) -> list[tuple[str, int]]:
        """``(layer, side in pixels)`` of the input window each unit of that layer depends on.

        With ``r`` the receptive field and ``j`` the input distance between neighbouring
        units, a layer of kernel ``k`` and stride ``s`` gives ``r + (k - 1) j`` and ``j s``
        (Araujo et al. 2019). Global average pooling at the end sees the whole image.
        """
        fields, r, jump, conv = [], 1, 1, 0
        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                k, s = layer.kernel_size[0], layer.stride[0]
                conv += 1
                name = f"conv{conv}"
            elif isinstance(layer, nn.MaxPool2d):
                k = s = layer.kernel_size
                name = f"pool after conv{conv}"
            else:
                continue
            r, jump = r + (k - 1) * jump, jump * s
            fields.append((name, r))
        return fields
