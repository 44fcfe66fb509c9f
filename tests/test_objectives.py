"""Parameterizations, their conversions, the posterior, and the training losses."""

import pytest
import torch

from course_lib.diffusion import (
    NoiseSchedule,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    flow_interpolate,
    flow_matching_loss,
    flow_velocity_target,
    posterior_coefficients,
    prediction_target,
    q_sample,
    split_prediction,
    velocity,
    x0_error_weight,
    x0_from_eps,
    x0_from_v,
)

PREDICTIONS = ("epsilon", "sample", "v_prediction")


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    x0 = torch.rand(5, 1, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(5, 1, 6, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 3, 400, 800, 999])
    alphabar = schedule.alphas_cumprod[t]
    return schedule, x0, eps, t, alphabar, q_sample(x0, t, schedule.alphas_cumprod, eps)


def test_conversions_recover_x0_and_eps_exactly(batch):
    _, x0, eps, _, alphabar, x_t = batch
    torch.testing.assert_close(x0_from_eps(x_t, eps, alphabar), x0)
    torch.testing.assert_close(eps_from_x0(x_t, x0, alphabar), eps)
    v = velocity(x0, eps, alphabar)
    torch.testing.assert_close(x0_from_v(x_t, v, alphabar), x0)
    torch.testing.assert_close(eps_from_v(x_t, v, alphabar), eps)


def test_split_prediction_reads_every_prediction_type(batch):
    _, x0, eps, _, alphabar, x_t = batch
    for prediction_type in PREDICTIONS:
        target = prediction_target(x0, eps, alphabar, prediction_type)
        x0_hat, eps_hat = split_prediction(target, x_t, alphabar, prediction_type)
        torch.testing.assert_close(x0_hat, x0)
        torch.testing.assert_close(eps_hat, eps)


def test_velocity_is_the_derivative_along_the_circle(batch):
    # x(phi) = cos(phi) x0 + sin(phi) eps, with cos(phi) = sqrt(alphabar): v = dx/dphi
    _, x0, eps, _, _, _ = batch
    phi, h = torch.tensor(0.7, dtype=torch.float64), 1e-6
    x = lambda p: torch.cos(p) * x0 + torch.sin(p) * eps  # noqa: E731
    numeric = (x(phi + h) - x(phi - h)) / (2 * h)
    torch.testing.assert_close(velocity(x0, eps, torch.cos(phi) ** 2), numeric, rtol=1e-6, atol=1e-6)


def test_velocity_matches_diffusers(batch):
    diffusers = pytest.importorskip("diffusers")
    schedule, x0, eps, t, alphabar, _ = batch
    reference = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    reference.alphas_cumprod = schedule.alphas_cumprod.clone()
    torch.testing.assert_close(velocity(x0, eps, alphabar), reference.get_velocity(x0, eps, t), rtol=1e-6, atol=1e-6)


def test_loss_weights_turn_each_target_error_into_the_x0_error(batch):
    _, x0, eps, _, alphabar, x_t = batch
    g = torch.Generator().manual_seed(1)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    snr = alphabar / (1 - alphabar)
    x0_error = (x0_hat - x0).pow(2).flatten(1).sum(1)
    for prediction_type in PREDICTIONS:
        # the output a model would give if its x0 estimate were x0_hat
        output = prediction_target(x0_hat, eps_from_x0(x_t, x0_hat, alphabar), alphabar, prediction_type)
        target = prediction_target(x0, eps, alphabar, prediction_type)
        target_error = (output - target).pow(2).flatten(1).sum(1)
        torch.testing.assert_close(target_error, x0_error_weight(snr, prediction_type) * x0_error)


def test_posterior_mean_and_variance_are_gaussian_conditioning():
    ab = NoiseSchedule.from_name("linear", 1000).alphas_cumprod
    for t, s in ((1, 0), (500, 499), (999, 900), (300, 10)):
        c0, ct, var = posterior_coefficients(ab[t], ab[s])
        # x_s = sqrt(ab_s) x0 + ..., x_t = sqrt(ab_t/ab_s) x_s + ...: condition the jointly Gaussian pair
        gain = (ab[t] / ab[s]).sqrt()
        cov, var_t, var_s = gain * (1 - ab[s]), 1 - ab[t], 1 - ab[s]
        torch.testing.assert_close(var, var_s - cov**2 / var_t)
        torch.testing.assert_close(ct, cov / var_t)
        torch.testing.assert_close(c0, ab[s].sqrt() - ct * ab[t].sqrt())
    as_floats = posterior_coefficients(ab[300].item(), ab[10].item())  # the samplers' path: plain numbers
    assert all(isinstance(c, float) for c in as_floats)
    torch.testing.assert_close(torch.tensor(as_floats, dtype=torch.float64), torch.stack(posterior_coefficients(ab[300], ab[10])))
    c0, ct, var = posterior_coefficients(ab[0], 1.0)  # the last step lands on x0 exactly
    assert (c0.item(), ct.item(), var.item()) == (1.0, 0.0, 0.0)


