"""The U-Net denoiser of the diffusion chapters (Ronneberger et al. 2015; Ho et al. 2020).

An encoder halves the resolution level by level while widening the channels; a decoder
mirrors it back up; every feature map the encoder produces is handed across to the
decoder level of the same resolution (the skip connections) and concatenated with what
arrives from below. Coarse levels see the whole image and decide *what* to draw; the skips
carry *where*, at full detail. The timestep enters every residual block through an
embedding, and self-attention mixes all positions at the coarse levels.

::

    x ──conv_in──► level 0 ──down──► level 1 ──down──► ... ──► middle (res, attn, res)
                     │                 │                              │
                     └── skips ──┐     └── skips ──┐                  ▼
    out ◄─conv_out── level 0 ◄─up─── level 1 ◄─up─── ... ◄────────────┘

Conditioning has one entry point, the embedding ``emb`` that every residual block reads:
the time embedding, plus a class embedding when ``num_classes`` is given (chapter 07).
Text conditioning (chapter 08) enters instead by cross-attention to a ``context``
sequence in the attention blocks, when ``context_dim`` is given.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.nn.blocks import Downsample, ResidualBlock, SpatialAttention, Upsample, check_groups
from course_lib.nn.layers import SinusoidalTimeEmbedding


class UNet2D(nn.Module):
    """A diffusion U-Net: ``model(x, t) -> (B, out_channels, H, W)``, e.g. the noise ε̂(x_t, t).

    The architecture of the DDPM U-Net (Ho et al. 2020, appendix B), itself a
    PixelCNN++-style U-Net (Ronneberger et al. 2015): per level ``layers_per_level``
    residual blocks (optionally each followed by self-attention), a stride-2 downsampling
    between levels, a middle of residual block, attention, residual block, and a decoder
    with ``layers_per_level + 1`` blocks per level, each consuming one skip connection.

    Arguments:
        in_channels: channels of the images (1 for grey digits).
        out_channels: channels of the output; defaults to ``in_channels`` (ε- or
            x0-prediction); 2 * in_channels would predict a mean and a variance.
        base_channels: channels of the first level; the time embedding has 4x as many.
        channel_mults: channels of level i = base_channels * channel_mults[i]; there are
            ``len(channel_mults)`` levels, so H and W must be divisible by
            ``2 ** (len(channel_mults) - 1)``.
        layers_per_level: residual blocks per encoder level.
        attention_levels: one bool per level: self-attention after each of its blocks.
            The middle always has attention.
        groups: groups of every GroupNorm (each level's channels must be a multiple).
        heads: attention heads (each attention level's channels must be a multiple).
        dropout: dropout inside the residual blocks (Ho et al. use 0.1 on CIFAR-10).
        num_classes: if given, ``forward`` takes class labels ``y`` in
            ``[0, num_classes]``; the label ``num_classes`` (``self.null_class``) means
            "no label", which classifier-free guidance trains with (chapter 07).
        context_dim: if given, the attention blocks also cross-attend to ``context``
            (B, M, context_dim), e.g. text-token embeddings (chapter 08).
        skip_connections: False drops the skips: the decoder then sees only what comes
            up from the bottleneck, a plain encoder-decoder (chapter 06's ablation).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        layers_per_level: int = 1,
        attention_levels: Sequence[bool] = (False, True),
        groups: int = 8,
        heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        skip_connections: bool = True,
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("layers_per_level", layers_per_level)
        _check_positive_int("groups", groups)
        _check_positive_int("heads", heads)
        channel_mults = tuple(channel_mults)
        attention_levels = tuple(attention_levels)
        if not channel_mults or not all(isinstance(m, int) and m > 0 for m in channel_mults):
            raise ValueError(f"channel_mults must be a non-empty sequence of positive integers, got {channel_mults}")
        if len(attention_levels) != len(channel_mults) or not all(isinstance(a, bool) for a in attention_levels):
            raise ValueError(
                f"attention_levels must hold one bool per level ({len(channel_mults)}), got {attention_levels}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes is not None:
            _check_positive_int("num_classes", num_classes)
        if context_dim is not None:
            _check_positive_int("context_dim", context_dim)
        if not isinstance(skip_connections, bool):
            raise ValueError(f"skip_connections must be True or False, got {skip_connections!r}")
        widths = [base_channels * m for m in channel_mults]
        for level, (width, attend) in enumerate(zip(widths, attention_levels)):
            check_groups(width, groups, f"channels of level {level}")
            if (attend or level == len(widths) - 1) and width % heads:
                raise ValueError(f"channels of level {level} ({width}) must be a multiple of heads ({heads})")

        self.in_channels, self.out_channels, self.base_channels = in_channels, out_channels, base_channels
        self.layers_per_level, self.groups, self.heads, self.dropout = layers_per_level, groups, heads, float(dropout)
        self.channel_mults, self.attention_levels = channel_mults, attention_levels
        self.num_classes, self.context_dim = num_classes, context_dim
        self.skip_connections = skip_connections
        self.null_class = num_classes
        self.downsample_factor = 2 ** (len(channel_mults) - 1)

        # conditioning: everything a block should know about "which task" goes into emb
        emb_dim = 4 * base_channels
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(base_channels),
            nn.Linear(base_channels, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None

        def block(c_in: int, c_out: int) -> ResidualBlock:
            return ResidualBlock(c_in, c_out, emb_dim, groups=groups, dropout=dropout)

        def attention(c: int) -> SpatialAttention:
            return SpatialAttention(c, heads=heads, groups=groups, context_dim=context_dim)

        # encoder: remember the channels of every feature map handed to the decoder
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        channels = base_channels
        for level, width in enumerate(widths):
            for _ in range(layers_per_level):
                self.down.append(_Stage(block(channels, width), attention(width) if attention_levels[level] else None))
                channels = width
                skip_channels.append(channels)
            if level < len(widths) - 1:
                self.down.append(Downsample(channels))
                skip_channels.append(channels)

        self.mid_block1 = block(channels, channels)
        self.mid_attention = attention(channels)
        self.mid_block2 = block(channels, channels)

        # decoder: each block concatenates one skip (last in, first out) to its input
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for _ in range(layers_per_level + 1):
                skip = skip_channels.pop()
                c_in = channels + skip if skip_connections else channels
                self.up.append(_Stage(block(c_in, width), attention(width) if attention_levels[level] else None))
                channels = width
            if level > 0:
                self.up.append(Upsample(channels))

        self.norm_out = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning vector every residual block reads: ``emb = MLP(sin/cos(t)) [+ E[y]]``."""
        emb = self.time_embedding(t)
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(y)
        return emb

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float | int,
        y: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``: (B, in_channels, H, W); ``t``: timesteps, shape (B,) or a scalar (int or float).

        ``y``: class labels (B,) in ``[0, num_classes]`` (only with ``num_classes``; None =
        all ``null_class``). ``context``: (B, M, context_dim) (only with ``context_dim``).
        Returns (B, out_channels, H, W).
        """
        t, y = self._check_inputs(x, t, y, context)
        # SiLU once here rather than in each of the blocks that read emb
        emb = F.silu(self.embed(t, y))

        h = self.conv_in(x)
        skips = [h] if self.skip_connections else None
        for stage in self.down:
            h = stage(h) if isinstance(stage, Downsample) else stage(h, emb, context)
            if skips is not None:
                skips.append(h)

        h = self.mid_block1(h, emb)
        h = self.mid_attention(h, context)
        h = self.mid_block2(h, emb)

        for stage in self.up:
            if isinstance(stage, Upsample):
                h = stage(h)
            else:
                h = stage(h if skips is None else torch.cat([h, skips.pop()], dim=1), emb, context)

        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_inputs(self, x, t, y, context) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x must be a tensor of shape (batch, {self.in_channels}, H, W), got {_shape(x)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels, got shape {tuple(x.shape)}")
        f = self.downsample_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"x's height and width must be divisible by {f} (2 ** (levels - 1)), got {tuple(x.shape[2:])}"
            )
        batch = x.shape[0]
        if not isinstance(t, torch.Tensor):
            if not isinstance(t, (int, float)) or isinstance(t, bool):
                raise TypeError(f"t must be a tensor or a number, got {type(t).__name__}")
            t = torch.tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        elif t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape ({batch},) (one timestep per image), got {tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold integer or float timesteps, got dtype {t.dtype}")

        if self.num_classes is None:
            if y is not None:
                raise ValueError("y (class labels) was given, but the model was built without num_classes")
        else:
            if y is None:
                y = torch.full((batch,), self.null_class, dtype=torch.long, device=x.device)
            if not isinstance(y, torch.Tensor) or y.shape != (batch,) or y.is_floating_point():
                raise ValueError(f"y must be an integer tensor of shape ({batch},), got {_shape(y)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
                raise ValueError(
                    f"y must hold labels in [0, {self.num_classes}] ({self.num_classes} = no label), "
                    f"got values in [{int(y.min())}, {int(y.max())}]"
                )

        if self.context_dim is None:
            if context is not None:
                raise ValueError("context was given, but the model was built without context_dim")
        elif not isinstance(context, torch.Tensor) or context.ndim != 3 or context.shape[0] != batch \
                or context.shape[2] != self.context_dim:
            raise ValueError(f"context must have shape ({batch}, tokens, {self.context_dim}), got {_shape(context)}")
        return t, y


class _Stage(nn.Module):
    """One residual block, optionally followed by attention: the repeating unit of each level."""

    def __init__(self, block: ResidualBlock, attention: SpatialAttention | None):
        super().__init__()
        self.block = block
        self.attention = attention

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        h = self.block(h, emb)
        return h if self.attention is None else self.attention(h, context)


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _shape(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
