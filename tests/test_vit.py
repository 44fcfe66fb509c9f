"""The Vision Transformer, its parts and the CNN it is compared with (course_lib.nn.encoders).

The whole ViT is checked against Hugging Face's ``ViTModel`` with the same weights; the
parts against their definitions (a patch embedding is a strided convolution, a padding
mask hides padding, attention without position embeddings ignores patch order).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import train
from course_lib.nn.encoders import CNN, PatchEmbedding, TransformerEncoder, ViT, num_patches, patchify, unpatchify
from course_lib.nn.encoders.transformer import TransformerBlock
from course_lib.nn.encoders.vit import attention_rollout, count_parameters, mean_attention_distance


def _images(b=2, c=3, h=8, w=12, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


# --- patches ----------------------------------------------------------------------------------


def test_patchify_numbers_patches_row_by_row_and_flattens_channel_first():
    images = _images(h=8, w=12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 2 * 3, 3 * 16)
    for index in range(6):
        row, col = divmod(index, 3)
        block = images[:, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
        torch.testing.assert_close(patches[:, index], block.reshape(2, -1))


def test_unpatchify_inverts_patchify():
    images = _images(h=6, w=9)
    torch.testing.assert_close(unpatchify(patchify(images, 3), 3, (6, 9)), images)


def test_num_patches():
    assert num_patches(224, 16) == 196
    assert num_patches((8, 12), 4) == 6


def test_patch_embedding_is_a_strided_convolution():
    embed = PatchEmbedding((8, 12), 4, in_channels=3, dim=5)
    conv = nn.Conv2d(3, 5, kernel_size=4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.reshape(5, 3, 4, 4))
        conv.bias.copy_(embed.proj.bias)
    images = _images()
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, dim, rows, cols) -> (B, N, dim), row by row
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)


# --- agreement with Hugging Face's ViT ------------------------------------------------------------


def _hf_state_dict(vit: ViT, names: set[str]) -> dict[str, torch.Tensor]:
    """Our ViT's weights under transformers' parameter names (v5 names, or v4's where those are used)."""
    v5 = "layers.0.attention.q_proj.weight" in names
    state = {
        "embeddings.cls_token": vit.cls_token,
        "embeddings.position_embeddings": vit.pos_embedding,
        "embeddings.patch_embeddings.projection.weight": vit.patch_embed.proj.weight.reshape(
            vit.dim, vit.patch_embed.in_channels, vit.patch_embed.patch_size, vit.patch_embed.patch_size
        ),
        "embeddings.patch_embeddings.projection.bias": vit.patch_embed.proj.bias,
        "layernorm.weight": vit.encoder.norm.weight,
        "layernorm.bias": vit.encoder.norm.bias,
    }
    for i, block in enumerate(vit.encoder.blocks):
        ours = {
            "q": block.attn.to_q, "k": block.attn.to_k, "v": block.attn.to_v, "o": block.attn.to_out,
            "fc1": block.mlp[0], "fc2": block.mlp[3], "ln1": block.norm1, "ln2": block.norm2,
        }
        if v5:
            theirs = {
                "q": f"layers.{i}.attention.q_proj", "k": f"layers.{i}.attention.k_proj",
                "v": f"layers.{i}.attention.v_proj", "o": f"layers.{i}.attention.o_proj",
                "fc1": f"layers.{i}.mlp.fc1", "fc2": f"layers.{i}.mlp.fc2",
                "ln1": f"layers.{i}.layernorm_before", "ln2": f"layers.{i}.layernorm_after",
            }
        else:
            theirs = {
                "q": f"encoder.layer.{i}.attention.attention.query", "k": f"encoder.layer.{i}.attention.attention.key",
                "v": f"encoder.layer.{i}.attention.attention.value", "o": f"encoder.layer.{i}.attention.output.dense",
                "fc1": f"encoder.layer.{i}.intermediate.dense", "fc2": f"encoder.layer.{i}.output.dense",
                "ln1": f"encoder.layer.{i}.layernorm_before", "ln2": f"encoder.layer.{i}.layernorm_after",
            }
        for key, module in ours.items():
            state[f"{theirs[key]}.weight"] = module.weight
            state[f"{theirs[key]}.bias"] = module.bias
    return {name: value.detach().clone() for name, value in state.items()}


def test_vit_matches_hugging_face_vit_with_the_same_weights():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ours = ViT(image_size=8, patch_size=2, in_channels=3, dim=16, depth=2, heads=4).eval()
    with torch.no_grad():  # non-trivial class token and norms, so that a mix-up would show
        ours.cls_token.normal_()
        for module in ours.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=8,
        patch_size=2, num_channels=3, layer_norm_eps=1e-5, hidden_act="gelu", qkv_bias=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    reference = transformers.ViTModel(config, add_pooling_layer=False).eval()
    names = set(reference.state_dict())
    state = _hf_state_dict(ours, names)
    assert set(state) == names, sorted(names ^ set(state))
    reference.load_state_dict(state)
    images = _images(b=3, c=3, h=8, w=8)
    with torch.no_grad():
        expected = reference(pixel_values=images).last_hidden_state
        torch.testing.assert_close(ours.encode(images), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.features(images), expected[:, 0], rtol=1e-4, atol=1e-5)


# --- the encoder ---------------------------------------------------------------------------------


def test_attention_weights_path_agrees_with_the_fused_kernel():
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=3, heads=4).eval()
    x = torch.randn(2, 7, 16)
    out, weights = encoder(x, return_attention=True)
    torch.testing.assert_close(out, encoder(x), rtol=1e-5, atol=1e-5)
    assert weights.shape == (2, 3, 4, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4, 7))


