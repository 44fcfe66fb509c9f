"""A text tower trained from scratch: a word-level tokenizer and a small Transformer encoder.

CLIP's text encoder (Radford et al. 2021, sec. 2.4) is a Transformer over byte-pair tokens
whose output at the end-of-text token, after a final LayerNorm, represents the sentence.
This is the same design at the scale of the colour-digit captions: their vocabulary has a
few dozen words, so whole words are the tokens and two layers of width 64 are plenty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from course_lib.nn.encoders.transformer import TransformerEncoder

_WORD = re.compile(r"[a-z0-9]+")


class WordTokenizer:
    """Lower-case words to integer ids, with ``<pad>`` = 0, ``<unk>`` = 1 and ``<eos>`` = 2.

    ``encode`` appends ``<eos>`` to every sentence (the token the encoder reads the sentence
    from) and pads the batch with ``<pad>`` to its longest sentence. Words outside the
    vocabulary become ``<unk>``: a from-scratch text tower knows only the words it was
    built from, one of the things a pretrained sentence encoder does better.
    """

    PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"

    def __init__(self, vocabulary: Iterable[str]):
        words = sorted({w for w in vocabulary})
        if not words:
            raise ValueError("vocabulary must contain at least one word")
        bad = [w for w in words if not isinstance(w, str) or _WORD.fullmatch(w) is None]
        if bad:
            raise ValueError(f"vocabulary words must be lower-case letters or digits; got {bad[:5]}")
        self.tokens = [self.PAD, self.UNK, self.EOS, *words]
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.unk_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "WordTokenizer":
        """A tokenizer whose vocabulary is every word in ``texts``."""
        return cls(w for text in texts for w in cls.split(text))

    @staticmethod
    def split(text: str) -> list[str]:
        """The words of ``text``: runs of letters and digits, lower-cased."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _WORD.findall(text.lower())

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Sequence[str] | str, length: int | None = None) -> torch.Tensor:
        """Token ids (B, L) int64; ``L`` is the longest sentence + 1 (for ``<eos>``) unless ``length`` is given."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("texts must contain at least one sentence")
        rows = [[self.ids.get(w, self.unk_id) for w in self.split(t)] + [self.eos_id] for t in texts]
        longest = max(len(r) for r in rows)
        if length is None:
            length = longest
        elif longest > length:
            raise ValueError(f"length={length} is too short for a sentence of {longest - 1} words plus <eos>")
        out = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The words of one row of ids, stopping at ``<eos>`` (for reading model inputs back)."""
        words = []
        for i in torch.as_tensor(ids).tolist():
            if i == self.eos_id:
                break
            if i != self.pad_id:
                words.append(self.tokens[i])
        return " ".join(words)

    def __repr__(self) -> str:
        return f"WordTokenizer({self.vocab_size} tokens)"


class TextTransformer(nn.Module):
    """Encode token ids (B, L) into sentence features (B, dim), read at each sentence's ``<eos>``.

    Token and learned position embeddings, a :class:`TransformerEncoder` (``depth`` pre-norm
    blocks and a final LayerNorm) whose attention ignores padding, and the feature at the
    ``<eos>`` token, as in CLIP's text tower. (CLIP also masks attention causally, a
    left-over of its language-model design; captions this short do not need it.)
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        max_length: int = 16,
        pad_id: int = 0,
        eos_id: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("dim", dim), ("depth", depth), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.vocab_size, self.dim, self.max_length = vocab_size, dim, max_length
        self.pad_id, self.eos_id = pad_id, eos_id
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        self.encoder = TransformerEncoder(dim, depth, heads, dropout=dropout)

    def _check(self, token_ids: torch.Tensor) -> None:
        if not isinstance(token_ids, torch.Tensor):
            raise TypeError(f"token_ids must be a torch.Tensor of int64 ids, got {type(token_ids).__name__}")
        if token_ids.dtype != torch.long or token_ids.ndim != 2:
            raise ValueError(f"token_ids must be an int64 tensor of shape (batch, length); got "
                             f"{token_ids.dtype} of shape {tuple(token_ids.shape)}")
        if token_ids.shape[1] > self.max_length:
            raise ValueError(f"token_ids has length {token_ids.shape[1]} > max_length={self.max_length}")
        if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size - 1}] (the vocabulary)")
        if not (token_ids == self.eos_id).any(dim=1).all():
            raise ValueError("every row of token_ids must contain the <eos> id (use WordTokenizer.encode)")

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        self._check(token_ids)
        length = token_ids.shape[1]
        x = self.token_embedding(token_ids) + self.position_embedding[:length]
        x = self.encoder(x, mask=token_ids != self.pad_id)  # a padding mask: no token attends to <pad>
        eos_position = (token_ids == self.eos_id).int().argmax(dim=1)  # the first <eos> of each row
        return x[torch.arange(len(x), device=x.device), eos_position]
