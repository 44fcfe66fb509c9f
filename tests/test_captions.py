import sys

import pytest
import torch

from course_lib import data
from course_lib.data import captions as cap


@pytest.fixture(scope="module")
def splits():
    return {s: data.load_colour_digits(s, size=16) for s in cap.CAPTION_SPLITS}


def test_shapes_range_and_alignment(splits):
    train = splits["train"]
    assert isinstance(train, torch.utils.data.Dataset)
    assert train.images.shape == (len(train), 3, 16, 16) and train.images.dtype == torch.float32
    assert 0 <= train.images.min() and train.images.max() <= 1
    assert len(train.captions) == len(train) == len(train.ink)
    assert torch.equal(train.labels, train.attributes["digit"])
    image, label = train[3]
    assert image.shape == (3, 16, 16) and int(label) == int(train.labels[3])
    assert train.tensors[0] is train.images and train.tensors[1] is train.labels
    # every image is rebuilt exactly from its ink and its two colours
    again = cap.paint(train.ink, train.attributes["foreground"], train.attributes["background"])
    assert torch.equal(again, train.images)


def test_captions_say_what_the_image_shows(splits):
    for split in splits.values():
        for i in range(0, len(split), 37):
            d, f, b, t = split.attribute_tuple(i)
            text = split.captions[i]
            assert cap.DIGIT_NAMES[d] in text.split() and cap.COLOUR_NAMES[f] in text.split()
            assert text == cap.make_caption(d, f, b, t, int(split.attributes["template"][i]))
            assert f != b
            fields = cap.template_fields(int(split.attributes["template"][i]))
            assert ("background" in fields) == (f"{cap.COLOUR_NAMES[b]} background" in text or f"on {cap.COLOUR_NAMES[b]}" in text)
        # the foreground colour really is the colour of the ink: the darkest-vs-brightest pixel test
        i = 0
        ink = split.ink[i, 0]
        brightest = ink.flatten().argmax()
        assert torch.allclose(split.images[i].flatten(1)[:, brightest], cap.PALETTE[split.attributes["foreground"][i]], atol=0.05)


def test_thickness_is_measured_from_the_ink(splits):
    train = splits["train"]
    mass = train.ink.sum(dim=(1, 2, 3))
    for digit in range(10):
        members = train.labels == digit
        thick = train.attributes["thickness"][members].bool()
        assert thick.any() and (~thick).any()
        assert mass[members][thick].min() > mass[members][~thick].max()
    assert 0.4 < train.attributes["thickness"].float().mean() < 0.6


def test_several_templates_are_used(splits):
    used = torch.bincount(splits["train"].attributes["template"], minlength=len(cap.CAPTION_TEMPLATES))
    assert (used > 0.1 * len(splits["train"])).all()


def test_compositional_hold_out(splits):
    pairs = {s: set(zip(v.attributes["digit"].tolist(), v.attributes["foreground"].tolist())) for s, v in splits.items()}
    assert pairs["compositional"] == set(cap.HELD_OUT_COMBINATIONS)
    assert not pairs["train"] & cap.HELD_OUT_COMBINATIONS and not pairs["test"] & cap.HELD_OUT_COMBINATIONS
    # every digit and every colour is still seen in training: only the pairing is new
    assert {d for d, _ in pairs["train"]} == set(range(10))
    assert {f for _, f in pairs["train"]} == set(range(len(cap.COLOUR_NAMES)))
    red, blue, three, five = cap.COLOUR_NAMES.index("red"), cap.COLOUR_NAMES.index("blue"), 3, 5
    assert (three, red) in cap.HELD_OUT_COMBINATIONS
    assert (five, red) in pairs["train"] and (three, blue) in pairs["train"]


def test_test_images_are_unseen_and_splits_are_fixed(splits):
    train, test, comp = splits["train"], splits["test"], splits["compositional"]
    assert torch.equal(test.ink, comp.ink)  # the same unseen images, painted differently
    train_ink = {tuple(x.flatten().tolist()) for x in train.ink}
    assert not any(tuple(x.flatten().tolist()) in train_ink for x in test.ink)
    again = data.load_colour_digits("train", size=16)
    assert again.captions == train.captions and torch.equal(again.images, train.images)
    other = data.load_colour_digits("train", size=16, seed=1)
    assert other.captions != train.captions


def test_copies_repaint_the_same_digits():
    one, three = data.load_colour_digits("test", copies=1), data.load_colour_digits("test", copies=3)
    assert len(three) == 3 * len(one)
    assert torch.equal(three.ink[: len(one)], three.ink[len(one) : 2 * len(one)])
    assert not torch.equal(three.attributes["foreground"][: len(one)], three.attributes["foreground"][len(one) : 2 * len(one)])


