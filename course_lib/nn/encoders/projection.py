"""Projection heads: the small maps from each encoder's own space into the joint space.

CLIP (Radford et al. 2021, sec. 2.4) ends each tower with a linear projection into a
shared embedding space, where cosine similarity compares an image with a sentence. The
projection is the only part that must be trained when an encoder is frozen ("locked"):
that is how a pretrained sentence encoder joins a new image tower (Zhai et al. 2022, LiT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalize(features: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """``x / max(||x||_2, eps)`` along ``dim``: unit vectors, so a dot product is the cosine similarity."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    return F.normalize(features, p=2.0, dim=dim, eps=eps)


class ProjectionHead(nn.Module):
    """Map features of size ``in_dim`` to the joint space of size ``out_dim``.

    ``hidden_dim=None`` gives CLIP's single linear map ``z = W x``; an integer gives a
    two-layer MLP ``W_2 GELU(W_1 x + b_1) + b_2``, which can bend a frozen encoder's space
    more than a linear map can. ``layer_norm=True`` normalises the input features first
    (as CLIP's ``ln_post``/``ln_final`` do), so towers whose outputs have very different
    scales enter the joint space on an equal footing. Any leading dimensions are kept.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, layer_norm: bool = False):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim)):
            if value is None and name == "hidden_dim":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.norm = nn.LayerNorm(in_dim) if layer_norm else nn.Identity()
        if hidden_dim is None:
            self.net = nn.Linear(in_dim, out_dim, bias=False)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
        if features.ndim < 2 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"features must have shape (batch, ..., {self.in_dim}); got {tuple(features.shape)}"
            )
        return self.net(self.norm(features))