def test_posterior_mean_in_eps_form_is_ho_eq_11():
    schedule = NoiseSchedule.from_name("linear", 1000)
    ab, betas = schedule.alphas_cumprod, schedule.betas
    g = torch.Generator().manual_seed(2)
    x_t, eps = torch.randn(2, 3, generator=g, dtype=torch.float64)
    for t in (1, 250, 999):
        c0, ct, _ = posterior_coefficients(ab[t], ab[t - 1])
        mean = c0 * x0_from_eps(x_t, eps, ab[t]) + ct * x_t
        ho = (x_t - betas[t] / (1 - ab[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
        torch.testing.assert_close(mean, ho)


def test_diffusion_loss_is_the_mse_to_the_target(batch):
    schedule, x0, eps, t, alphabar, x_t = batch
    for prediction_type in PREDICTIONS:
        target = prediction_target(x0, eps, alphabar, prediction_type)

        def oracle(x, timesteps, target=target):
            torch.testing.assert_close(x, x_t)
            assert timesteps.tolist() == t.tolist()
            return target

        assert diffusion_loss(oracle, x0, schedule, prediction_type=prediction_type, t=t, noise=eps) == 0
        zero = diffusion_loss(lambda x, s: torch.zeros_like(x), x0, schedule, prediction_type=prediction_type, t=t, noise=eps)
        torch.testing.assert_close(zero, target.pow(2).mean())


def test_diffusion_loss_draws_timesteps_and_noise_reproducibly_and_trains():
    schedule = NoiseSchedule.from_name("cosine", 100)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    x0 = torch.rand(8, 1, 5, 5) * 2 - 1
    wrapped = lambda x, t: model(x)  # noqa: E731
    a = diffusion_loss(wrapped, x0, schedule, generator=torch.Generator().manual_seed(3))
    b = diffusion_loss(wrapped, x0, schedule, generator=torch.Generator().manual_seed(3))
    c = diffusion_loss(wrapped, x0, schedule, generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item() != c.item()
    a.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0


def test_flow_path_and_target():
    g = torch.Generator().manual_seed(5)
    x0, noise = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(flow_interpolate(x0, noise, 0.0), x0)
    torch.testing.assert_close(flow_interpolate(x0, noise, 1.0), noise)
    t, h = torch.tensor([0.2, 0.5, 0.9, 0.3]), 1e-6
    numeric = (flow_interpolate(x0, noise, t.double() + h) - flow_interpolate(x0, noise, t.double() - h)) / (2 * h)
    torch.testing.assert_close(numeric, flow_velocity_target(x0, noise), rtol=1e-6, atol=1e-6)


def test_flow_matching_loss_is_the_mse_to_the_velocity():
    g = torch.Generator().manual_seed(6)
    x0, noise = torch.randn(2, 4, 3, generator=g)
    t = torch.tensor([0.1, 0.4, 0.6, 1.0])
    seen = {}

    def oracle(x, timesteps):
        seen["x"], seen["t"] = x, timesteps
        return noise - x0

    assert flow_matching_loss(oracle, x0, t=t, noise=noise) == 0
    torch.testing.assert_close(seen["x"], flow_interpolate(x0, noise, t))
    torch.testing.assert_close(seen["t"], t * 1000)  # the network sees diffusers' timestep scale
    zero = flow_matching_loss(lambda x, s: torch.zeros_like(x), x0, t=t, noise=noise)
    torch.testing.assert_close(zero, (noise - x0).pow(2).mean())


# --- bad input ------------------------------------------------------------------------------


def test_losses_reject_model_outputs_of_another_shape(batch):
    schedule, x0, *_ = batch
    squeezed = lambda x, t: x[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match="model_output"):
        diffusion_loss(squeezed, x0, schedule)
    with pytest.raises(ValueError, match="model_output"):
        flow_matching_loss(squeezed, x0)


def test_unknown_prediction_types_are_rejected(batch):
    schedule, x0, eps, _, alphabar, x_t = batch
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion_loss(lambda x, t: x, x0, schedule, prediction_type="x0")
    with pytest.raises(ValueError, match="prediction_type"):
        split_prediction(eps, x_t, alphabar, "velocity")
    with pytest.raises(ValueError, match="prediction_type"):
        x0_error_weight(torch.ones(3), "eps")


def test_other_bad_arguments_name_themselves(batch):
    schedule, x0, eps, _, alphabar, x_t = batch
    with pytest.raises(ValueError, match="eps"):
        x0_from_eps(x_t, eps[:, :, :3], alphabar)
    with pytest.raises(ValueError, match="alphabar"):
        x0_from_eps(x_t, eps, alphabar[:2])
    with pytest.raises(ValueError, match="alphabar"):
        velocity(x0, eps, 1.5)
    with pytest.raises(ValueError, match="t must lie"):
        diffusion_loss(lambda x, t: x, x0, schedule, t=1000)
    with pytest.raises(ValueError, match="noise"):
        diffusion_loss(lambda x, t: x, x0, schedule, noise=eps[:2])
    with pytest.raises(ValueError, match="noise or generator"):
        diffusion_loss(lambda x, t: x, x0, schedule, noise=eps, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        flow_interpolate(x0, eps, 1.5)
    with pytest.raises(ValueError, match="alphabar_prev"):
        posterior_coefficients(0.5, 0.4)
    with pytest.raises(TypeError, match="x_t"):
        x0_from_eps(x_t.numpy(), eps, alphabar)
