"""Encoders: each modality's tower and the projection heads that join them in one space.

``ProjectionHead`` and ``l2_normalize`` (the joint space), ``ConvImageEncoder`` (a small
image tower), ``WordTokenizer`` and ``TextTransformer`` (a text tower trained from scratch),
``load_sentence_encoder`` (the frozen, pretrained MiniLM, shipped offline), and chapter 01's
``ViT`` (with ``patchify`` and the ``TransformerEncoder`` it is built on) and ``CNN``.
"""

from course_lib.nn.encoders.image import ConvImageEncoder
from course_lib.nn.encoders.projection import ProjectionHead, l2_normalize
from course_lib.nn.encoders.sentence import (
    MINILM_DIM,
    SentenceEncoder,
    load_sentence_encoder,
    sentence_encoder_available,
)
from course_lib.nn.encoders.text import TextTransformer, WordTokenizer
from course_lib.nn.encoders.vision import CNN
from course_lib.nn.encoders.transformer import TransformerBlock, TransformerEncoder
from course_lib.nn.encoders.vit import (
    PatchEmbedding,
    ViT,
    attention_rollout,
    mean_attention_distance,
    num_patches,
    patchify,
    unpatchify,
)

__all__ = [
    "CNN",
    "ConvImageEncoder",
    "MINILM_DIM",
    "PatchEmbedding",
    "ProjectionHead",
    "SentenceEncoder",
    "TextTransformer",
    "TransformerBlock",
    "TransformerEncoder",
    "ViT",
    "WordTokenizer",
    "attention_rollout",
    "l2_normalize",
    "load_sentence_encoder",
    "mean_attention_distance",
    "num_patches",
    "patchify",
    "sentence_encoder_available",
    "unpatchify",
]
