"""Multimodal fusion: where in a network two modalities meet.

Three answers cover most multimodal networks (Baltrusaitis, Ahuja & Morency 2019):

* :class:`EarlyFusion`: the modalities' features are concatenated and one network does the
  rest (feature-level fusion, Snoek et al. 2005);
* :class:`LateFusion`: each modality has its own classifier and only their class scores meet,
  averaged by :func:`late_fusion` (decision-level fusion);
* :class:`CrossAttentionFusion`: each image location queries the caption's words through
  :class:`CrossAttentionBlock` (the text conditioning of Rombach et al. 2022; ViLBERT and
  Flamingo fuse the same way).

All three classify an (image, caption) pair with one interface,
``model(images, tokens, present=None) -> logits``: ``images`` (B, C, H, W), ``tokens`` (B, L)
word ids with :data:`PAD` = 0 for padding, ``present`` (B, 2) booleans saying which of
(image, caption) each example has. :func:`modality_dropout` draws ``present`` at random
during training (ModDrop, Neverova et al. 2016), the remedy for one modality dominating.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.nn.layers import Attention

PAD = 0
MODALITIES = ("image", "text")


def late_fusion(logits: torch.Tensor, present: torch.Tensor | None = None, weights=None) -> torch.Tensor:
    """Average the modalities' logits over the modalities each example has: (B, M, K) -> (B, K).

    ``fused[b] = sum_m w_m p[b,m] logits[b,m] / sum_m w_m p[b,m]`` with ``p = present``
    (default: all) and ``w = weights`` (default: equal). Averaging logits multiplies the
    modalities' softmax distributions, a product of experts (Hinton 2002): for conditionally
    independent modalities with ``sum(w) = M`` it is Bayes' rule, optimal cue combination.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor of shape (batch, modalities, classes), got {_shape(logits)}")
    b, m, _ = logits.shape
    present = torch.ones(b, m, dtype=torch.bool, device=logits.device) if present is None else present
    _check_present(present, b, m)
    w = torch.ones(m) if weights is None else torch.as_tensor(weights)
    if w.shape != (m,) or bool((w < 0).any()):
        raise ValueError(f"weights must be {m} non-negative numbers, one per modality; got {w.tolist()}")
    w = present.to(logits.dtype) * w.to(logits)
    total = w.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("every example needs a present modality with a positive weight")
    return (w.unsqueeze(-1) * logits).sum(1) / total


def modality_dropout_mask(uniform: torch.Tensor, p) -> torch.Tensor:
    """Which modalities to keep, given uniform draws (B, M) in [0, 1): a bool tensor (B, M).

    Modality ``m`` of example ``b`` is dropped when ``uniform[b, m] < p_m`` (``p``: one
    probability, or one per modality), independently of the others; an example that would
    lose all of them keeps the one whose draw was largest, so none is left empty.
    """
    if not isinstance(uniform, torch.Tensor) or uniform.ndim != 2 or uniform.shape[1] < 1:
        raise ValueError(f"uniform must be a (batch, modalities) tensor, got {_shape(uniform)}")
    p = torch.as_tensor(p, dtype=uniform.dtype, device=uniform.device)
    if p.ndim > 1 or (p.ndim == 1 and len(p) != uniform.shape[1]) or bool(((p < 0) | (p > 1)).any()):
        raise ValueError(
            f"p must be a probability or one per modality ({uniform.shape[1]}), each in [0, 1]; got {p.tolist()}"
        )
    keep = uniform >= p
    survivor = F.one_hot(uniform.argmax(1), uniform.shape[1]).bool()
    return torch.where(keep.any(1, keepdim=True), keep, survivor)


