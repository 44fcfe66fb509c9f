"""The convolutional pieces a diffusion U-Net is assembled from.

* :class:`ResidualBlock`: two 3x3 convolutions, each after group normalisation and SiLU,
  with the time (and conditioning) embedding added between them, and a shortcut around
  both (He et al. 2016; the "ResNet block" of Ho et al. 2020, appendix B);
* :class:`SpatialAttention`: self-attention over the H*W positions of a feature map, and
  optionally cross-attention to a context sequence (Rombach et al. 2022);
* :class:`Downsample` / :class:`Upsample`: halve or double the resolution.

Every block maps (B, C, H, W) to (B, C', H', W') and takes the embedding ``emb`` of shape
(B, emb_dim) where it needs one, so that a U-Net is a list of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.nn.layers import Attention


def check_groups(channels: int, groups: int, name: str = "channels") -> None:
    """Raise ValueError unless GroupNorm can split ``channels`` into ``groups`` groups."""
    if groups <= 0 or channels % groups:
        raise ValueError(f"{name} ({channels}) must be a positive multiple of groups ({groups})")


class ResidualBlock(nn.Module):
    """``h = conv(SiLU(GN(x))); h += W emb; out = shortcut(x) + conv(dropout(SiLU(GN(h))))``.

    The pre-activation residual block of He et al. (2016, "Identity mappings") with group
    normalisation (Wu & He 2018), which unlike batch normalisation does not depend on the
    batch, as used in the DDPM U-Net (Ho et al. 2020). The embedding of the timestep
    (plus any conditioning) is projected to one bias per channel and added to the
    feature map after the first convolution, so every block knows the noise level.

    The second convolution starts at zero: each block begins as the identity (its
    shortcut), which keeps the variance of a deep stack in check at initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        check_groups(in_channels, groups, "in_channels")
        check_groups(out_channels, groups, "out_channels")
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        # a 1x1 convolution only where the channel count changes; otherwise the identity
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x``: (B, in_channels, H, W); ``emb``: (B, emb_dim) already passed through SiLU."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class SpatialAttention(nn.Module):
    """Self-attention among the H*W positions of a feature map, as a residual branch.

    ``out = x + Attention(GN(x) as H*W tokens of C features)``: every position can read
    every other, which a stack of 3x3 convolutions only achieves after many layers. It
    costs O((HW)^2), so U-Nets use it at low resolution only (Ho et al. 2020 at 16x16).

    With ``context_dim`` a cross-attention layer follows, whose keys and values come from
    a context sequence (B, M, context_dim), e.g. the token embeddings of a caption: the
    text conditioning of latent diffusion (Rombach et al. 2022).
    """

    def __init__(self, channels: int, heads: int = 4, groups: int = 8, context_dim: int | None = None):
        super().__init__()
        check_groups(channels, groups)
        if heads <= 0 or channels % heads:
            raise ValueError(f"channels ({channels}) must be a positive multiple of heads ({heads})")
        self.norm = nn.GroupNorm(groups, channels)
        self.attention = Attention(channels, heads=heads)
        nn.init.zeros_(self.attention.to_out.weight)  # start as the identity, like the residual blocks
        nn.init.zeros_(self.attention.to_out.bias)
        self.context_dim = context_dim
        if context_dim is not None:
            self.cross_norm = nn.LayerNorm(channels)
            self.cross_attention = Attention(channels, heads=heads, context_dim=context_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, C, H, W); ``context``: (B, M, context_dim), needed iff ``context_dim`` was given."""
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        out = x.flatten(2).transpose(1, 2) + self.attention(tokens)
        if self.context_dim is not None:
            if context is None:
                raise ValueError("context is required: this block was built with context_dim")
            out = out + self.cross_attention(self.cross_norm(out), context=context)
        elif context is not None:
            raise ValueError("context was given, but this block was built without context_dim")
        return out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Halve the resolution with a learned 3x3 convolution of stride 2 (Ho et al. 2020)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution.

    Preferred to a transposed convolution, whose overlapping kernels leave checkerboard
    artefacts (Odena et al. 2016).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
