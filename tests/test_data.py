import sys
import types

import numpy as np
import pytest
import torch

from course_lib import data


def test_digits_shapes_dtypes_and_range():
    train = data.load_digits()
    assert isinstance(train, torch.utils.data.Dataset)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.shape == (len(train), 1, 8, 8)
    assert train.images.min() == -1 and train.images.max() == 1
    image, label = train[0]
    assert image.shape == (1, 8, 8) and label.dim() == 0
    assert train.classes == tuple("0123456789") and train.name == "digits"
    all_ = data.load_digits("all", value_range=(0, 1))
    assert len(all_) == 1797 and all_.images.min() == 0 and all_.images.max() == 1


def test_split_is_disjoint_fixed_and_stratified():
    labels = data.load_digits("all").labels.numpy()
    train_idx, test_idx = data.split_indices(labels)
    again = data.split_indices(labels)
    np.testing.assert_array_equal(train_idx, again[0])
    np.testing.assert_array_equal(test_idx, again[1])
    assert not set(train_idx) & set(test_idx)
    assert len(train_idx) + len(test_idx) == len(labels)
    assert abs(len(test_idx) / len(labels) - 0.2) < 0.01
    test = data.load_digits("test")
    assert set(test.labels.tolist()) == set(range(10))
    assert len(data.load_digits("train")) + len(test) == 1797
    other = data.split_indices(labels, seed=1)[1]
    assert not np.array_equal(other, test_idx)


def test_same_split_at_every_size():
    small, large = data.load_digits("test", size=8), data.load_digits("test", size=16)
    assert torch.equal(small.labels, large.labels)
    assert large.images.shape[-2:] == (16, 16)


@pytest.mark.parametrize("size", [4, 16, 28, 32])
def test_resize_keeps_range_and_content(size):
    ds = data.load_digits("test", size=size, value_range=(-1, 1))
    assert ds.images.shape == (len(ds), 1, size, size)
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    # the mean brightness of a digit survives resizing
    base = data.load_digits("test").images.mean(dim=(1, 2, 3))
    assert torch.allclose(ds.images.mean(dim=(1, 2, 3)), base, atol=0.08)


def test_fallback_when_torchvision_cannot_import(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError
    ds = data.load_image_dataset("mnist", split="test", size=16, value_range=(0, 1))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "MNIST not available" in lines[0] and "digits" in lines[0]
    assert ds.name == "digits" and ds.images.shape[-2:] == (16, 16)
    assert ds.images.min() >= 0 and ds.images.max() <= 1


def _fake_torchvision(monkeypatch, dataset_cls):
    tv = types.ModuleType("torchvision")
    tv.datasets = types.SimpleNamespace(MNIST=dataset_cls, FashionMNIST=dataset_cls)
    monkeypatch.setitem(sys.modules, "torchvision", tv)


def test_fallback_when_files_are_missing(monkeypatch, capsys, tmp_path):
    class Missing:
        def __init__(self, root, train, download):
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    _fake_torchvision(monkeypatch, Missing)
    ds = data.load_image_dataset("fashion_mnist", root=tmp_path)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Fashion-MNIST not available" in out and "download=True" in out
    assert ds.name == "digits" and ds.images.shape[-2:] == (28, 28)


def test_torchvision_path_when_available(monkeypatch, tmp_path):
    class Fake:
        classes = [f"{d} - digit" for d in range(10)]

        def __init__(self, root, train, download):
            n = 6 if train else 4
            self.data = torch.full((n, 28, 28), 255, dtype=torch.uint8)
            self.targets = torch.arange(n)

    _fake_torchvision(monkeypatch, Fake)
    ds = data.load_image_dataset("mnist", split="all", size=32, root=tmp_path)
    assert ds.name == "mnist" and len(ds) == 10 and ds.images.shape == (10, 1, 32, 32)
    assert torch.allclose(ds.images, torch.ones(1)) and ds.labels.dtype == torch.int64


def test_digits_name_never_prints(capsys):
    ds = data.load_image_dataset("digits", size=8)
    assert ds.name == "digits" and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(split="validation"), "split"),
        (dict(size=0), "size"),
        (dict(size=8.0), "size"),
        (dict(value_range=(1, -1)), "value_range"),
        (dict(value_range=(0,)), "value_range"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(test_fraction=0), "test_fraction"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        data.load_digits(**kwargs)


def test_bad_dataset_name():
    with pytest.raises(ValueError, match="name.*'mnist'"):
        data.load_image_dataset("cifar10")