def test_padding_mask_hides_padding_from_the_real_tokens():
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=8, depth=2, heads=2).eval()
    real = torch.randn(1, 4, 8)
    padded = torch.cat([real, torch.randn(1, 3, 8)], dim=1)
    other_padding = torch.cat([real, 100 * torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    alone = encoder(real)
    out, weights = encoder(padded, mask=mask, return_attention=True)
    torch.testing.assert_close(out[:, :4], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(encoder(other_padding, mask=mask)[:, :4], alone, rtol=1e-5, atol=1e-5)
    assert weights[..., 4:].abs().max() == 0
    unmasked = encoder(padded)[:, :4]
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # the mask is what made the difference


def test_without_position_embeddings_patch_order_does_not_matter():
    torch.manual_seed(0)
    vit = ViT(image_size=8, patch_size=2, in_channels=1, dim=16, depth=2, heads=2, num_classes=3).eval()
    images = _images(b=2, c=1, h=8, w=8)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    shuffled = unpatchify(patchify(images, 2)[:, order], 2, 8)
    with torch.no_grad():
        assert not torch.allclose(vit(images), vit(shuffled), atol=1e-4)  # position embeddings see the shuffle
        vit.pos_embedding.zero_()
        torch.testing.assert_close(vit(images), vit(shuffled), rtol=1e-5, atol=1e-5)


def test_mean_pooling_has_no_class_token():
    vit = ViT(image_size=(8, 4), patch_size=2, in_channels=1, dim=8, depth=1, heads=2, pool="mean")
    assert vit.cls_token is None and vit.num_tokens == vit.num_patches == 8
    assert vit.grid == (4, 2)
    images = _images(b=3, c=1, h=8, w=4)
    torch.testing.assert_close(vit(images), vit.encode(images).mean(1))
    assert vit.attention_maps(images).shape == (3, 1, 2, 8, 8)
    assert vit.training  # attention_maps restores the mode it found


def test_vit_and_cnn_fit_a_small_batch():
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(32) % 4

    def loss_fn(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    for model in (ViT(8, 2, 1, 16, 2, 2, num_classes=4), CNN(1, 4, (8, 16))):
        result = train.fit(model, loss_fn, (x, y), steps=60, lr=3e-3, progress=False, device="cpu")
        assert result.losses[-1] < 0.3 * result.losses[0], type(model).__name__


# --- reading attention ---------------------------------------------------------------------------


def test_attention_rollout_multiplies_the_layers_with_the_residual():
    weights = torch.rand(2, 3, 4, 5, 5).softmax(-1)
    rollout = attention_rollout(weights)
    expected = torch.eye(5).expand(2, 5, 5)
    for layer in range(3):
        expected = (0.5 * weights[:, layer].mean(1) + 0.5 * torch.eye(5)) @ expected
    torch.testing.assert_close(rollout, expected)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))


def test_mean_attention_distance():
    n = 4  # a 2x2 grid
    on_self = torch.eye(n).expand(1, 3, n, n)
    torch.testing.assert_close(mean_attention_distance(on_self, (2, 2)), torch.zeros(3))
    uniform = torch.full((2, 2, 1, n, n), 1 / n)
    # from any patch of a 2x2 grid: distances 0, 1, 1, sqrt(2) patches, times 4 pixels a patch
    expected = torch.full((2, 1), 4 * (2 + math.sqrt(2)) / 4)
    torch.testing.assert_close(mean_attention_distance(uniform, (2, 2), patch_size=4), expected)


# --- the CNN ------------------------------------------------------------------------------------


def test_cnn_receptive_fields_match_the_gradient():
    cnn = CNN(1, None, channels=(4, 4, 4)).eval()
    fields = cnn.receptive_fields()
    assert [r for _, r in fields] == [3, 5, 6, 10, 14, 16, 24, 32]
    # Max-pooling passes the gradient to one pixel of each window; average pooling has the same
    # window and stride, hence the same receptive field, and passes it to all of them.
    body = nn.Sequential(*(nn.AvgPool2d(2) if isinstance(m, nn.MaxPool2d) else m for m in cnn.body))
    x = torch.randn(1, 1, 64, 64, requires_grad=True)
    feature_map = body(x)  # (1, 4, 16, 16)
    feature_map[0, :, 8, 8].sum().backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    assert rows.max() - rows.min() + 1 == fields[-1][1]


def test_cnn_shapes_and_sizes():
    cnn = CNN(in_channels=3, num_classes=10, channels=(8, 16))
    assert cnn.features(torch.zeros(2, 3, 8, 8)).shape == (2, 16) and cnn.feature_dim == 16
    assert cnn(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    assert count_parameters(CNN(1, None, (16, 32))) < count_parameters(ViT(8, 2, 1, 32, 2, 4, num_classes=10))


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: patchify(torch.zeros(1, 8, 8), 2), ValueError, "images must be a 4-D tensor"),
        (lambda: patchify(torch.zeros(1, 1, 8, 6), 4), ValueError, "not divisible by patch_size=4"),
        (lambda: patchify([[1.0]], 2), TypeError, "images must be a torch.Tensor"),
        (lambda: patchify(torch.zeros(1, 1, 8, 8), 0), ValueError, "patch_size must be a positive integer"),
        (lambda: unpatchify(torch.zeros(1, 5, 4), 2, 4), ValueError, "do not tile"),
        (lambda: ViT(10, 4, 1, 8, 1, 2), ValueError, "not divisible by patch_size=4"),
        (lambda: ViT(8, 2, 1, 8, 1, 3), ValueError, "dim must be a multiple of heads"),
        (lambda: ViT(8, 2, 1, 8, 1, 2, pool="max"), ValueError, "pool must be one of"),
        (lambda: ViT(8, 2, 1, 8, 1, 2)(torch.zeros(2, 1, 16, 16)), ValueError, "images must have shape (batch, 1, 8, 8)"),
        (lambda: ViT(8, 2, 1, 8, 1, 2)(torch.zeros(2, 3, 8, 8)), ValueError, "images must have shape (batch, 1, 8, 8)"),
        (lambda: ViT(8, 2, 1, 8, 1, 2)(torch.zeros(1, 8, 8)), ValueError, "add a batch dimension"),
        (lambda: TransformerEncoder(8, 1, 2)(torch.zeros(2, 5, 6)), ValueError, "x must have shape (batch, tokens, 8)"),
        (lambda: TransformerEncoder(8, 1, 2)(torch.zeros(2, 5, 8), mask=torch.ones(3, 5, dtype=torch.bool)),
         ValueError, "padding mask of shape (batch, tokens) = (2, 5)"),
        (lambda: TransformerEncoder(8, 1, 2)(torch.zeros(2, 5, 8), mask=torch.ones(2, 5)), TypeError, "boolean"),
        (lambda: TransformerEncoder(8, 1, 2)(torch.zeros(1, 2, 8), mask=torch.tensor([[False, False]])),
         ValueError, "no token to attend to"),
        (lambda: TransformerEncoder(8, 1, 2)(torch.zeros(2, 5, 8), mask=torch.ones(3, 1, 5, 5, dtype=torch.bool)),
         ValueError, "must broadcast to"),
        (lambda: TransformerBlock(8, 2, dropout=1.5), ValueError, "dropout must be in [0, 1)"),
        (lambda: CNN(1, 10)(torch.zeros(1, 8, 8)), ValueError, "images must have shape (batch, 1, height, width)"),
        (lambda: CNN(3, 10)(torch.zeros(1, 1, 8, 8)), ValueError, "images must have shape (batch, 3, height, width)"),
        (lambda: CNN(1, 10, (4, 4, 4, 4))(torch.zeros(1, 1, 4, 4)), ValueError, "too small"),
        (lambda: CNN(1, 10, ()), ValueError, "channels must be a non-empty sequence"),
        (lambda: mean_attention_distance(torch.zeros(1, 2, 5, 5), (2, 2)), ValueError, "2x2 grid"),
        (lambda: attention_rollout(torch.zeros(1, 2, 5, 5)), ValueError, "(batch, depth, heads, tokens, tokens)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)
