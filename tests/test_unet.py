"""The U-Net of the diffusion chapters: shapes, conditioning, bad input, and agreement with diffusers."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.nn import ResidualBlock, SpatialAttention, UNet2D
from course_lib.nn.unet_diffusers import diffusers_config, diffusers_names, load_diffusers_state_dict

SMALL = dict(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True), groups=4, heads=2)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the zero initialisations (which make blocks start as the identity) by random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def test_default_signature_on_8x8_digits():
    model = UNet2D()
    x = torch.randn(5, 1, 8, 8)
    out = model(x, torch.randint(0, 1000, (5,)))
    assert out.shape == (5, 1, 8, 8)
    assert model(x, 7).shape == (5, 1, 8, 8)  # a Python int, broadcast to the batch
    assert model(x, torch.tensor(0.25)).shape == (5, 1, 8, 8)  # a 0-d float tensor (flow-matching time)
    assert model(x, torch.rand(5)).shape == (5, 1, 8, 8)


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(in_channels=3, out_channels=6, channel_mults=(1, 2, 2), attention_levels=(False, False, True)),
         (2, 3, 16, 12)),
        (dict(layers_per_level=2, channel_mults=(1,), attention_levels=(True,)), (2, 1, 5, 7)),
    ],
)
def test_other_shapes(kwargs, shape):
    model = UNet2D(**{**SMALL, **kwargs})
    out = model(torch.randn(shape), torch.tensor([1, 2]))
    assert out.shape == (shape[0], model.out_channels, *shape[2:])


def test_time_changes_the_output_and_images_do_not_interact():
    model = randomise(UNet2D(**SMALL)).eval()
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([10, 20, 30, 40])
    out = model(x, t)
    assert (model(x, t + 100) - out).abs().max() > 1e-3
    # group norm, not batch norm: each image's output depends on that image alone
    torch.testing.assert_close(model(x[1:2], t[1:2]), out[1:2], rtol=1e-4, atol=1e-5)


def test_blocks_start_as_identity():
    block = ResidualBlock(8, 8, emb_dim=16, groups=4)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x, torch.randn(2, 16)), x)
    attention = SpatialAttention(8, heads=2, groups=4)
    torch.testing.assert_close(attention(x), x)


def test_spatial_attention_matches_explicit_softmax():
    attention = randomise(SpatialAttention(8, heads=2, groups=4))
    x = torch.randn(2, 8, 3, 5)
    tokens = F.group_norm(x, 4, attention.norm.weight, attention.norm.bias).flatten(2).transpose(1, 2)
    a = attention.attention
    q, k, v = (layer(tokens).view(2, 15, 2, 4).transpose(1, 2) for layer in (a.to_q, a.to_k, a.to_v))
    mixed = ((q @ k.transpose(-1, -2)) / 2.0).softmax(-1) @ v  # sqrt(head_dim = 4) = 2
    expected = x + a.to_out(mixed.transpose(1, 2).reshape(2, 15, 8)).transpose(1, 2).reshape(2, 8, 3, 5)
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def test_class_labels():
    model = randomise(UNet2D(**SMALL, num_classes=3)).eval()
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([5, 5])
    torch.testing.assert_close(model(x, t), model(x, t, y=torch.tensor([3, 3])))  # None = the null label
    assert (model(x, t, y=torch.tensor([0, 0])) - model(x, t, y=torch.tensor([1, 1]))).abs().max() > 1e-3


def test_cross_attention_context():
    model = randomise(UNet2D(**SMALL, context_dim=6)).eval()
    x = torch.randn(2, 1, 8, 8)
    c = torch.randn(2, 3, 6)
    assert model(x, 1, context=c).shape == x.shape
    assert (model(x, 1, context=c) - model(x, 1, context=c.flip(0))).abs().max() > 1e-3
    with pytest.raises(ValueError, match="context"):
        model(x, 1)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m(torch.randn(2, 3, 8, 8), 1), ValueError, "x must have 1 channels"),
        (lambda m: m(torch.randn(2, 1, 6, 8), 1), ValueError, "divisible by 4"),
        (lambda m: m(torch.randn(1, 8, 8), 1), ValueError, "x must be a tensor of shape"),
        (lambda m: m(torch.randn(2, 1, 8, 8), torch.zeros(2, 1)), ValueError, r"t must be a scalar or have shape \(2,\)"),
        (lambda m: m(torch.randn(2, 1, 8, 8), torch.zeros(3)), ValueError, r"t must be a scalar or have shape \(2,\)"),
        (lambda m: m(torch.randn(2, 1, 8, 8), "5"), TypeError, "t must be a tensor or a number"),
        (lambda m: m(torch.randn(2, 1, 8, 8), torch.ones(2, dtype=torch.bool)), TypeError, "t must hold"),
        (lambda m: m(torch.randn(2, 1, 8, 8), 1, y=torch.tensor([0, 1])), ValueError, "without num_classes"),
        (lambda m: m(torch.randn(2, 1, 8, 8), 1, context=torch.randn(2, 3, 4)), ValueError, "without context_dim"),
    ],
)
def test_bad_forward_input_names_the_argument(call, error, match):
    model = UNet2D(**{**SMALL, "channel_mults": (1, 2, 2), "attention_levels": (False, False, True)})
    with pytest.raises(error, match=match):
        call(model)


def test_bad_labels_are_rejected():
    model = UNet2D(**SMALL, num_classes=3)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\]"):
        model(x, 1, y=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="y must be an integer tensor"):
        model(x, 1, y=torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attention_levels=(True,)), "attention_levels must hold one bool per level"),
        (dict(channel_mults=()), "channel_mults"),
        (dict(channel_mults=(1, 0)), "channel_mults"),
        (dict(base_channels=12), r"channels of level 0 \(12\) must be a positive multiple of groups \(8\)"),
        (dict(heads=5), r"multiple of heads \(5\)"),
        (dict(layers_per_level=0), "layers_per_level must be a positive integer"),
        (dict(dropout=1.0), "dropout"),
        (dict(num_classes=0), "num_classes"),
        (dict(in_channels=1.5), "in_channels"),
    ],
)
def test_bad_construction_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet2D(**kwargs)


def test_overfits_one_batch_of_noise_prediction():
    torch.manual_seed(0)
    model = UNet2D(**SMALL)
    x0 = torch.rand(16, 1, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (16,))
    a = (1 - torch.linspace(0, 0.99, 1000))[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model(xt, t), noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# --- agreement with diffusers' UNet2DModel, the same architecture --------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(in_channels=3, base_channels=16, channel_mults=(1, 2, 2), attention_levels=(False, True, True),
             layers_per_level=2, num_classes=4),
    ],
)
def test_same_function_as_diffusers_unet2dmodel(kwargs):
    diffusers = pytest.importorskip("diffusers")
    ours = UNet2D(**kwargs).eval()
    reference = diffusers.UNet2DModel(**diffusers_config(ours)).eval()
    randomise(reference, seed=1)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    load_diffusers_state_dict(ours, reference.state_dict())
    x = torch.randn(3, ours.in_channels, 16, 16)
    t = torch.tensor([0, 417, 999])
    y = torch.tensor([0, 2, 4]) if ours.num_classes else None
    with torch.no_grad():
        expected = reference(x, t, class_labels=y).sample
        torch.testing.assert_close(ours(x, t, y), expected, rtol=1e-4, atol=1e-4)
    assert expected.abs().mean() > 0.05  # not two networks that both output ~0


def test_diffusers_names_cover_every_weight_once():
    model = UNet2D(**SMALL, layers_per_level=2)
    names = diffusers_names(model)
    assert set(names) == set(model.state_dict())
    assert len(set(names.values())) == len(names)


def test_diffusers_config_rejects_what_diffusers_cannot_build():
    with pytest.raises(ValueError, match="context_dim"):
        diffusers_config(UNet2D(**SMALL, context_dim=4))
    with pytest.raises(ValueError, match="one attention head size"):
        diffusers_config(UNet2D(**{**SMALL, "attention_levels": (True, True)}))
    with pytest.raises(TypeError, match="unet must be a UNet2D"):
        diffusers_config(torch.nn.Linear(2, 2))


def test_without_skip_connections_the_decoder_sees_only_the_bottleneck():
    model = randomise(UNet2D(**SMALL, skip_connections=False)).eval()
    with_skips = UNet2D(**SMALL)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in with_skips.parameters())
    x = torch.randn(2, 1, 8, 8)
    assert model(x, 3).shape == x.shape
    with pytest.raises(ValueError, match="skip_connections"):
        diffusers_config(model)
    with pytest.raises(ValueError, match="skip_connections must be True or False"):
        UNet2D(skip_connections=1)
