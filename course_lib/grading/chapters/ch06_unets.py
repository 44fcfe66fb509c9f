"""Chapter 06, U-Nets and time conditioning: five graded functions.

The references are written here in float64 from the definitions (the library's layers
compute in float32, too coarse for a six-digit comparison), except ``skip_channels``,
which is read off a real ``UNet2D``. Inputs are float64 (integers int64).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.grading.spec import Question

# The library's versions of the graded layers: withheld from the sandbox's view of course_lib.
# (The exercise notebook's check cells import them; in the sandbox those cells fail, which
# the grader tolerates, and the graded functions themselves need nothing from course_lib.)
LIBRARY_ANSWERS = ("course_lib/nn",)


# --- sinusoidal_embedding ---------------------------------------------------------------


def _embedding_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(t=np.array([0.0, 1.0, 10.0, 999.0]), dim=8)]
    for _ in range(3):
        batch = int(rng.integers(1, 7))
        t = rng.uniform(0, 1000, size=batch)
        t[0] = float(rng.integers(0, 1000))  # integer timesteps as well as fractional ones
        cases.append(dict(t=t, dim=int(2 * rng.integers(1, 33))))
    cases.append(dict(t=rng.uniform(0, 1, size=5), dim=16, max_period=float(rng.uniform(2.0, 100.0))))
    return cases


def _embedding_reference(t, dim, max_period=10000.0):
    half = int(dim) // 2
    frequencies = float(max_period) ** (-np.arange(half, dtype=np.float64) / half)
    angles = np.asarray(t, dtype=np.float64)[:, None] * frequencies[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


# --- group_norm -------------------------------------------------------------------------


def _group_norm_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for groups, per_group in ((1, 4), (2, 3), (4, 2), (int(rng.integers(1, 5)), int(rng.integers(1, 5)))):
        shape = (int(rng.integers(1, 4)), groups * per_group, int(rng.integers(1, 6)), int(rng.integers(2, 6)))
        scale, shift = float(rng.uniform(0.1, 5)), float(rng.uniform(-3, 3))
        cases.append(dict(x=rng.standard_normal(shape) * scale + shift, groups=groups))
    cases[-1]["eps"] = float(10 ** rng.uniform(-6, -1))  # eps is an argument, not a constant
    return cases


def _group_norm_reference(x, groups, eps=1e-5):
    return F.group_norm(torch.from_numpy(x), int(groups), eps=float(eps)).numpy()


# --- receptive_field --------------------------------------------------------------------


def _field_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(kernel_sizes=np.array([3, 3, 3], dtype=np.int64), strides=np.array([1, 1, 1], dtype=np.int64))]
    for n in (1, int(rng.integers(2, 6)), int(rng.integers(6, 12))):
        cases.append(dict(
            kernel_sizes=rng.choice([1, 2, 3, 5, 7], size=n).astype(np.int64),
            strides=rng.choice([1, 1, 2, 3], size=n).astype(np.int64),
        ))
    return cases


def _field_reference(kernel_sizes, strides):
    field, jump = 1, 1
    for k, s in zip(kernel_sizes, strides):
        field += (int(k) - 1) * jump
        jump *= int(s)
    return np.asarray(field, dtype=np.int64)


# --- spatial_self_attention -------------------------------------------------------------


def _attention_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for heads, head_dim in ((1, 4), (2, 3), (int(rng.integers(1, 5)), int(rng.integers(1, 5)))):
        c = heads * head_dim
        shape = (int(rng.integers(1, 4)), c, int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        weights = {name: rng.standard_normal((c, c)) / math.sqrt(c) for name in ("w_q", "w_k", "w_v", "w_o")}
        cases.append(dict(x=rng.standard_normal(shape), heads=heads, **weights))
    return cases


def _attention_reference(x, w_q, w_k, w_v, w_o, heads):
    x = torch.from_numpy(x)
    b, c, h, w = x.shape
    d = c // int(heads)
    tokens = x.flatten(2).transpose(1, 2)
    q, k, v = ((tokens @ torch.from_numpy(m).T).reshape(b, h * w, int(heads), d).transpose(1, 2) for m in (w_q, w_k, w_v))
    mixed = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v).transpose(1, 2).reshape(b, h * w, c)
    return (x + (mixed @ torch.from_numpy(w_o).T).transpose(1, 2).reshape(b, c, h, w)).numpy()


# --- skip_channels ----------------------------------------------------------------------


def _skip_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(base_channels=32, channel_mults=np.array([1, 2], dtype=np.int64), layers_per_level=1)]
    for _ in range(3):
        levels = int(rng.integers(1, 5))
        cases.append(dict(
            base_channels=int(rng.integers(1, 9)) * 4,
            channel_mults=rng.integers(1, 5, size=levels).astype(np.int64),
            layers_per_level=int(rng.integers(1, 4)),
        ))
    return cases


def _skip_reference(base_channels, channel_mults, layers_per_level):
    from course_lib.nn import UNet2D
    from course_lib.nn.blocks import Downsample

    mults = tuple(int(m) for m in channel_mults)
    unet = UNet2D(base_channels=int(base_channels), channel_mults=mults, layers_per_level=int(layers_per_level),
                  attention_levels=(False,) * len(mults), groups=1, heads=1)
    channels = [unet.conv_in.out_channels]
    for stage in unet.down:
        channels.append(stage.conv.out_channels if isinstance(stage, Downsample) else stage.block.conv2.out_channels)
    return np.asarray(channels, dtype=np.int64)


QUESTIONS = [
    Question(
        name="sinusoidal_embedding",
        points=1,
        make_cases=_embedding_cases,
        reference=_embedding_reference,
        tensor_args=("t",),
        dtype="float64",
        summary="[sin(t w_i), cos(t w_i)] with w_i = max_period**(-i/h), h = dim/2 (float64, (B, dim))",
    ),
    Question(
        name="group_norm",
        points=2,
        make_cases=_group_norm_cases,
        reference=_group_norm_reference,
        tensor_args=("x",),
        dtype="float64",
        summary="per image and group of channels: (x - mean) / sqrt(var + eps), biased variance, no affine",
    ),
    Question(
        name="receptive_field",
        points=2,
        make_cases=_field_cases,
        reference=_field_reference,
        rtol=0.0,
        atol=0.0,
        summary="1 + sum_i (k_i - 1) prod_{j<i} s_j; a Python int",
    ),
    Question(
        name="spatial_self_attention",
        points=2,
        make_cases=_attention_cases,
        reference=_attention_reference,
        tensor_args=("x", "w_q", "w_k", "w_v", "w_o"),
        dtype="float64",
        summary="x + W_o multi-head softmax(QK^T/sqrt(d))V over the H*W positions (float64)",
    ),
    Question(
        name="skip_channels",
        points=1,
        make_cases=_skip_cases,
        reference=_skip_reference,
        rtol=0.0,
        atol=0.0,
        summary="channels of UNet2D's skip stack in push order; a 1-D integer tensor",
    ),
]
