"""2-D toy data and the toy denoiser, including a short training run that must learn something."""

import pytest
import torch

from course_lib import data, train
from course_lib.diffusion import NoiseSchedule, ddim_sample, diffusion_loss, flow_matching_loss, flow_sample
from course_lib.nn import ToyDenoiser


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_toy_sets_are_standardised_and_seeded(name):
    x = data.toy_data(name, 5000, seed=0)
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert x.mean(0).abs().max() < 0.1 and (x.std(0) - 1).abs().max() < 0.1
    torch.testing.assert_close(x, data.toy_data(name, 5000, seed=0))
    assert not torch.equal(x, data.toy_data(name, 5000, seed=1))


def test_toy_sets_have_their_shapes():
    # eight gaussians: every point is near one of 8 centres on a circle
    x = data.toy_data("eight_gaussians", 2000)
    radius = x.norm(dim=1)
    assert radius.std() / radius.mean() < 0.15
    sector = torch.atan2(x[:, 1], x[:, 0]) / (torch.pi / 4)
    assert set(torch.round(sector).remainder(8).int().tolist()) == set(range(8))
    assert (sector - torch.round(sector)).abs().max() < 0.5 / (torch.pi / 4)  # within 0.5 rad of a centre
    # checkerboard: no point on a light square
    board = data.toy_data("checkerboard", 2000, noise=0.0)
    cells = torch.floor((board - board.min(0).values) / (board.max(0).values - board.min(0).values + 1e-9) * 4)
    parity = ((cells[:, 0] + cells[:, 1]) % 2).mean()  # the share of points on squares of the odd colour
    assert min(parity, 1 - parity) < 0.01  # (min/max only estimate the board's edges: a few land astray)


def test_toy_data_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        data.toy_data("swiss roll", 10)
    with pytest.raises(ValueError, match="n must"):
        data.toy_data("moons", 0)
    with pytest.raises(ValueError, match="seed"):
        data.toy_data("moons", 10, seed=-1)
    with pytest.raises(ValueError, match="noise"):
        data.toy_data("moons", 10, noise=-0.1)


def test_toy_denoiser_shapes_and_time_inputs():
    model = ToyDenoiser(dim=2, hidden=16, depth=2, time_dim=8)
    x = torch.randn(5, 2)
    assert torch.all(model(x, 3) == 0)  # zero-initialised output layer: predicts the mean of eps
    torch.nn.init.normal_(model.output[-1].weight)
    out_int = model(x, torch.tensor([0, 1, 2, 500, 999]))
    out_float = model(x, torch.tensor([0.0, 1.0, 2.0, 500.0, 999.0]))
    assert out_int.shape == (5, 2)
    torch.testing.assert_close(out_int, out_float)
    torch.testing.assert_close(model(x, 7), model(x, torch.full((5,), 7)))
    assert not torch.allclose(model(x, 0), model(x, 500))  # the time input matters


def test_toy_denoiser_rejects_bad_input():
    model = ToyDenoiser(hidden=16, depth=1, time_dim=8)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(5, 3), 1)
    with pytest.raises(ValueError, match="t must"):
        model(torch.randn(5, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="hidden"):
        ToyDenoiser(hidden=0)


def _mean_distance_to(points: torch.Tensor, reference: torch.Tensor) -> float:
    return torch.cdist(points, reference).min(dim=1).values.mean().item()


def test_a_short_training_run_learns_the_distribution():
    """Two hundred steps move samples from noise onto the moons (the samplers and losses work together)."""
    points = data.toy_data("moons", 2048, seed=0)
    reference = data.toy_data("moons", 1024, seed=1)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    eps_model = ToyDenoiser(hidden=64, depth=2, time_dim=32)
    train.fit(eps_model, lambda m, b: diffusion_loss(m, b, schedule), points, steps=200, batch_size=128,
              lr=3e-3, progress=False, device="cpu")
    flow_model = ToyDenoiser(hidden=64, depth=2, time_dim=32)
    train.fit(flow_model, lambda m, b: flow_matching_loss(m, b), points, steps=200, batch_size=128,
              lr=3e-3, progress=False, device="cpu")
    noise = torch.randn(512, 2, generator=torch.Generator().manual_seed(2))
    before = _mean_distance_to(noise, reference)
    ddim = ddim_sample(eps_model, schedule, (512, 2), num_inference_steps=20, x_T=noise)
    flow = flow_sample(flow_model, (512, 2), 20, x_T=noise)
    assert _mean_distance_to(ddim, reference) < 0.6 * before
    assert _mean_distance_to(flow, reference) < 0.6 * before
