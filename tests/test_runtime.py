"""Run profiles, device choice, seeding and per-profile settings."""

import random

import numpy as np
import pytest
import torch

from course_lib import runtime


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)


def test_default_profile_follows_cuda(monkeypatch, no_cuda):
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)
    assert runtime.active_profile() == "cpu"


def test_default_profile_is_gpu_when_cuda_is_visible(monkeypatch, fake_cuda):
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    assert runtime.active_profile() == "gpu"
    assert runtime.device() == torch.device("cuda")
    assert runtime.device("smoke") == torch.device("cpu")  # smoke is the same small CPU run everywhere


@pytest.mark.parametrize("value", ["smoke", "cpu", "gpu", " GPU "])
def test_environment_variable_overrides_the_profile(monkeypatch, no_cuda, value):
    monkeypatch.setenv(runtime.PROFILE_ENV, value)
    assert runtime.active_profile() == value.strip().lower()


def test_unknown_profile_is_named_with_the_accepted_values(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "huge")
    with pytest.raises(ValueError, match=r"COURSE_PROFILE='huge' is not a run profile; expected one of smoke, cpu, gpu"):
        runtime.active_profile()


def test_device_override(monkeypatch, no_cuda):
    monkeypatch.setenv(runtime.DEVICE_ENV, "meta")
    assert runtime.device("cpu") == torch.device("meta")


def test_gpu_profile_without_cuda_falls_back_to_cpu_and_says_so(monkeypatch, no_cuda, capsys):
    monkeypatch.setenv(runtime.PROFILE_ENV, "gpu")
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    assert runtime.device() == torch.device("cpu")
    line = runtime.describe()
    assert "no CUDA device is visible" in line
    assert capsys.readouterr().out.strip() == line


def test_settings_pick_the_active_profile_and_print_them(monkeypatch, capsys):
    monkeypatch.setenv(runtime.PROFILE_ENV, "cpu")
    cfg = runtime.settings(smoke=dict(steps=1, width=8), cpu=dict(steps=10, width=16), gpu=dict(steps=100, width=64))
    assert (cfg.profile, cfg.steps, cfg.width, cfg["steps"]) == ("cpu", 10, 16, 10)
    assert cfg.as_dict() == {"steps": 10, "width": 16}
    out = capsys.readouterr().out
    assert "profile 'cpu'" in out and "steps = 10" in out
    with pytest.raises(AttributeError, match="no setting named 'depth'; this notebook's settings are: steps, width"):
        cfg.depth


def test_settings_must_name_the_same_keys_in_every_profile():
    with pytest.raises(ValueError, match=r"settings for profile 'gpu' must name the same keys as 'smoke'; missing \['width'\]"):
        runtime.settings(smoke=dict(steps=1, width=8), cpu=dict(steps=2, width=8), gpu=dict(steps=3), show=False)


def test_settings_seed_every_generator(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    sizes = dict(smoke={}, cpu={}, gpu={})

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    runtime.settings(**sizes, seed=7, show=False)
    first = draw()
    runtime.settings(**sizes, seed=7, show=False)
    assert draw() == first
    runtime.settings(**sizes, seed=8, show=False)
    assert draw() != first


def test_seed_everything_returns_an_independent_seeded_generator():
    a = torch.rand(3, generator=runtime.seed_everything(3))
    b = torch.rand(3, generator=runtime.seed_everything(3))
    assert torch.equal(a, b)
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            runtime.seed_everything(bad)


def test_configure_threads_is_capped_and_positive():
    before = torch.get_num_threads()
    try:
        assert runtime.configure_threads(max_threads=1) == 1
        assert torch.get_num_threads() == 1
        assert runtime.configure_threads() >= 1
    finally:
        torch.set_num_threads(before)
