"""The shared layers: sinusoidal time embedding and (cross-)attention."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.nn import Attention, SinusoidalTimeEmbedding


def test_time_embedding_is_sines_then_cosines_of_geometric_frequencies():
    emb = SinusoidalTimeEmbedding(6, max_period=100.0)
    t = torch.tensor([0.0, 3.0])
    out = emb(t)
    freqs = torch.tensor([1.0, 100 ** (-1 / 3), 100 ** (-2 / 3)])
    expected = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(out, expected)
    assert emb(7).shape == (1, 6)  # a scalar timestep


def test_time_embedding_separates_nearby_timesteps_better_than_a_scalar():
    emb = SinusoidalTimeEmbedding(64)
    out = emb(torch.arange(1000))
    # every pair of distinct timesteps maps to distinct vectors, and neighbours are closer than far-apart steps
    assert (out[1:] - out[:-1]).norm(dim=1).min() > 1e-3
    assert (out[500] - out[501]).norm() < (out[500] - out[900]).norm()


@pytest.mark.parametrize("dim", [0, 3, 2.0])
def test_time_embedding_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        SinusoidalTimeEmbedding(dim)


def test_time_embedding_rejects_2d_timesteps():
    with pytest.raises(ValueError, match="t must"):
        SinusoidalTimeEmbedding(8)(torch.zeros(2, 2))


def _reference_attention(layer: Attention, x, context, mask=None):
    """Eq. 1 of Vaswani et al., head by head, with explicit loops."""
    q, k, v = layer.to_q(x), layer.to_k(context), layer.to_v(context)
    heads = []
    mask = None if mask is None else mask[:, 0]  # (B, 1, N, M): one mask for every head
    for h in range(layer.heads):
        cols = slice(h * layer.head_dim, (h + 1) * layer.head_dim)
        scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(layer.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        heads.append(scores.softmax(-1) @ v[..., cols])
    return layer.to_out(torch.cat(heads, dim=-1))


def test_cross_attention_matches_the_formula_with_and_without_weights():
    torch.manual_seed(0)
    layer = Attention(dim=12, heads=3, context_dim=5)
    x, context = torch.randn(2, 4, 12), torch.randn(2, 7, 5)
    mask = torch.rand(2, 1, 4, 7) > 0.3
    mask[..., 0] = True  # every query may attend somewhere
    expected = _reference_attention(layer, x, context, mask)
    torch.testing.assert_close(layer(x, context, mask=mask), expected, atol=1e-6, rtol=1e-5)
    out, weights = layer(x, context, mask=mask, return_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    assert weights.shape == (2, 3, 4, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))
    assert (weights[~mask.expand_as(weights)] == 0).all()


def test_self_attention_is_permutation_equivariant():
    torch.manual_seed(1)
    layer = Attention(dim=8, heads=2)
    x = torch.randn(1, 5, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(layer(x)[:, perm], layer(x[:, perm]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "x_shape, context_shape, message",
    [
        ((2, 4, 7), None, "x must have shape"),
        ((2, 8), None, "x must have shape"),
        ((2, 4, 8), (2, 3, 6), "context must have shape"),
        ((2, 4, 8), (3, 3, 5), "same batch size"),
    ],
)
def test_attention_rejects_mismatched_shapes(x_shape, context_shape, message):
    layer = Attention(dim=8, heads=2, context_dim=5 if context_shape else None)
    context = None if context_shape is None else torch.randn(*context_shape)
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(*x_shape), context)


def test_attention_rejects_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="multiple of heads"):
        Attention(dim=10, heads=4)
