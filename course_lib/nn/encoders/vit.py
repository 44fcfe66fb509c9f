"""The Vision Transformer (Dosovitskiy et al. 2021): an image read as a sequence of patches.

An image becomes a sentence of patches. ``patchify`` cuts it into non-overlapping
``p x p`` patches, read row by row like words on a page; ``PatchEmbedding`` maps each
flattened patch to a ``dim``-vector with one linear layer; ``ViT`` prepends a learned
class token, adds a learned position embedding (the transformer itself has no notion of
where a token came from), and runs the sequence through a ``TransformerEncoder``: a stack
of pre-norm blocks, each ``x + Attention(LN(x))`` then ``x + MLP(LN(x))`` (in
``transformer.py``, as it reads any sequence of tokens, words as well as patches).

A patch is flattened channel first, ``(C, p, p)``, the layout of a ``Conv2d`` weight, so
the patch embedding equals ``Conv2d(C, dim, kernel_size=p, stride=p)`` (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.nn.encoders.transformer import TransformerEncoder, check_positive

POOLING = ("cls", "mean")


# --- images <-> patch sequences ------------------------------------------------------------


def _pair(size, name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else None
    if (
        pair is None
        or len(pair) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair)
    ):
        raise ValueError(f"{name} must be a positive integer or a pair (height, width) of them, got {size!r}")
    return pair


def _check_patch_size(patch_size) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    return patch_size


def patch_grid(image_size, patch_size) -> tuple[int, int]:
    """Rows and columns of patches, ``(H / p, W / p)``; ``ValueError`` unless ``p`` divides both."""
    h, w = _pair(image_size, "image_size")
    p = _check_patch_size(patch_size)
    if h % p or w % p:
        raise ValueError(
            f"image size {h}x{w} is not divisible by patch_size={p}: crop or resize the images "
            f"to a multiple of {p} (e.g. {h - h % p}x{w - w % p})"
        )
    return h // p, w // p


def num_patches(image_size, patch_size) -> int:
    """Number of patch tokens, ``N = (H / p) (W / p)`` (Dosovitskiy et al. 2021, sec. 3.1)."""
    rows, cols = patch_grid(image_size, patch_size)
    return rows * cols


def _check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, channels, height, width), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor (batch, channels, height, width), got shape {tuple(images.shape)}"
            + (" (add a batch dimension with images[None])" if images.ndim == 3 else "")
        )
    return images


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut (B, C, H, W) images into (B, N, C p^2) flattened patches, ``x_p`` of ViT eq. 1.

    Patches are numbered row by row (patch ``i`` sits at row ``i // (W/p)``, column
    ``i % (W/p)``), and each is flattened channel first, as ``patch.reshape(-1)`` of its
    (C, p, p) block would be.
    """
    _check_images(images)
    b, c, h, w = images.shape
    rows, cols = patch_grid((h, w), patch_size)
    p = patch_size
    blocks = images.reshape(b, c, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p)
    return blocks.reshape(b, rows * cols, c * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, C p^2) patches back to (B, C, H, W) images."""
    if not isinstance(patches, torch.Tensor) or patches.ndim != 3:
        shape = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
        raise ValueError(f"patches must be a 3-D tensor (batch, patches, values per patch), got {shape}")
    rows, cols = patch_grid(image_size, patch_size)
    p = patch_size
    b, n, d = patches.shape
    if n != rows * cols or d % (p * p):
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not tile image_size={image_size!r} with "
            f"patch_size={p}: expected {rows * cols} patches of C*{p * p} values"
        )
    c = d // (p * p)
    blocks = patches.reshape(b, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, rows, p, cols, p)
    return blocks.reshape(b, c, rows * p, cols * p)


class PatchEmbedding(nn.Module):
    """Linear patch embedding ``E x_p`` of ViT eq. 1: (B, C, H, W) images to (B, N, dim) tokens."""

    def __init__(self, image_size, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.image_size = _pair(image_size, "image_size")
        self.grid = patch_grid(self.image_size, patch_size)
        check_positive(in_channels=in_channels, dim=dim)
        self.patch_size, self.in_channels, self.dim = patch_size, in_channels, dim
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        if images.shape[1] != self.in_channels or tuple(images.shape[2:]) != self.image_size:
            h, w = self.image_size
            raise ValueError(
                f"images must have shape (batch, {self.in_channels}, {h}, {w}) for this embedding, "
                f"got {tuple(images.shape)}"
            )
        return self.proj(patchify(images, self.patch_size))


# --- the Vision Transformer -----------------------------------------------------------------


class ViT(nn.Module):
    """The Vision Transformer of Dosovitskiy et al. (2021), eqs. 1-4, at any (small) size.

    ``z_0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos`` (eq. 1), then ``depth`` pre-norm blocks
    (eqs. 2-3) and a final LayerNorm; the image's representation ``y`` (eq. 4) is the class
    token's output (``pool="cls"``) or the mean of the patch tokens (``pool="mean"``, no
    class token). ``num_classes`` adds a linear head; without one, ``forward`` returns ``y``.

    ``features(images)`` is ``y``, (B, dim); ``forward(images, return_attention=True)`` also
    returns the attention weights (B, depth, heads, T, T) over the ``T`` tokens (the class
    token first, then the patches row by row).
    """

    def __init__(
        self,
        image_size,
        patch_size: int,
        in_channels: int,
        dim: int,
        depth: int,
        heads: int,
        num_classes: int | None = None,
        pool: str = "cls",
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if pool not in POOLING:
            raise ValueError(f"pool must be one of {POOLING}, got {pool!r}")
        if num_classes is not None:
            check_positive(num_classes=num_classes)
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, dim)
        self.pool, self.dim, self.feature_dim = pool, dim, dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.num_tokens = self.patch_embed.num_patches + (pool == "cls")
        # small random start (std 0.02, as in ViT and BERT): the network must learn 2-D layout from data
        self.pos_embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, self.num_tokens, dim), std=0.02))
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout)
        self.head = nn.Linear(dim, num_classes) if num_classes is not None else None

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of patches."""
        return self.patch_embed.grid

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's input ``z_0`` (eq. 1): (B, T, dim), class token first when ``pool="cls"``."""
        z = self.patch_embed(images)
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(len(z), -1, -1), z], dim=1)
        return z + self.pos_embedding

    def encode(self, images: torch.Tensor, return_attention: bool = False):
        """Every token's output, (B, T, dim), and optionally the attention weights."""
        return self.encoder(self.tokens(images), return_attention=return_attention)

    def _pool(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, 0] if self.pool == "cls" else z.mean(dim=1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The image representation ``y`` of eq. 4, (B, dim): what a projection head reads."""
        return self._pool(self.encode(images))

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        encoded = self.encode(images, return_attention=return_attention)
        z, weights = encoded if return_attention else (encoded, None)
        y = self._pool(z)
        out = self.head(y) if self.head is not None else y
        return (out, weights) if return_attention else out

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, depth, heads, T, T) for ``images``, computed in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self(images, return_attention=True)[1]
        finally:
            self.train(was_training)


# --- reading attention ----------------------------------------------------------------------


def attention_rollout(weights: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    ``weights``: (B, depth, heads, T, T). Heads are averaged, the residual path is counted
    as half of each layer (``A' = (A + I) / 2``), and the layers are multiplied in order:
    ``R = A'_depth ... A'_1``. Returns (B, T, T); each row sums to 1.
    """
    if not isinstance(weights, torch.Tensor) or weights.ndim != 5 or weights.shape[-1] != weights.shape[-2]:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"weights must have shape (batch, depth, heads, tokens, tokens), got {shape}")
    a = weights.mean(dim=2)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    rollout = eye.expand(a.shape[0], -1, -1)
    for layer in range(a.shape[1]):
        rollout = ((a[:, layer] + eye) / 2) @ rollout
    return rollout