def modality_dropout(
    batch_size: int, p, num_modalities: int = 2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ``present`` mask (B, M) for training with modality dropout (Neverova et al. 2016).

    Each example loses each modality with probability ``p`` (:func:`modality_dropout_mask`),
    so the network must be able to answer from one modality alone: the modality that is
    easiest to learn can no longer starve the others of gradient.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return modality_dropout_mask(torch.rand(batch_size, num_modalities, generator=generator), p)


class CrossAttentionBlock(nn.Module):
    """Pre-norm residual block: ``x += Attn(LN(x), LN(c), mask); x += MLP(LN(x))``.

    With a ``context`` c (B, M, context_dim) the attention is cross-attention: queries from
    ``x`` (B, N, dim), keys and values from c (Vaswani et al. 2017's encoder-decoder
    attention; Rombach et al. 2022 condition a U-Net on text this way). Without one it is
    self-attention among the tokens of ``x``. ``context_mask`` (B, M), True for real tokens,
    keeps padding out of every softmax. Norms before each sub-layer (Xiong et al. 2020)
    leave the residual path an identity, and both sub-layers start at zero (like ReZero and
    latent diffusion's zero-initialised projections), so the block starts as the identity.
    """

    def __init__(
        self, dim: int, context_dim: int | None = None, heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        self.dim, self.context_dim = dim, dim if context_dim is None else context_dim
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(self.context_dim)
        self.attention = Attention(dim, heads=heads, context_dim=self.context_dim, dropout=dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        for last in (self.attention.to_out, self.mlp[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x, context=None, context_mask=None, return_weights: bool = False):
        """``x`` (B, N, dim), ``context`` (B, M, context_dim) or None -> (B, N, dim) [, weights (B, heads, N, M)]."""
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (batch, tokens, {self.dim}), got {_shape(x)}")
        h = self.norm(x)
        if context is None:
            keys = h
        else:
            if not isinstance(context, torch.Tensor) or context.ndim != 3 or context.shape[-1] != self.context_dim:
                raise ValueError(f"context must have shape (batch, tokens, {self.context_dim}), got {_shape(context)}")
            if context.shape[0] != x.shape[0]:
                raise ValueError(
                    f"x and context must have the same batch size, got {x.shape[0]} and {context.shape[0]}"
                )
            keys = self.context_norm(context)
        mask = None
        if context_mask is not None:
            expected = tuple(keys.shape[:2])
            if not (isinstance(context_mask, torch.Tensor) and context_mask.dtype == torch.bool) or (
                context_mask.shape != expected
            ):
                raise ValueError(f"context_mask must be a bool tensor of shape {expected}, got {_shape(context_mask)}")
            if not bool(context_mask.any(1).all()):
                raise ValueError("context_mask leaves an example with no token to attend to")
            mask = context_mask[:, None, None, :]
        out = self.attention(h, context=keys, mask=mask, return_weights=return_weights)
        out, weights = out if return_weights else (out, None)
        x = x + out
        x = x + self.mlp(self.mlp_norm(x))
        return (x, weights) if return_weights else x


class ImageTokens(nn.Module):
    """(B, C, H, W) images to (B, (H/p)(W/p), dim) tokens: two 3x3 convolutions, then p x p patches.

    The patch embedding of the Vision Transformer (Dosovitskiy et al. 2021) behind a small
    convolutional stem, which makes it learn far faster from a few thousand images
    (Xiao et al. 2021). Group normalisation (Wu & He 2018) after each convolution speeds
    learning several times over again. Learned position embeddings say where each token is.
    """

    def __init__(self, dim: int, channels: int = 3, image_size: int = 8, patch_size: int = 2, stem_channels: int = 32):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        self.channels, self.image_size = channels, image_size
        groups = math.gcd(8, stem_channels)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, stem_channels, 3, padding=1), nn.GroupNorm(groups, stem_channels), nn.GELU(),
            nn.Conv2d(stem_channels, stem_channels, 3, padding=1), nn.GroupNorm(groups, stem_channels), nn.GELU(),
            nn.Conv2d(stem_channels, dim, patch_size, stride=patch_size),
        )
        self.position = nn.Parameter(0.02 * torch.randn(1, (image_size // patch_size) ** 2, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stem(images).flatten(2).transpose(1, 2) + self.position


class _FusionClassifier(nn.Module):
    """What the three classifiers share: the tokenizers, the stand-ins for a missing modality, the checks."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        dim: int = 32,
        hidden: int = 128,
        channels: int = 3,
        image_size: int = 8,
        patch_size: int = 2,
        max_length: int = 16,
    ):
        super().__init__()
        sizes = dict(vocab_size=vocab_size, num_classes=num_classes, dim=dim, hidden=hidden, max_length=max_length)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.vocab_size, self.num_classes, self.dim, self.hidden = vocab_size, num_classes, dim, hidden
        self.max_length = max_length
        self.image_tokens = ImageTokens(dim, channels, image_size, patch_size)
        self.num_patches = self.image_tokens.position.shape[1]
        self.word_embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.word_position = nn.Parameter(0.02 * torch.randn(1, max_length, dim))
        # what the network sees where a modality is absent: learned, so that "absent" is a value of its own
        self.missing_image = nn.Parameter(torch.zeros(dim))
        self.missing_text = nn.Parameter(torch.zeros(dim))

    def mlp(self, in_features: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_features, self.hidden), nn.GELU(), nn.Linear(self.hidden, self.num_classes))

    def encode(self, images, tokens, present):
        """Check the inputs; return image tokens (B, N, dim), word vectors (B, L, dim), word mask (B, L), present.

        A missing image becomes ``missing_image`` at every position; a missing caption has all
        its words masked.
        """
        it = self.image_tokens
        image_shape = (it.channels, it.image_size, it.image_size)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != image_shape:
            expected = ", ".join(map(str, image_shape))
            raise ValueError(f"images must have shape (batch, {expected}), got {_shape(images)}")
        if (
            not isinstance(tokens, torch.Tensor)
            or tokens.ndim != 2
            or tokens.is_floating_point()
            or tokens.shape[1] > self.max_length
        ):
            raise ValueError(
                f"tokens must be an integer tensor of shape (batch, length <= {self.max_length}), got {_shape(tokens)}"
            )
        if tokens.shape[0] != images.shape[0]:
            raise ValueError(
                f"images and tokens must have the same batch size, got {images.shape[0]} and {tokens.shape[0]}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must be word ids in [0, {self.vocab_size - 1}]")
        b = images.shape[0]
        present = torch.ones(b, 2, dtype=torch.bool, device=images.device) if present is None else present
        _check_present(present, b, 2)
        image = torch.where(present[:, :1, None], it(images), self.missing_image + it.position)
        words = self.word_embedding(tokens) + self.word_position[:, : tokens.shape[1]]
        return image, words, (tokens != PAD) & present[:, 1:], present

    def caption_vector(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """The caption as one vector: the mean of its word vectors, or ``missing_text`` if it has none."""
        m = word_mask.unsqueeze(-1).to(words.dtype)
        mean = (words * m).sum(1) / m.sum(1).clamp_min(1.0)
        return torch.where(word_mask.any(1, keepdim=True), mean, self.missing_text)


class EarlyFusion(_FusionClassifier):
    """``logits = MLP([flatten(image tokens), mean word vector])``: one network sees both from its first layer.

    It can learn any interaction between the modalities, but it has no way to represent an
    absent one except by the learned stand-ins, which it only learns if training shows it
    absent modalities (:func:`modality_dropout`).
    """

    def __init__(self, vocab_size: int, num_classes: int, **sizes):
        super().__init__(vocab_size, num_classes, **sizes)
        self.classifier = self.mlp((self.num_patches + 1) * self.dim)

    def forward(self, images, tokens, present=None):
        image, words, word_mask, _ = self.encode(images, tokens, present)
        return self.classifier(torch.cat([image.flatten(1), self.caption_vector(words, word_mask)], dim=1))


class LateFusion(_FusionClassifier):
    """One classifier per modality, their logits averaged over the modalities present (:func:`late_fusion`).

    The branches never see each other's input, only their decisions meet. ``branch_logits``
    returns each branch's own logits (B, 2, K): what each modality learned inside the model.
    """

    def __init__(self, vocab_size: int, num_classes: int, **sizes):
        super().__init__(vocab_size, num_classes, **sizes)
        self.image_classifier = self.mlp(self.num_patches * self.dim)
        self.text_classifier = self.mlp(self.dim)

    def branch_logits(self, images, tokens, present=None):
        image, words, word_mask, present = self.encode(images, tokens, present)
        caption = self.caption_vector(words, word_mask)
        return torch.stack([self.image_classifier(image.flatten(1)), self.text_classifier(caption)], dim=1), present

    def forward(self, images, tokens, present=None):
        return late_fusion(*self.branch_logits(images, tokens, present))


class CrossAttentionFusion(_FusionClassifier):
    """Each image token queries the caption's words through ``depth`` :class:`CrossAttentionBlock` layers.

    Queries come from the image, keys and values from the words (as text conditions the
    U-Net of Rombach et al. 2022); then ``MLP(flatten(image tokens))`` classifies. A learned
    "null" word is always among the keys, so a location can read nothing, and a missing
    caption leaves only the null word. ``return_weights=True`` also returns the last layer's
    attention weights (B, heads, N, 1 + L), the null word first.
    """

    def __init__(self, vocab_size: int, num_classes: int, depth: int = 1, heads: int = 4, **sizes):
        super().__init__(vocab_size, num_classes, **sizes)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self.null_word = nn.Parameter(0.02 * torch.randn(1, 1, self.dim))
        self.layers = nn.ModuleList(CrossAttentionBlock(self.dim, self.dim, heads) for _ in range(depth))
        self.classifier = self.mlp(self.num_patches * self.dim)

    def forward(self, images, tokens, present=None, return_weights: bool = False):
        image, words, word_mask, _ = self.encode(images, tokens, present)
        b = image.shape[0]
        context = torch.cat([self.null_word.expand(b, -1, -1), words], dim=1)
        context_mask = torch.cat([word_mask.new_ones(b, 1), word_mask], dim=1)
        weights = None
        for i, layer in enumerate(self.layers):
            if return_weights and i == len(self.layers) - 1:
                image, weights = layer(image, context, context_mask, return_weights=True)
            else:
                image = layer(image, context, context_mask)
        logits = self.classifier(image.flatten(1))
        return (logits, weights) if return_weights else logits


FUSION_MODELS = {"early": EarlyFusion, "late": LateFusion, "cross-attention": CrossAttentionFusion}


def _check_present(present, batch: int, modalities: int) -> None:
    if not isinstance(present, torch.Tensor) or present.dtype != torch.bool or present.shape != (batch, modalities):
        raise ValueError(f"present must be a bool tensor of shape ({batch}, {modalities}), got {_shape(present)}")
    if not bool(present.any(1).all()):
        raise ValueError("present leaves an example with no modality at all")


def _shape(x) -> str:
    return f"shape {tuple(x.shape)} ({x.dtype})" if isinstance(x, torch.Tensor) else type(x).__name__


__all__ = [
    "FUSION_MODELS",
    "MODALITIES",
    "PAD",
    "CrossAttentionBlock",
    "CrossAttentionFusion",
    "EarlyFusion",
    "ImageTokens",
    "LateFusion",
    "late_fusion",
    "modality_dropout",
    "modality_dropout_mask",
]
