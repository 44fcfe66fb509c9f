import importlib.metadata
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import clip
from course_lib.nn.encoders import ConvImageEncoder, TextTransformer, WordTokenizer, l2_normalize


def _open_clip_file(name: str):
    """Load one torch-only module of open_clip by its path: the package itself needs torchvision."""
    try:
        files = importlib.metadata.files("open_clip_torch") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("open_clip_torch is not installed (install it with pip install --no-deps open_clip_torch)")
    path = next((f for f in files if str(f).replace("\\", "/") == f"open_clip/{name}.py"), None)
    if path is None:
        pytest.skip(f"open_clip_torch is installed but has no open_clip/{name}.py")
    spec = importlib.util.spec_from_file_location(f"open_clip_{name}_by_path", path.locate())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _features(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return l2_normalize(torch.randn(n, d, generator=g)), l2_normalize(torch.randn(n, d, generator=g))


def test_loss_by_hand_and_symmetry():
    image, text = _features()
    scale = 1 / 0.07
    logits = scale * image @ text.T
    targets = torch.arange(6)
    by_hand = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(clip.contrastive_loss(image, text, scale), by_hand)
    # swapping the roles of the modalities gives the same loss: the loss is symmetric
    torch.testing.assert_close(clip.contrastive_loss(text, image, scale), by_hand)
    # the source's version (no transpose) is the image-to-text term alone, and is not symmetric
    wrong = F.cross_entropy(logits, targets)
    assert not math.isclose(wrong.item(), by_hand.item(), rel_tol=1e-3)


def test_loss_limits():
    image, _ = _features()
    # perfectly aligned pairs at a huge scale: the loss goes to 0
    assert clip.contrastive_loss(image, image.clone(), 1000.0) < 1e-3
    # a scale of 0 makes every pair equally likely: the loss is log N
    torch.testing.assert_close(clip.contrastive_loss(image, image.clone(), 0.0), torch.tensor(math.log(6)))


@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_loss_matches_open_clip(scale):
    loss_module = _open_clip_file("loss")
    image, text = _features(n=16, d=8, seed=3)
    reference = loss_module.ClipLoss()(image, text, torch.tensor(scale))
    torch.testing.assert_close(clip.contrastive_loss(image, text, torch.tensor(scale)), reference)
    # and the gradients agree too
    a = image.clone().requires_grad_()
    b = image.clone().requires_grad_()
    clip.contrastive_loss(a, text, scale).backward()
    loss_module.ClipLoss()(b, text, torch.tensor(scale)).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_zero_shot_classifier_matches_open_clip():
    zs = _open_clip_file("zero_shot_classifier")
    vocab = {w: i for i, w in enumerate("a photo of the digit zero one two sketch".split())}
    table = nn.Embedding(len(vocab), 6)
    torch.manual_seed(0)

    def tokenizer(texts):
        return torch.stack([torch.tensor([vocab[w] for w in t.split()] + [0] * (6 - len(t.split()))) for t in texts])

    def encode(tokens):
        return table(tokens).sum(dim=1) + 0.3  # any deterministic text encoder will do

    class Model:  # the two methods open_clip's function calls
        def encode_text(self, tokens, normalize=False):
            z = encode(tokens)
            return F.normalize(z, dim=-1) if normalize else z

    classes, templates = ["zero", "one", "two"], ["a photo of {}", "the digit {}", "a sketch of the digit {}"]
    reference = zs.build_zero_shot_classifier(Model(), tokenizer, classes, templates, num_classes_per_batch=2)
    ours = clip.build_zero_shot_classifier(lambda texts: encode(tokenizer(texts)), classes, templates)
    torch.testing.assert_close(ours, reference)
    assert ours.shape == (6, 3)
    torch.testing.assert_close(ours.norm(dim=0), torch.ones(3))
    # callables work as templates too
    callable_templates = [lambda c: f"a photo of {c}", lambda c: f"the digit {c}", lambda c: f"a sketch of the digit {c}"]
    torch.testing.assert_close(clip.build_zero_shot_classifier(lambda t: encode(tokenizer(t)), classes, callable_templates), ours)


def test_zero_shot_classifier_rejects_empty_lists():
    encode = lambda texts: torch.randn(len(texts), 4)  # noqa: E731
    with pytest.raises(ValueError, match="classnames"):
        clip.build_zero_shot_classifier(encode, [], ["a {}"])
    with pytest.raises(ValueError, match="templates"):
        clip.build_zero_shot_classifier(encode, ["cat"], [])
    with pytest.raises(ValueError, match="slot"):
        clip.build_zero_shot_classifier(encode, ["cat"], ["a photo"])
    with pytest.raises(ValueError, match="classnames"):
        clip.build_zero_shot_classifier(encode, "cat", ["a {}"])


@pytest.mark.parametrize(
    "image, text, message",
    [
        (torch.randn(4, 8), torch.randn(5, 8), "batch size"),
        (torch.randn(4, 8), torch.randn(4, 7), "dimension"),
        (torch.randn(4, 8, 1), torch.randn(4, 8), "2-D"),
        (torch.randn(8), torch.randn(8), "2-D"),
    ],
)
def test_loss_rejects_bad_features(image, text, message):
    with pytest.raises(ValueError, match=message):
        clip.contrastive_loss(image, text, 10.0)


def test_loss_rejects_non_float():
    with pytest.raises(TypeError, match="floating"):
        clip.contrastive_loss(torch.ones(3, 4, dtype=torch.long), torch.randn(3, 4), 1.0)


def _mini_clip(**kwargs):
    tokenizer = WordTokenizer("a red blue three five".split())
    model = clip.MiniCLIP(
        ConvImageEncoder(image_size=8, width=8, out_dim=16),
        TextTransformer(tokenizer.vocab_size, dim=16, depth=1, heads=2),
        image_dim=16, text_dim=16, embed_dim=8, tokenize=tokenizer.encode, **kwargs,
    )
    return model, tokenizer


def test_mini_clip_temperature_and_shapes():
    torch.manual_seed(0)
    model, tokenizer = _mini_clip()
    torch.testing.assert_close(model.scale(), torch.tensor(1 / 0.07))
    images, tokens = torch.rand(3, 3, 8, 8), tokenizer.encode(["a red three", "a blue five", "a red five"])
    i, t, s = model(images, tokens)
    assert i.shape == t.shape == (3, 8)
    torch.testing.assert_close(i.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(model.encode_sentences(["a red three"]), t[:1])
    # the scale is capped at 100 however large its parameter grows
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)
    loss = model.loss(images, tokens)
    loss.backward()
    assert model.logit_scale.grad == 0  # capped: the temperature no longer moves
    with pytest.raises(ValueError, match="same batch size"):
        model(images, tokens[:2])
    with pytest.raises(ValueError, match="init_temperature"):
        _mini_clip(init_temperature=0.001)


def test_locked_text_tower_does_not_train():
    torch.manual_seed(0)
    model, tokenizer = _mini_clip(lock_text=True)
    before = [p.clone() for p in model.text_encoder.parameters()]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    images, tokens = torch.rand(4, 3, 8, 8), tokenizer.encode(["a red three", "a blue five", "a red five", "a blue three"])
    projection_before = model.text_projection.net.weight.clone()
    model.train()
    model.loss(images, tokens).backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.text_encoder.parameters()))
    assert not model.text_encoder.training
    assert not torch.equal(projection_before, model.text_projection.net.weight)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread: with more, synchronising costs more than the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_a_tiny_clip_aligns_pairs(one_thread):
    """Four distinct pairs, trained until each image retrieves its own caption."""
    torch.manual_seed(0)
    model, tokenizer = _mini_clip()
    images = torch.rand(4, 3, 8, 8)
    tokens = tokenizer.encode(["a red three", "a red five", "a blue three", "a blue five"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(images, tokens).item()
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(images, tokens)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    with torch.no_grad():
        similarity = model.encode_image(images) @ model.encode_text(tokens).T
    assert clip.recall_at_k(similarity, ks=(1,))[1] == 1.0


def test_recall_at_k():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.3]])
    # query 0 ranks item 0 first; query 1 ranks item 1 second; query 2 ranks item 2 first
    assert clip.recall_at_k(similarity, ks=(1, 2)) == {1: pytest.approx(2 / 3), 2: 1.0}
    relevant = torch.tensor([[False, False, True], [True, False, False], [False, False, False]])
    assert clip.recall_at_k(similarity, relevant, ks=(1, 3)) == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="square"):
        clip.recall_at_k(torch.rand(2, 3))
    with pytest.raises(ValueError, match="ks"):
        clip.recall_at_k(similarity, ks=(0,))
    with pytest.raises(ValueError, match="bool"):
        clip.recall_at_k(similarity, relevant.float())


def test_zero_shot_logits_checks_shapes():
    classifier = l2_normalize(torch.randn(3, 4), dim=0)
    logits = clip.zero_shot_logits(l2_normalize(torch.randn(2, 3)), classifier, logit_scale=10.0)
    assert logits.shape == (2, 4)
    with pytest.raises(ValueError, match="share D"):
        clip.zero_shot_logits(torch.randn(2, 5), classifier)
