"""Tests of course_lib.train: learning, exact resumption, EMA, atomic checkpoints, argument checks."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import train

QUIET = dict(device="cpu", progress=False)


def regression_data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    y = 3.0 * x - 1.0 + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def noisy_mse(model, batch):
    """Draws noise from the global torch RNG, as the diffusion loss does, so resumption must restore it."""
    x, y = batch
    return F.mse_loss(model(x + 0.1 * torch.randn_like(x)), y)


def small_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))


def test_loss_decreases_and_recovers_the_line():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    result = train.fit(model, mse, regression_data(), steps=300, lr=0.05, batch_size=16, **QUIET)
    assert len(result.losses) == result.steps == 300
    assert sum(result.losses[-20:]) / 20 < 0.05 * result.losses[0]
    assert model.weight.item() == pytest.approx(3.0, abs=0.05)
    assert model.bias.item() == pytest.approx(-1.0, abs=0.05)


def test_single_tensor_and_dataset_inputs_reach_loss_fn_in_their_shape():
    x, y = regression_data(32)
    seen = []

    def loss_tensor(model, batch):
        seen.append(type(batch))
        return model(batch).pow(2).mean()

    train.fit(nn.Linear(1, 1), loss_tensor, x, steps=2, batch_size=8, **QUIET)
    assert seen == [torch.Tensor, torch.Tensor]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return {"x": x[i], "y": y[i]}

    def loss_dict(model, batch):
        assert batch["x"].shape == (8, 1)
        return F.mse_loss(model(batch["x"]), batch["y"])

    result = train.fit(nn.Linear(1, 1), loss_dict, Pairs(), steps=3, batch_size=8, **QUIET)
    assert result.steps == 3


def run_uninterrupted(tmp_path, steps):
    return train.fit(small_net(), noisy_mse, regression_data(), steps=steps, batch_size=16, ema_decay=0.9,
                     grad_clip=1.0, checkpoint_path=tmp_path / "a.pt", checkpoint_every=5, **QUIET)


def assert_same_run(a_model, a, b_model, b):
    assert torch.equal(torch.tensor(a.losses), torch.tensor(b.losses))
    for pa, pb in zip(a_model.state_dict().values(), b_model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a.ema_model.state_dict().values(), b.ema_model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_after_stop_reproduces_the_uninterrupted_run(tmp_path):
    model_a = small_net()
    a = train.fit(model_a, noisy_mse, regression_data(), steps=20, batch_size=16, ema_decay=0.9, grad_clip=1.0,
                  **QUIET)

    path = tmp_path / "b.pt"
    kw = dict(batch_size=16, ema_decay=0.9, grad_clip=1.0, checkpoint_path=path, **QUIET)
    train.fit(small_net(), noisy_mse, regression_data(), steps=10, **kw)
    torch.manual_seed(123)  # the "crash": global RNG state moves on, a fresh process builds a new model
    model_b = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    b = train.fit(model_b, noisy_mse, regression_data(), steps=20, **kw)

    assert b.start_step == 10 and b.steps == 20
    assert_same_run(model_a, a, model_b, b)
    assert not torch.equal(model_a[0].weight, small_net()[0].weight)  # it did train


def test_resume_after_crash_mid_run_reproduces_the_uninterrupted_run(tmp_path):
    model_a = small_net()
    a = train.fit(model_a, noisy_mse, regression_data(), steps=20, batch_size=16, ema_decay=0.9, **QUIET)

    path = tmp_path / "c.pt"
    calls = 0

    def crashing(model, batch):
        nonlocal calls
        calls += 1
        if calls == 13:
            raise KeyboardInterrupt  # the student stops the cell, or the kernel dies
        return noisy_mse(model, batch)

    kw = dict(batch_size=16, ema_decay=0.9, checkpoint_path=path, checkpoint_every=5, **QUIET)
    with pytest.raises(KeyboardInterrupt):
        train.fit(small_net(), crashing, regression_data(), steps=20, **kw)
    assert train.load_checkpoint(path)["step"] == 10

    model_b = small_net()
    b = train.fit(model_b, noisy_mse, regression_data(), steps=20, **kw)
    assert b.start_step == 10
    assert_same_run(model_a, a, model_b, b)

    # a finished run returns at once, without training further
    again = train.fit(model_b, noisy_mse, regression_data(), steps=20, **kw)
    assert again.start_step == 20 and again.losses == b.losses


def test_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "w.pt"
    train.fit(nn.Linear(1, 1), mse, regression_data(), steps=3, batch_size=4, ema_decay=0.5,
              checkpoint_path=path, **QUIET)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and len(state["losses"]) == 3


def test_ema_matches_hand_computation():
    # loss = w has gradient 1, so plain SGD moves w by -lr each step: w_t = 1 - 0.25 t.
    # All numbers are exact in float32, so the comparison can be exact.
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.25)
    d, steps = 0.5, 6
    result = train.fit(model, lambda m, batch: m.weight.sum(), torch.zeros(4, 1), steps=steps, optimizer=opt,
                       ema_decay=d, **QUIET)

    ema = 1.0
    for t in range(1, steps + 1):
        ema = d * ema + (1 - d) * (1.0 - 0.25 * t)
    assert model.weight.item() == 1.0 - 0.25 * steps
    assert result.ema_model.weight.item() == ema
    assert not result.ema_model.weight.requires_grad and not result.ema_model.training


def test_ema_class_update_and_copy_to():
    model = nn.Linear(2, 1)
    ema = train.EMA(model, decay=0.9)
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * model.weight)
    target = nn.Linear(2, 1)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.model.weight)


def test_crash_during_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    train.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    good_bytes = path.read_bytes()
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")  # a torn write ...
        raise OSError("disk full")  # ... then the crash

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.setattr(torch, "save", real_save)

    assert path.read_bytes() == good_bytes
    state = train.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_crash_while_fit_checkpoints_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save, saves = torch.save, 0

    def second_save_crashes(obj, f, *args, **kwargs):
        nonlocal saves
        saves += 1
        if saves == 2:
            f.write(b"garbage")
            raise OSError("killed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_crashes)
    with pytest.raises(OSError, match="killed"):
        train.fit(small_net(), mse, regression_data(), steps=20, batch_size=8, checkpoint_path=path,
                  checkpoint_every=5, **QUIET)
    assert train.load_checkpoint(path)["step"] == 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(steps=5, ema_decay=1.0), "ema_decay"),
        (dict(steps=5, ema_decay=-0.1), "ema_decay"),
        (dict(steps=5, batch_size=0), "batch_size"),
        (dict(steps=5, batch_size=1000), "batch_size"),
        (dict(steps=5, lr=-1.0), "lr"),
        (dict(steps=5, grad_clip=0.0), "grad_clip"),
        (dict(steps=5, checkpoint_every=2), "checkpoint_path"),
        (dict(steps=5, seed=-1), "seed"),
        (dict(steps=5, log_every=0), "log_every"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.fit(nn.Linear(1, 1), mse, regression_data(16), **kwargs, **QUIET)


def test_bad_data_and_bad_optimizer_are_reported():
    with pytest.raises(ValueError, match="data is empty"):
        train.fit(nn.Linear(1, 1), mse, (torch.empty(0, 1), torch.empty(0, 1)), steps=1, **QUIET)
    with pytest.raises(ValueError, match="first"):
        train.fit(nn.Linear(1, 1), mse, (torch.zeros(3, 1), torch.zeros(4, 1)), steps=1, **QUIET)
    with pytest.raises(TypeError, match="data must be"):
        train.fit(nn.Linear(1, 1), mse, [1, 2, 3], steps=1, **QUIET)
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="lr.*optimizer"):
        train.fit(model, mse, regression_data(8), steps=1, lr=0.1,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **QUIET)
    with pytest.raises(ValueError, match="optimizer"):
        train.fit(model, mse, regression_data(8), steps=1,
                  optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), **QUIET)
    with pytest.raises(ValueError, match="decay"):
        train.EMA(model, decay=1.5)


def test_bad_losses_name_the_step():
    def per_example(model, batch):
        x, y = batch
        return (model(x) - y).pow(2).squeeze(1)

    with pytest.raises(ValueError, match=r"step 1.*\.mean\(\)"):
        train.fit(nn.Linear(1, 1), per_example, regression_data(8), steps=3, **QUIET)

    calls = 0

    def blows_up_at_step_3(model, batch):
        nonlocal calls
        calls += 1
        return mse(model, batch) * (float("nan") if calls == 3 else 1.0)

    with pytest.raises(FloatingPointError, match="step 3"):
        train.fit(nn.Linear(1, 1), blows_up_at_step_3, regression_data(8), steps=5, **QUIET)

    with pytest.raises(ValueError, match="step 1.*trainable"):
        train.fit(nn.Linear(1, 1), lambda m, b: torch.tensor(1.0), regression_data(8), steps=1, **QUIET)


def test_progress_false_prints_nothing_and_true_shows_a_bar(capsys):
    train.fit(nn.Linear(1, 1), mse, regression_data(16), steps=3, device="cpu", progress=False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    train.fit(nn.Linear(1, 1), mse, regression_data(16), steps=3, device="cpu", progress=True)
    out, err = capsys.readouterr()
    assert "3/3" in out + err


def test_fresh_runs_are_reproducible_and_seed_matters():
    runs = [train.fit(small_net(), noisy_mse, regression_data(), steps=5, batch_size=8, seed=s, **QUIET).losses
            for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
