"""Contrastive image-text learning: the CLIP loss, a mini-CLIP, zero-shot classification, retrieval.

CLIP (Radford et al. 2021) trains an image tower and a text tower so that, in a batch of N
matching pairs, each image's embedding is most similar to its own caption's among the N
captions, and each caption's to its own image's. With unit vectors ``I`` and ``T`` (N, D)
and a learned scale ``s = 1 / temperature``, the logits are ``L = s I T^T`` and the loss is
the mean of two cross-entropies with the pairs on the diagonal as targets:

    loss = ( CE(L, arange(N)) + CE(L^T, arange(N)) ) / 2

The first term classifies captions for each image (rows of ``L``), the second images for
each caption (columns of ``L``, i.e. rows of ``L^T``). Without the transpose the two terms
are the same number and the text-to-image direction is never trained: the error of one
of this book's source texts, which chapter 02 runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.nn.encoders.projection import ProjectionHead, l2_normalize

INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


def _check_features(image_features: torch.Tensor, text_features: torch.Tensor) -> None:
    for name, value in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(value).__name__}")
        if value.ndim != 2:
            raise ValueError(f"{name} must be 2-D (batch, dim); got shape {tuple(value.shape)}")
    if len(image_features) != len(text_features):
        raise ValueError(
            f"image_features and text_features must have the same batch size (pair i is row i of both); "
            f"got {len(image_features)} and {len(text_features)}"
        )
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"image_features and text_features must have the same embedding dimension; "
            f"got {image_features.shape[1]} and {text_features.shape[1]}"
        )
    if len(image_features) == 0:
        raise ValueError("the batch is empty")


def clip_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits_per_image, logits_per_text)`` = ``(s I T^T, s T I^T)``, the second the transpose of the first."""
    _check_features(image_features, text_features)
    logits_per_image = logit_scale * image_features @ text_features.T
    return logits_per_image, logits_per_image.T


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """The symmetric contrastive (InfoNCE) loss of CLIP (Radford et al. 2021, fig. 3).

    ``image_features`` and ``text_features`` are (N, D), row ``i`` of each from pair ``i``,
    normally L2-normalised; ``logit_scale`` is the multiplier ``s = exp(t) = 1 / temperature``
    (already exponentiated, as open_clip's ``ClipLoss`` takes it). Returns the mean of the
    image-to-text and text-to-image cross-entropies.
    """
    logits_per_image, logits_per_text = clip_logits(image_features, text_features, logit_scale)
    targets = torch.arange(len(image_features), device=image_features.device)
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2


