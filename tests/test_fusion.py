"""Fusion: late fusion, modality dropout, the cross-attention block, the three classifiers, the task."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data.bimodal_digits import add_pixel_noise, load_bimodal_digits, swap_digit_words
from course_lib.nn.fusion import (
    FUSION_MODELS,
    PAD,
    CrossAttentionBlock,
    CrossAttentionFusion,
    LateFusion,
    late_fusion,
    modality_dropout,
    modality_dropout_mask,
)

VOCAB, CLASSES = 20, 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Models this small run fastest on one thread; on a busy machine two threads can be many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values (the blocks start as the identity, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return module


def _inputs(batch=3, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 8, 8, generator=g)
    tokens = torch.randint(1, VOCAB, (batch, length), generator=g)
    tokens[0, 4:] = PAD  # a shorter caption
    return images, tokens


# ----------------------------------------------------------------------------- late_fusion


def test_late_fusion_averages_present_modalities_only():
    logits = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[1.0, 2.0], [3.0, 6.0]], [[1.0, 2.0], [3.0, 6.0]]])
    present = torch.tensor([[True, True], [True, False], [False, True]])
    fused = late_fusion(logits, present)
    torch.testing.assert_close(fused, torch.tensor([[2.0, 4.0], [1.0, 2.0], [3.0, 6.0]]))
    weighted = late_fusion(logits[:1], weights=[3.0, 1.0])
    torch.testing.assert_close(weighted, torch.tensor([[1.5, 3.0]]))


def test_averaged_logits_are_a_normalised_product_of_experts():
    logits = torch.randn(4, 3, 7, dtype=torch.float64)
    fused = late_fusion(logits).softmax(-1)
    geometric = logits.softmax(-1).prod(1) ** (1 / 3)
    torch.testing.assert_close(fused, geometric / geometric.sum(-1, keepdim=True))


@pytest.mark.parametrize(
    "logits, present, weights, message",
    [
        (torch.zeros(2, 3), None, None, "logits must be"),
        (torch.zeros(2, 2, 3), torch.ones(3, 2, dtype=torch.bool), None, "present must be"),
        (torch.zeros(2, 2, 3), torch.ones(2, 2), None, "present must be"),
        (torch.zeros(2, 2, 3), torch.tensor([[True, False], [False, False]]), None, "no modality"),
        (torch.zeros(2, 2, 3), None, [1.0], "weights must be"),
        (torch.zeros(2, 2, 3), None, [1.0, -1.0], "weights must be"),
        (torch.zeros(2, 2, 3), torch.tensor([[True, False], [True, True]]), [0.0, 1.0], "positive weight"),
    ],
)
def test_late_fusion_rejects_bad_input(logits, present, weights, message):
    with pytest.raises(ValueError, match=message):
        late_fusion(logits, present, weights)


# ----------------------------------------------------------------------------- modality dropout


def test_modality_dropout_mask_by_hand():
    uniform = torch.tensor([[0.9, 0.8], [0.1, 0.8], [0.9, 0.2], [0.1, 0.3], [0.4, 0.2]])
    keep = modality_dropout_mask(uniform, 0.5)
    expected = torch.tensor([[True, True], [False, True], [True, False], [False, True], [True, False]])
    assert torch.equal(keep, expected)
    per_modality = modality_dropout_mask(uniform, [0.0, 0.5])  # the image is never dropped
    assert per_modality[:, 0].all() and torch.equal(per_modality[:, 1], uniform[:, 1] >= 0.5)


def test_modality_dropout_rates_and_reproducibility():
    keep = modality_dropout(40_000, [0.2, 0.5], generator=torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and keep.shape == (40_000, 2) and keep.any(1).all()
    # Both draws fall below p with probability 0.2 * 0.5 = 0.1; the larger draw then survives, which
    # is the image's with probability E[u_image / 0.5 | u_image < 0.2] = 0.2. So the image is dropped
    # with probability 0.2 - 0.1 * 0.2 = 0.18, and the caption with 0.5 - 0.1 * 0.8 = 0.42.
    dropped = (~keep).float().mean(0)
    torch.testing.assert_close(dropped, torch.tensor([0.18, 0.42]), atol=0.01, rtol=0)
    again = modality_dropout(40_000, [0.2, 0.5], generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, again)


@pytest.mark.parametrize("p", [-0.1, 1.5, [0.1, 0.2, 0.3], [[0.1, 0.2]]])
def test_modality_dropout_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="p must be"):
        modality_dropout_mask(torch.rand(4, 2), p)


def test_modality_dropout_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        modality_dropout(0, 0.5)
    with pytest.raises(ValueError, match="uniform must be"):
        modality_dropout_mask(torch.rand(4), 0.5)


# ----------------------------------------------------------------------------- CrossAttentionBlock


def test_block_starts_as_the_identity():
    block = CrossAttentionBlock(8, context_dim=6, heads=2)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 6)
    torch.testing.assert_close(block(x, context), x)


def _block_by_hand(block, x, context, mask):
    """The block written out from its formula, one head at a time."""
    attn = block.attention
    h, c = block.norm(x), block.context_norm(context)
    q, k, v = attn.to_q(h), attn.to_k(c), attn.to_v(c)
    heads, d = attn.heads, attn.head_dim
    outputs = []
    for i in range(heads):
        s = slice(i * d, (i + 1) * d)
        scores = q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        outputs.append(scores.softmax(-1) @ v[..., s])
    x = x + attn.to_out(torch.cat(outputs, -1))
    return x + block.mlp(block.mlp_norm(x))


@pytest.mark.parametrize("heads", [1, 4])
def test_block_matches_its_formula(heads):
    block = _randomise(CrossAttentionBlock(8, context_dim=6, heads=heads)).double()
    x, context = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    torch.testing.assert_close(block(x, context, mask), _block_by_hand(block, x, context, mask))


def test_block_attention_agrees_with_torch_multihead_attention():
    block = _randomise(CrossAttentionBlock(8, context_dim=8, heads=4), seed=1).double()
    attn = block.attention
    reference = nn.MultiheadAttention(8, 4, batch_first=True).double()
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]))
        reference.in_proj_bias.copy_(torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]))
        reference.out_proj.weight.copy_(attn.to_out.weight)
        reference.out_proj.bias.copy_(attn.to_out.bias)
    h, c = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 5:] = True
    expected, expected_weights = reference(h, c, c, key_padding_mask=padding, average_attn_weights=False)
    out, weights = attn(h, context=c, mask=~padding[:, None, None, :], return_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_masked_padding_changes_nothing_and_unmasked_padding_does():
    block = _randomise(CrossAttentionBlock(8, heads=2)).eval()
    x, words = torch.randn(2, 4, 8), torch.randn(2, 3, 8)
    padded = torch.cat([words, torch.randn(2, 5, 8)], dim=1)
    mask = torch.arange(8).expand(2, 8) < 3
    torch.testing.assert_close(block(x, padded, mask), block(x, words))
    assert (block(x, padded) - block(x, words)).abs().max() > 1e-3  # the seed's block has no mask: this is its bug


def test_block_returns_weights_that_ignore_masked_tokens():
    block = _randomise(CrossAttentionBlock(8, heads=2))
    mask = torch.tensor([[True, False, True], [True, True, True]])
    _, weights = block(torch.randn(2, 4, 8), torch.randn(2, 3, 8), mask, return_weights=True)
    assert weights.shape == (2, 2, 4, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4))
    assert weights[0, :, :, 1].abs().max() == 0


def test_block_without_context_is_self_attention():
    block = _randomise(CrossAttentionBlock(8, heads=2))
    x = torch.randn(2, 4, 8)
    block.context_norm.load_state_dict(block.norm.state_dict())  # self-attention's keys share the query norm
    torch.testing.assert_close(block(x), _block_by_hand(block, x, x, torch.ones(2, 4, dtype=torch.bool)))


@pytest.mark.parametrize(
    "x, context, mask, message",
    [
        (torch.zeros(2, 4, 7), None, None, r"x must have shape \(batch, tokens, 8\)"),
        (torch.zeros(2, 8), None, None, "x must have shape"),
        (torch.zeros(2, 4, 8), torch.zeros(2, 3, 5), None, r"context must have shape \(batch, tokens, 6\)"),
        (torch.zeros(2, 4, 8), torch.zeros(3, 3, 6), None, "same batch size, got 2 and 3"),
        (torch.zeros(2, 4, 8), torch.zeros(2, 3, 6), torch.ones(2, 3), "context_mask must be a bool"),
        (torch.zeros(2, 4, 8), torch.zeros(2, 3, 6), torch.ones(2, 4, dtype=torch.bool), "context_mask must be"),
        (torch.zeros(2, 4, 8), torch.zeros(2, 3, 6), torch.tensor([[True] * 3, [False] * 3]), "no token"),
    ],
)
def test_block_rejects_bad_input(x, context, mask, message):
    block = CrossAttentionBlock(8, context_dim=6, heads=2)
    with pytest.raises(ValueError, match=message):
        block(x, context, mask)


# ----------------------------------------------------------------------------- the fusion classifiers


@pytest.mark.parametrize("name", sorted(FUSION_MODELS))
def test_classifiers_shapes_and_padding(name):
    model = _randomise(FUSION_MODELS[name](VOCAB, CLASSES, dim=8, hidden=16)).eval()
    images, tokens = _inputs()
    logits = model(images, tokens)
    assert logits.shape == (3, CLASSES) and torch.isfinite(logits).all()
    longer = torch.cat([tokens, torch.full((3, 2), PAD)], dim=1)
    torch.testing.assert_close(model(images, longer), logits)  # padding is not a word


@pytest.mark.parametrize("name", sorted(FUSION_MODELS))
def test_a_missing_modality_is_ignored(name):
    model = _randomise(FUSION_MODELS[name](VOCAB, CLASSES, dim=8, hidden=16)).eval()
    images, tokens = _inputs()
    other_images, other_tokens = _inputs(seed=1)
    no_caption = torch.tensor([[True, False]] * 3)
    no_image = torch.tensor([[False, True]] * 3)
    torch.testing.assert_close(model(images, tokens, no_caption), model(images, other_tokens, no_caption))
    torch.testing.assert_close(model(images, tokens, no_image), model(other_images, tokens, no_image))
    assert (model(images, tokens, no_caption) - model(other_images, tokens, no_caption)).abs().max() > 1e-4


def test_late_fusion_model_is_the_average_of_its_branches():
    model = _randomise(LateFusion(VOCAB, CLASSES, dim=8, hidden=16))
    images, tokens = _inputs()
    branches, _ = model.branch_logits(images, tokens)
    torch.testing.assert_close(model(images, tokens), branches.mean(1))
    torch.testing.assert_close(model(images, tokens, torch.tensor([[True, False]] * 3)), branches[:, 0])


def test_cross_attention_weights_read_the_null_word_when_the_caption_is_missing():
    model = _randomise(CrossAttentionFusion(VOCAB, CLASSES, dim=8, hidden=16, depth=2, heads=2))
    images, tokens = _inputs()
    present = torch.tensor([[True, True], [True, False], [True, True]])
    logits, weights = model(images, tokens, present, return_weights=True)
    assert logits.shape == (3, CLASSES) and weights.shape == (3, 2, 16, 1 + tokens.shape[1])
    torch.testing.assert_close(weights[1, :, :, 0], torch.ones(2, 16))
    assert weights[0, :, :, 5:].abs().max() == 0  # the first caption's padding


@pytest.mark.parametrize(
    "images, tokens, present, message",
    [
        (torch.rand(3, 3, 8, 8), torch.ones(2, 6, dtype=torch.long), None, "same batch size, got 3 and 2"),
        (torch.rand(3, 1, 8, 8), torch.ones(3, 6, dtype=torch.long), None, r"images must have shape \(batch, 3, 8, 8"),
        (torch.rand(3, 3, 16, 16), torch.ones(3, 6, dtype=torch.long), None, "images must have shape"),
        (torch.rand(3, 3, 8, 8), torch.ones(3, 6), None, "tokens must be an integer tensor"),
        (torch.rand(3, 3, 8, 8), torch.ones(3, 40, dtype=torch.long), None, "length <= 16"),
        (torch.rand(3, 3, 8, 8), torch.full((3, 6), VOCAB), None, "word ids in"),
        (torch.rand(3, 3, 8, 8), torch.ones(3, 6, dtype=torch.long), torch.ones(3, 3).bool(), "present must be"),
        (torch.rand(3, 3, 8, 8), torch.ones(3, 6, dtype=torch.long), torch.zeros(3, 2).bool(), "no modality"),
    ],
)
@pytest.mark.parametrize("name", sorted(FUSION_MODELS))
def test_classifiers_reject_bad_input(name, images, tokens, present, message):
    model = FUSION_MODELS[name](VOCAB, CLASSES, dim=8, hidden=16)
    with pytest.raises(ValueError, match=message):
        model(images, tokens, present)


@pytest.mark.parametrize(
    "kwargs", [dict(vocab_size=0), dict(num_classes=2.5), dict(dim=True), dict(image_size=10, patch_size=4)]
)
def test_classifiers_reject_bad_sizes(kwargs):
    arguments = dict(vocab_size=VOCAB, num_classes=CLASSES) | kwargs
    with pytest.raises(ValueError):
        LateFusion(**arguments)
    with pytest.raises(ValueError, match="depth"):
        CrossAttentionFusion(VOCAB, CLASSES, depth=0)


# ----------------------------------------------------------------------------- the task, and learning it


@pytest.fixture(scope="module")
def digits():
    return load_bimodal_digits("train")


def test_bimodal_digits_tokens_are_the_captions(digits):
    assert digits.images.shape[1:] == (3, 8, 8) and len(digits.tokens) == len(digits.labels) == len(digits.captions)
    for i in (0, 1, 100):
        assert digits.tokenizer.decode(digits.tokens[i]) == digits.captions[i]
    words = [digits.tokenizer.tokens[i] for i in digits.digit_ids]
    assert words == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_swap_digit_words_changes_only_the_digit_word(digits):
    tokens = digits.tokens[:500]
    assert torch.equal(swap_digit_words(tokens, digits.digit_ids, 0.0), tokens)
    swapped = swap_digit_words(tokens, digits.digit_ids, 1.0, torch.Generator().manual_seed(0))
    changed = swapped != tokens
    assert torch.equal(changed.sum(1), torch.ones(500, dtype=torch.long))  # exactly one word per caption
    assert torch.isin(swapped[changed], digits.digit_ids).all()
    some = swap_digit_words(digits.tokens, digits.digit_ids, 0.3, torch.Generator().manual_seed(1))
    assert abs((some != digits.tokens).any(1).float().mean().item() - 0.3) < 0.04


def test_corruptions_reject_bad_arguments(digits):
    with pytest.raises(ValueError, match="p must be"):
        swap_digit_words(digits.tokens, digits.digit_ids, 1.5)
    with pytest.raises(ValueError, match="tokens must be"):
        swap_digit_words(digits.tokens.float(), digits.digit_ids, 0.5)
    with pytest.raises(ValueError, match="sigma"):
        add_pixel_noise(digits.images, -1.0)
    with pytest.raises(TypeError, match="images"):
        add_pixel_noise(digits.tokens, 0.1)
    noisy = add_pixel_noise(torch.zeros(2000, 3, 8, 8), 0.5, torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.5) < 0.01
    sigma = torch.tensor([0.0, 1.0, 2.0])
    per_image = add_pixel_noise(torch.zeros(3, 3, 64, 64), sigma, torch.Generator().manual_seed(0))
    torch.testing.assert_close(per_image.flatten(1).std(1), torch.tensor([0.0, 1.0, 2.0]), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="one per image"):
        add_pixel_noise(torch.zeros(3, 3, 8, 8), torch.tensor([0.1, 0.2]))


def test_cross_attention_fusion_learns_the_digit_from_the_caption(digits):
    """The caption reaches the classifier only through cross-attention: a broken block cannot learn this."""
    torch.manual_seed(0)
    model = CrossAttentionFusion(digits.tokenizer.vocab_size, 10, dim=16, hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens, labels = digits.tokens[:128], digits.labels[:128]
    images = torch.zeros(128, 3, 8, 8)  # blank pictures: the answer is in the words
    for _ in range(40):
        loss = F.cross_entropy(model(images, tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (model(images, tokens).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95, accuracy
