"""The words and sentences of the colour-digit captions (the data set itself is in ``captions``).

Every caption is one of :data:`CAPTION_TEMPLATES` filled with an image's true attributes, each
an index into a tuple of names. Because the templates are few and every slot takes a handful of
words, the whole caption language is small: :func:`caption_vocabulary` lists its words and
:func:`every_caption` its sentences, and :func:`captions_true_of` decides which captions
describe which images, the relevance judgement of retrieval.
"""

from __future__ import annotations

from string import Formatter

import numpy as np
import torch

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOUR_NAMES = ("red", "green", "blue", "yellow", "purple", "black")
THICKNESS_NAMES = ("thin", "thick")
CAPTION_TEMPLATES = (
    "a {thickness} {foreground} {digit} on a {background} background",
    "a {foreground} {digit} on {background}",
    "the digit {digit} written in {foreground} on {background}",
    "a {thickness} {digit} in {foreground}",
    "{background} background with a {foreground} {digit}",
)


def make_caption(digit: int, foreground: int, background: int, thickness: int, template: int = 0) -> str:
    """The caption of one attribute tuple (indices into the name tuples) with ``CAPTION_TEMPLATES[template]``."""
    for name, value, names in (
        ("digit", digit, DIGIT_NAMES),
        ("foreground", foreground, COLOUR_NAMES),
        ("background", background, COLOUR_NAMES),
        ("thickness", thickness, THICKNESS_NAMES),
        ("template", template, CAPTION_TEMPLATES),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < len(names):
            raise ValueError(f"{name} must be an integer index in [0, {len(names) - 1}]; got {value!r}")
    return CAPTION_TEMPLATES[template].format(
        digit=DIGIT_NAMES[digit],
        foreground=COLOUR_NAMES[foreground],
        background=COLOUR_NAMES[background],
        thickness=THICKNESS_NAMES[thickness],
    )


def template_fields(template: int) -> tuple[str, ...]:
    """The attributes ``CAPTION_TEMPLATES[template]`` mentions, e.g. ``("thickness", "digit", "foreground")``."""
    return tuple(name for _, name, _, _ in Formatter().parse(CAPTION_TEMPLATES[template]) if name)


def captions_true_of(image_attributes: dict[str, torch.Tensor], caption_attributes: dict[str, torch.Tensor]):
    """(N_images, N_captions) bool: caption ``j`` is true of image ``i``.

    A caption is true of an image when every attribute its template mentions has the image's
    value: "a thick nine in black" is true of a thick black nine on any background. This is
    the relevance of retrieval: any true caption is a correct answer, not only the image's own.
    """
    match = torch.ones(len(image_attributes["digit"]), len(caption_attributes["digit"]), dtype=torch.bool)
    for t in range(len(CAPTION_TEMPLATES)):
        uses_t = caption_attributes["template"] == t
        for name in template_fields(t):
            agree = image_attributes[name][:, None] == caption_attributes[name][None, :]
            match &= agree | ~uses_t[None, :]
    return match


def every_caption() -> list[str]:
    """Every distinct caption the data set can contain, sorted (a few thousand at most).

    Small enough to encode once with a frozen text encoder and look up ever after.
    """
    texts = {
        make_caption(d, f, b, t, k)
        for d in range(len(DIGIT_NAMES))
        for f in range(len(COLOUR_NAMES))
        for b in range(len(COLOUR_NAMES))
        if b != f
        for t in range(len(THICKNESS_NAMES))
        for k in range(len(CAPTION_TEMPLATES))
    }
    return sorted(texts)


def caption_vocabulary() -> list[str]:
    """Every word any caption can contain, sorted: the whole vocabulary of the data set."""
    words = set(DIGIT_NAMES) | set(COLOUR_NAMES) | set(THICKNESS_NAMES)
    for template in CAPTION_TEMPLATES:
        words |= {w for w in template.split() if not w.startswith("{")}
    return sorted(words)


def captions_for(digits, foreground, background, thickness, template) -> list[str]:
    """One caption per row of the five index tensors (N,): :func:`make_caption` for a whole batch."""
    rows = zip(digits.tolist(), foreground.tolist(), background.tolist(), thickness.tolist(), template.tolist())
    return [CAPTION_TEMPLATES[k].format(digit=DIGIT_NAMES[d], foreground=COLOUR_NAMES[f], background=COLOUR_NAMES[b],
                                        thickness=THICKNESS_NAMES[t]) for d, f, b, t, k in rows]


__all__ = [
    "CAPTION_TEMPLATES",
    "COLOUR_NAMES",
    "DIGIT_NAMES",
    "THICKNESS_NAMES",
    "caption_vocabulary",
    "captions_for",
    "captions_true_of",
    "every_caption",
    "make_caption",
    "template_fields",
]
