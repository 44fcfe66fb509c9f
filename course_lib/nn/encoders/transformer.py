"""The transformer encoder: a stack of pre-norm blocks that reads any sequence of tokens.

Vaswani et al. (2017) built the transformer from two sub-layers, multi-head self-attention and a
position-wise MLP, each wrapped in a residual connection. Putting the layer norm *before* each
sub-layer ("pre-norm", as in ViT and GPT-2) rather than after the sum leaves an identity path from
input to output, and such stacks train without the learning-rate warm-up the original needed
(Xiong et al. 2020). The attention is the book's one ``Attention`` module (course_lib.nn.layers).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.nn.layers import Attention


def check_positive(**values) -> None:
    """``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class TransformerBlock(nn.Module):
    """One pre-norm transformer block (Vaswani et al. 2017; pre-norm as in ViT, Xiong et al. 2020).

    ``x <- x + Attention(LayerNorm(x))`` then ``x <- x + MLP(LayerNorm(x))``, the MLP being
    ``Linear(dim, mlp_ratio dim) -> GELU -> Linear(mlp_ratio dim, dim)``. Normalising the
    input of each branch, not the sum, keeps a clean residual path from the first layer to
    the last, which is what lets deep stacks train without a learning-rate warm-up.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        check_positive(dim=dim, heads=heads)
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False):
        """``x``: (B, N, dim); ``mask`` as for :class:`Attention`. Returns (B, N, dim), and the
        attention weights (B, heads, N, N) when ``return_attention``."""
        attended = self.attn(self.norm1(x), mask=mask, return_weights=return_attention)
        if return_attention:
            attended, weights = attended
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return (x, weights) if return_attention else x


class TransformerEncoder(nn.Module):
    """``depth`` pre-norm :class:`TransformerBlock` s and a final LayerNorm: a sequence encoder.

    ``forward(x, mask=None, return_attention=False)`` maps (B, N, dim) tokens to (B, N, dim).
    ``mask`` is either a (B, N) boolean *padding* mask, True for real tokens (padding is
    then never attended to), or a boolean tensor broadcastable to (B, heads, N, N), True
    where query i may attend to key j. With ``return_attention`` it also returns every
    layer's attention weights stacked as (B, depth, heads, N, N).
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        check_positive(dim=dim, depth=depth, heads=heads)
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads, got dim={dim}, heads={heads}")
        self.dim, self.depth, self.heads = dim, depth, heads
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)  # pre-norm leaves the last residual sum unnormalised

    def _mask(self, mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        if mask is None:
            return None
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a boolean tensor (True = may attend), got {got}")
        b, n, _ = x.shape
        if mask.ndim == 2:
            if tuple(mask.shape) != (b, n):
                raise ValueError(
                    f"a 2-D mask is a padding mask of shape (batch, tokens) = ({b}, {n}), got {tuple(mask.shape)}"
                )
            if not mask.any(dim=1).all():
                raise ValueError("mask leaves a sequence with no token to attend to (a row of all False)")
            return mask[:, None, None, :]
        if mask.ndim == 4:
            try:
                torch.broadcast_shapes(mask.shape, (b, self.heads, n, n))
            except RuntimeError:
                raise ValueError(
                    f"a 4-D mask must broadcast to (batch, heads, tokens, tokens) = ({b}, {self.heads}, {n}, {n}), "
                    f"got {tuple(mask.shape)}"
                ) from None
            return mask
        raise ValueError(f"mask must be 2-D (batch, tokens) or 4-D (batch, heads, tokens, tokens), got {tuple(mask.shape)}")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False):
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, tokens, {self.dim}), got {shape}")
        mask = self._mask(mask, x)
        weights = []
        for block in self.blocks:
            if return_attention:
                x, w = block(x, mask=mask, return_attention=True)
                weights.append(w)
            else:
                x = block(x, mask=mask)
        x = self.norm(x)
        return (x, torch.stack(weights, dim=1)) if return_attention else x
