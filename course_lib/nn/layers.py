"""Building blocks shared by the course's networks: time embedding and attention.

The U-Nets of the diffusion chapters, the Vision Transformer and text tower of chapters
01-02 and the fusion models of chapter 03 all use the same ``Attention``: self-attention
when no ``context`` is given, cross-attention (queries from ``x``, keys and values from
``context``) when one is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Embed a (possibly fractional) timestep as sines and cosines of geometric frequencies.

    ``emb(t) = [sin(t * w_0), ..., sin(t * w_{h-1}), cos(t * w_0), ..., cos(t * w_{h-1})]``
    with ``w_i = max_period ** (-i / h)`` and ``h = dim / 2``: the position encoding of
    Vaswani et al. (2017), used for the diffusion timestep by Ho et al. (2020). Nearby
    timesteps get nearby vectors and every scale of ``t`` has its own frequency, which a
    raw scalar through ``nn.Linear(1, d)`` cannot give the network.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
        if max_period <= 1:
            raise ValueError(f"max_period must be > 1, got {max_period!r}")
        self.dim = dim
        half = dim // 2
        frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        # a buffer, not a parameter: it moves with .to(device) but is never trained
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, t: torch.Tensor | float | int) -> torch.Tensor:
        """``t``: a scalar or a tensor of shape (B,); returns (B, dim) (B = 1 for a scalar)."""
        t = torch.as_tensor(t, device=self.frequencies.device)
        if t.ndim == 0:
            t = t.reshape(1)
        if t.ndim != 1:
            raise ValueError(f"t must be a scalar or a 1-D tensor of timesteps, got shape {tuple(t.shape)}")
        angles = t.to(self.frequencies.dtype)[:, None] * self.frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1).

    ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head)) V`` in each of ``heads`` heads,
    with ``Q = x W_q``, ``K = c W_k``, ``V = c W_v`` and ``c = context`` (cross-attention)
    or ``c = x`` (self-attention), then an output projection back to ``dim``.

    ``x``: (B, N, dim) queries. ``context``: (B, M, context_dim) or None. ``mask``:
    boolean, broadcastable to (B, heads, N, M), True where a query may attend.
    ``return_weights=True`` also returns the attention weights (B, heads, N, M) for
    drawing; otherwise the fused kernel ``F.scaled_dot_product_attention`` is used.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        context_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads:
            raise ValueError(f"dim must be a positive multiple of heads, got dim={dim}, heads={heads}")
        if context_dim is not None and context_dim <= 0:
            raise ValueError(f"context_dim must be positive or None, got {context_dim}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.context_dim = dim if context_dim is None else context_dim
        self.dropout = float(dropout)
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(self.context_dim, dim, bias=bias)
        self.to_v = nn.Linear(self.context_dim, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim)

    def _check(self, x: torch.Tensor, context: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (batch, tokens, {self.dim}), got {tuple(x.shape)}")
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(f"context must have shape (batch, tokens, {self.context_dim}), got {tuple(context.shape)}")
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"x and context must have the same batch size, got {x.shape[0]} and {context.shape[0]}")

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ):
        context = x if context is None else context
        self._check(x, context)
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(context))
        v = self._split_heads(self.to_v(context))
        dropout = self.dropout if self.training else 0.0
        if return_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        b, _, n, _ = out.shape
        out = self.to_out(out.transpose(1, 2).reshape(b, n, self.dim))
        return (out, weights) if return_weights else out