class MiniCLIP(nn.Module):
    """Two towers, two projection heads and a learned temperature (Radford et al. 2021, sec. 2.4).

    ``image_encoder`` maps images to (B, image_dim) features and ``text_encoder`` maps its
    text input (whatever ``tokenize`` makes of a list of sentences: token ids for a
    Transformer, precomputed sentence vectors for a frozen pretrained encoder, whose tower
    is then ``nn.Identity()``) to (B, text_dim). Projections map both into the joint space of
    size ``embed_dim``, where embeddings are unit vectors.

    The logit scale is learned as its logarithm ``t``, initialised to ``log(1 / 0.07)``, and
    used as ``min(exp(t), 100)``: CLIP's cap, which keeps the softmax from becoming so sharp
    that training turns unstable. ``lock_text=True`` freezes the text tower (locked-text
    tuning); its projection still trains.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        image_dim: int,
        text_dim: int,
        embed_dim: int = 64,
        tokenize: Callable[[Sequence[str]], torch.Tensor] | None = None,
        lock_text: bool = False,
        text_projection_hidden: int | None = None,
        text_layer_norm: bool = False,
        init_temperature: float = INIT_TEMPERATURE,
        max_logit_scale: float = MAX_LOGIT_SCALE,
    ):
        super().__init__()
        if not (isinstance(init_temperature, (int, float)) and 0 < init_temperature
                and 1 / init_temperature <= max_logit_scale):
            raise ValueError(
                f"init_temperature must be positive with 1/init_temperature <= max_logit_scale={max_logit_scale}; "
                f"got {init_temperature!r}"
            )
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_projection = ProjectionHead(image_dim, embed_dim)
        self.text_projection = ProjectionHead(
            text_dim, embed_dim, hidden_dim=text_projection_hidden, layer_norm=text_layer_norm
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_logit_scale = float(max_logit_scale)
        self.tokenize = tokenize
        self.embed_dim = embed_dim
        if lock_text:
            self.text_encoder.requires_grad_(False)
        self.lock_text = lock_text

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lock_text:  # a locked tower stays in eval mode (no dropout) while the rest trains
            self.text_encoder.eval()
        return self

    def scale(self) -> torch.Tensor:
        """The logit scale ``min(exp(t), max_logit_scale)`` = 1 / temperature."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.image_projection(self.image_encoder(images))
        return l2_normalize(z) if normalize else z

    def encode_text(self, text_inputs: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.text_projection(self.text_encoder(text_inputs))
        return l2_normalize(z) if normalize else z

    def encode_sentences(self, sentences: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Embed raw sentences: ``encode_text(tokenize(sentences))``."""
        if self.tokenize is None:
            raise ValueError("this model was built without tokenize=..., so it cannot read raw sentences")
        device = self.logit_scale.device
        return self.encode_text(self.tokenize(list(sentences)).to(device), normalize)

    def forward(self, images: torch.Tensor, text_inputs: torch.Tensor):
        """``(image_embeddings, text_embeddings, logit_scale)`` for a batch of pairs."""
        if len(images) != len(text_inputs):
            raise ValueError(
                f"images and text_inputs must have the same batch size; got {len(images)} and {len(text_inputs)}"
            )
        return self.encode_image(images), self.encode_text(text_inputs), self.scale()

    def loss(self, images: torch.Tensor, text_inputs: torch.Tensor) -> torch.Tensor:
        """:func:`contrastive_loss` of a batch of pairs."""
        return contrastive_loss(*self(images, text_inputs))


def _format(template: str | Callable[[str], str], classname: str) -> str:
    return template(classname) if callable(template) else template.format(classname)


def build_zero_shot_classifier(
    encode_text: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
) -> torch.Tensor:
    """Class weights (D, C) from text alone (Radford et al. 2021, sec. 3.1.4, prompt ensembling).

    For each class, every template (``"a photo of a {}."`` or a callable) is filled in with
    the class name, the sentences are embedded with ``encode_text`` and L2-normalised, their
    mean is taken and normalised again. Column ``c`` is class ``c``'s embedding, so
    ``image_embeddings @ weights`` gives the cosine similarity with every class, the layout of
    open_clip's ``build_zero_shot_classifier``.
    """
    if isinstance(classnames, str) or len(classnames) == 0:
        raise ValueError("classnames must be a non-empty sequence of class names")
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError('templates must be a non-empty sequence of templates such as "a photo of a {}."')
    for template in templates:
        if not callable(template) and (not isinstance(template, str) or "{}" not in template):
            raise ValueError(f"each template must be a callable or a string with a {{}} slot; got {template!r}")
    sentences = [_format(t, c) for c in classnames for t in templates]
    with torch.no_grad():
        embeddings = encode_text(sentences)
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or len(embeddings) != len(sentences):
        got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"encode_text must return a ({len(sentences)}, dim) tensor of embeddings; got {got}")
    embeddings = l2_normalize(embeddings if embeddings.is_floating_point() else embeddings.float())
    per_class = embeddings.reshape(len(classnames), len(templates), -1).mean(dim=1)
    return l2_normalize(per_class).T


def zero_shot_logits(image_embeddings: torch.Tensor, classifier: torch.Tensor, logit_scale: float = 1.0) -> torch.Tensor:
    """``logit_scale * image_embeddings @ classifier``: (B, C) class scores; argmax is the prediction."""
    if image_embeddings.ndim != 2 or classifier.ndim != 2 or image_embeddings.shape[1] != classifier.shape[0]:
        raise ValueError(
            f"image_embeddings (B, D) and classifier (D, C) must share D; got {tuple(image_embeddings.shape)} "
            f"and {tuple(classifier.shape)}"
        )
    return logit_scale * image_embeddings @ classifier


def recall_at_k(
    similarity: torch.Tensor, relevant: torch.Tensor | None = None, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Recall@k of retrieval: the share of queries with a relevant item among their ``k`` best.

    ``similarity`` is (queries, items); ``relevant`` a bool matrix of the same shape, by
    default the diagonal (query ``i``'s one answer is item ``i``). For image-to-text retrieval
    pass image-by-caption similarities; for text-to-image, their transpose.
    """
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be 2-D (queries, items); got shape {tuple(similarity.shape)}")
    n_queries, n_items = similarity.shape
    if relevant is None:
        if n_queries != n_items:
            raise ValueError("without relevant=..., similarity must be square (item i answers query i)")
        relevant = torch.eye(n_queries, dtype=torch.bool, device=similarity.device)
    if relevant.shape != similarity.shape or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a bool tensor of shape {tuple(similarity.shape)}")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers; got {ks!r}")
    order = similarity.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order)  # hits[q, r]: is the item ranked r for query q relevant?
    first_hit = torch.where(hits.any(dim=1), hits.float().argmax(dim=1), torch.full_like(order[:, 0], n_items))
    return {k: (first_hit < k).sum().item() / n_queries for k in ks}