def mean_attention_distance(weights: torch.Tensor, grid, patch_size: int = 1) -> torch.Tensor:
    """Mean distance, in pixels, over which each head attends (Dosovitskiy et al. 2021, fig. 7).

    For each query patch ``i``, ``sum_j a_ij |pos_i - pos_j|`` over the key patches ``j``
    (Euclidean distance between patch centres, times ``patch_size``), averaged over query
    patches and over the batch. ``weights``: (B, heads, N, N) or (B, depth, heads, N, N)
    over the ``N = rows * cols`` patches only (drop a class token first: ``w[..., 1:, 1:]``;
    its weights need not be renormalised, as the distance measures where the patches
    look). Returns (heads,) or (depth, heads).
    """
    rows, cols = _pair(grid, "grid")
    n = rows * cols
    if not isinstance(weights, torch.Tensor) or weights.ndim not in (4, 5) or weights.shape[-2:] != (n, n):
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"weights must have shape (batch, [depth,] heads, {n}, {n}) for a {rows}x{cols} grid, got {shape}")
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([r.flatten(), c.flatten()], dim=1).to(weights.dtype) * patch_size
    distance = torch.cdist(centres, centres).to(weights.device)
    return (weights * distance).sum(-1).mean(dim=(0, -1))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "PatchEmbedding",
    "ViT",
    "attention_rollout",
    "count_parameters",
    "mean_attention_distance",
    "num_patches",
    "patch_grid",
    "patchify",
    "unpatchify",
]
