"""A digit seen and read: the two-modality task of the fusion chapter.

Each example is one colour digit of :func:`course_lib.data.load_colour_digits` and its
caption ("a thick red seven on a blue background"); the label is the digit. Either
modality alone can name the digit, so a model can be asked to fuse them, and to cope when
one is missing or unreliable. Two corruptions make them unreliable in controlled amounts:

* :func:`add_pixel_noise`: Gaussian noise of standard deviation ``sigma`` on every pixel (one
  ``sigma`` for all images or one per image), a badly lit or half-seen view;
* :func:`swap_digit_words`: with probability ``p`` a caption's digit word is replaced by a
  different digit word, an annotator who is wrong a fraction ``p`` of the time.

Both draw fresh randomness at every call, so a training loop that corrupts each batch
never sees the same noise twice and cannot memorise it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib.data.captions import CAPTION_TEMPLATES, DIGIT_NAMES, caption_vocabulary, load_colour_digits


@dataclass(eq=False)
class BimodalDigits:
    """Images (N, 3, size, size) in [0, 1], caption token ids (N, L), digit labels (N,).

    ``tokenizer`` turns captions into ids (``<pad>`` = 0); ``digit_ids[d]`` is the id of the
    word naming digit ``d``.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    tokenizer: object
    digit_ids: torch.Tensor
    split: str = "train"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, tokens, labels)``: what ``course_lib.train.fit`` draws batches from."""
        return self.images, self.tokens, self.labels

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        length = self.tokens.shape[1]
        return f"BimodalDigits(split={self.split!r}, {len(self)} images of {shape}, captions of <= {length} tokens)"


def load_bimodal_digits(split: str = "train", size: int = 8, copies: int = 1, seed: int = 0) -> BimodalDigits:
    """The colour digits of ``split`` with their captions as token ids (see the module docstring).

    ``size=8`` is the bundled digits' own resolution. Every caption is padded to the length of
    the longest template, so all splits share one length.
    """
    from course_lib.nn.encoders.text import WordTokenizer

    data = load_colour_digits(split, size=size, seed=seed, copies=copies)
    tokenizer = WordTokenizer(caption_vocabulary())
    length = 1 + max(len(template.split()) for template in CAPTION_TEMPLATES)  # every name is one word; + <eos>
    tokens = tokenizer.encode(data.captions, length=length)
    digit_ids = torch.tensor([tokenizer.ids[word] for word in DIGIT_NAMES])
    return BimodalDigits(data.images, tokens, data.labels, list(data.captions), tokenizer, digit_ids, split)


def add_pixel_noise(images: torch.Tensor, sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images + sigma * eps`` with fresh standard normal ``eps`` (from ``generator`` if given).

    ``sigma`` is one number, or one per image (a tensor of shape (N,)), so that a batch can mix
    clean and very noisy views and a model must judge each view's reliability from the view itself.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {type(images).__name__}")
    if isinstance(sigma, torch.Tensor):
        if sigma.ndim > 1 or (sigma.ndim == 1 and len(sigma) != len(images)) or bool((sigma < 0).any()):
            raise ValueError(
                f"sigma must be a number >= 0 or one per image ({len(images)}), got shape {tuple(sigma.shape)}"
            )
        sigma = sigma.to(images).reshape(-1, *([1] * (images.ndim - 1))) if sigma.ndim else sigma.to(images)
    elif isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"sigma must be a number >= 0 or one per image, got {sigma!r}")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return images + sigma * noise


def swap_digit_words(
    tokens: torch.Tensor, digit_ids: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability ``p`` per caption, replace its digit word by a different digit word, uniformly.

    ``tokens`` (N, L) int64; ``digit_ids`` (10,) the ids of the digit words. Captions whose
    word is swapped now name a digit that is *not* in the picture: the two modalities
    disagree, and only the image is right.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise ValueError(f"tokens must be an integer tensor of shape (captions, length), got {type(tokens).__name__}")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    digit_ids = digit_ids.to(tokens.device)
    matches = tokens[..., None] == digit_ids  # (N, L, 10)
    said = matches.long().argmax(-1)  # which digit each digit word names (0 elsewhere, unused)
    swap = (torch.rand(len(tokens), 1, generator=generator) < p).to(tokens.device) & matches.any(-1)
    shift = torch.randint(1, len(digit_ids), (len(tokens), 1), generator=generator).to(tokens.device)
    return torch.where(swap, digit_ids[(said + shift) % len(digit_ids)], tokens)


__all__ = ["BimodalDigits", "add_pixel_noise", "load_bimodal_digits", "swap_digit_words"]