def test_captions_true_of():
    attrs = lambda **kw: {k: torch.tensor(v) for k, v in kw.items()}  # noqa: E731
    images = attrs(digit=[7, 7], foreground=[0, 0], background=[2, 1], thickness=[1, 0], template=[0, 0])
    captions = attrs(digit=[7, 7, 3], foreground=[0, 0, 0], background=[2, 5, 2], thickness=[1, 1, 1], template=[0, 3, 0])
    # template 3 ("a {thickness} {digit} in {foreground}") does not mention the background
    expected = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(cap.captions_true_of(images, captions), expected)


def test_vocabulary_covers_every_caption(splits):
    vocabulary = set(cap.caption_vocabulary())
    assert all(set(c.split()) <= vocabulary for s in splits.values() for c in s.captions)
    assert {"red", "seven", "thick", "background"} <= vocabulary


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="validation"), "split"),
        (dict(size=0), "size"),
        (dict(copies=0), "copies"),
        (dict(seed=-1), "seed"),
        (dict(source="imagenet"), "source"),
        (dict(max_images=0), "max_images"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_colour_digits(**kwargs)


def test_make_caption_rejects_bad_indices():
    assert cap.make_caption(7, 0, 2, 1) == "a thick red seven on a blue background"
    with pytest.raises(ValueError, match="digit"):
        cap.make_caption(10, 0, 2, 1)
    with pytest.raises(ValueError, match="template"):
        cap.make_caption(7, 0, 2, 1, template=len(cap.CAPTION_TEMPLATES))


def test_mnist_source_falls_back_to_digits(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    ds = data.load_colour_digits("test", source="mnist", max_images=20)
    assert ds.name == "digits" and len(ds) == 20
    assert "MNIST not available" in capsys.readouterr().out


def test_repaint_draws_fresh_true_captions_within_the_split(splits):
    train = splits["train"]
    ink, digits, thickness = train.ink[:400], train.labels[:400], train.attributes["thickness"][:400]
    images, texts = cap.repaint(ink, digits, thickness, generator=torch.Generator().manual_seed(0))
    assert images.shape == (400, 3, 16, 16) and len(texts) == 400
    assert texts != train.captions[:400]  # new colours and templates
    again = cap.repaint(ink, digits, thickness, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], images) and again[1] == texts  # fixed by the generator
    for i in range(0, 400, 13):
        words = texts[i].split()
        assert cap.DIGIT_NAMES[int(digits[i])] in words
        assert not ({"thin", "thick"} & set(words)) - {cap.THICKNESS_NAMES[int(thickness[i])]}
        # the caption's foreground colour is the colour of the ink's darkest stroke
        brightest = ink[i, 0].flatten().argmax()
        colour = images[i].flatten(1)[:, brightest]
        named = [c for c in cap.COLOUR_NAMES if c in words and torch.allclose(colour, cap.PALETTE[cap.COLOUR_NAMES.index(c)])]
        assert named, (texts[i], colour)
    # the training rule holds: no held-out combination is ever painted
    colours = images.flatten(2)[torch.arange(400), :, ink.flatten(1).argmax(dim=1)]
    foreground = (colours[:, None, :] - cap.PALETTE[None]).abs().sum(-1).argmin(dim=1)
    assert not set(zip(digits.tolist(), foreground.tolist())) & cap.HELD_OUT_COMBINATIONS
    held, _ = cap.repaint(ink[:20], digits[:20], thickness[:20], split="compositional")
    held_colours = held.flatten(2)[torch.arange(20), :, ink[:20].flatten(1).argmax(dim=1)]
    torch.testing.assert_close(held_colours, cap.PALETTE[(digits[:20] + 3) % 6])


def test_repaint_rejects_bad_input(splits):
    train = splits["train"]
    with pytest.raises(ValueError, match="ink"):
        cap.repaint(train.images[:4], train.labels[:4], train.attributes["thickness"][:4])
    with pytest.raises(ValueError, match="digits"):
        cap.repaint(train.ink[:4], train.labels[:3], train.attributes["thickness"][:4])
    with pytest.raises(ValueError, match="split"):
        cap.repaint(train.ink[:4], train.labels[:4], train.attributes["thickness"][:4], split="all")


def test_every_caption_lists_each_possible_caption_once(splits):
    every = cap.every_caption()
    assert len(every) == len(set(every))
    assert all(set(s.captions) <= set(every) for s in splits.values())
    # 10 digits x (30 colour pairs, or 6 colours where a template omits the background) x (2 thicknesses
    # where a template names it): templates 0-4 give 600 + 300 + 300 + 120 + 300
    assert len(every) == 1620
