"""Schedules and the forward process, checked against the definitions and against diffusers."""

import math

import pytest
import torch

from course_lib.diffusion import (
    NoiseSchedule,
    alphas_cumprod_from_betas,
    cosine_betas,
    linear_betas,
    make_betas,
    q_chain,
    q_sample,
    scaled_linear_betas,
    snr,
    snr_db,
)

diffusers = pytest.importorskip("diffusers")

# Our name -> diffusers' beta_schedule name. diffusers keeps betas in float32, so the
# comparison tolerance is float32's, not ours.
DIFFUSERS_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("name", sorted(DIFFUSERS_NAMES))
@pytest.mark.parametrize("num_timesteps", [10, 1000])
def test_betas_and_alphas_cumprod_match_diffusers(name, num_timesteps):
    defaults = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "cosine": (1e-4, 0.02)}
    beta_start, beta_end = defaults[name]
    reference = diffusers.DDPMScheduler(
        num_train_timesteps=num_timesteps,
        beta_schedule=DIFFUSERS_NAMES[name],
        beta_start=beta_start,
        beta_end=beta_end,
    )
    kwargs = {} if name == "cosine" else {"beta_start": beta_start, "beta_end": beta_end}
    schedule = NoiseSchedule.from_name(name, num_timesteps, **kwargs)
    torch.testing.assert_close(schedule.betas, reference.betas.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(schedule.alphas_cumprod, reference.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)


def test_add_noise_matches_diffusers():
    reference = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    schedule = NoiseSchedule.from_name("cosine", 1000)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 1, 8, 8, generator=g)
    noise = torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    ours, returned_noise = schedule.add_noise(x0, t, noise=noise)
    assert returned_noise is noise
    # diffusers stores alphabar in float32: sqrt(1 - alphabar) near t = 0 carries ~1e-6 of rounding.
    torch.testing.assert_close(ours, reference.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5)


def test_linear_betas_definition():
    betas = linear_betas(5, 0.1, 0.5)
    assert betas.dtype == torch.float64
    torch.testing.assert_close(betas, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64))


def test_scaled_linear_square_roots_are_evenly_spaced():
    roots = scaled_linear_betas(50).sqrt()
    steps = roots.diff()
    torch.testing.assert_close(steps, torch.full_like(steps, float(steps[0])))


def test_cosine_schedule_follows_its_alpha_bar():
    T, s = 1000, 0.008
    cumulative = alphas_cumprod_from_betas(cosine_betas(T, s=s))
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in [0, 100, 500, 900]:  # index t is the state after t + 1 steps
        assert cumulative[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert cosine_betas(T).max().item() == pytest.approx(0.999)


def test_snr_and_decibels():
    ab = torch.tensor([0.5, 0.9, 0.01], dtype=torch.float64)
    torch.testing.assert_close(snr(ab), torch.tensor([1.0, 9.0, 1 / 99], dtype=torch.float64))
    torch.testing.assert_close(snr_db(ab), 10 * torch.log10(torch.tensor([1.0, 9.0, 1 / 99], dtype=torch.float64)))
    for name in ("linear", "scaled_linear", "cosine"):
        assert torch.all(NoiseSchedule.from_name(name, 200).snr().diff() < 0), name  # noise only ever grows


def test_closed_form_matches_the_step_by_step_chain():
    """Many independent chains of a scalar x_0: mean and variance of x_t must be sqrt(ab) x_0 and 1 - ab."""
    schedule = NoiseSchedule.from_name("linear", 300)
    n = 20_000
    x0 = torch.full((n,), 0.8, dtype=torch.float64)
    states = q_chain(x0, schedule.betas, generator=torch.Generator().manual_seed(0))
    ab = schedule.alphas_cumprod
    for t in [0, 10, 100, 299]:
        xt = states[t + 1]
        mean, var = 0.8 * ab[t].sqrt(), 1 - ab[t]
        assert abs(xt.mean() - mean) < 5 * math.sqrt(var / n)
        assert abs(xt.var() - var) < 5 * var * math.sqrt(2 / n)


def test_seed_error_single_step_alpha_is_not_the_closed_form():
    """Using alphas[t] instead of alphas_cumprod[t] leaves almost all the signal at the last step."""
    schedule = NoiseSchedule.from_name("linear", 1000)
    assert schedule.alphas[-1].sqrt() > 0.98
    assert schedule.alphas_cumprod[-1].sqrt() < 0.01


def test_q_sample_broadcasts_per_sample_timesteps():
    schedule = NoiseSchedule.from_name("cosine", 100)
    x0 = torch.ones(3, 2, 4, 4)
    noise = torch.zeros_like(x0)
    xt = q_sample(x0, torch.tensor([0, 50, 99]), schedule.alphas_cumprod, noise)
    expected = schedule.alphas_cumprod[[0, 50, 99]].sqrt().float()
    torch.testing.assert_close(xt[:, 0, 0, 0], expected)
    assert xt.dtype == torch.float32
    torch.testing.assert_close(q_sample(x0, 50, schedule.alphas_cumprod, noise)[1], xt[1])


def test_add_noise_is_reproducible_with_a_generator():
    schedule = NoiseSchedule.from_name("linear", 100)
    x0 = torch.zeros(2, 3)
    a, _ = schedule.add_noise(x0, 40, generator=torch.Generator().manual_seed(3))
    b, _ = schedule.add_noise(x0, 40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_betas("quadratic", 10), "unknown schedule name 'quadratic'; expected one of linear"),
        (lambda: linear_betas(0), "num_timesteps must be a positive integer"),
        (lambda: linear_betas(10, beta_start=0.0), "beta_start must lie in the open interval (0, 1)"),
        (lambda: scaled_linear_betas(10, beta_end=1.5), "beta_end must lie in the open interval (0, 1)"),
        (lambda: cosine_betas(10, max_beta=1.0), "max_beta must lie in the open interval (0, 1)"),
    ],
)
def test_bad_schedule_arguments(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_bad_forward_arguments_name_the_argument():
    ab = NoiseSchedule.from_name("linear", 10).alphas_cumprod
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.9"):
        q_sample(x0, 10, ab, torch.zeros_like(x0))
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.9"):
        q_sample(x0, torch.tensor([0, -1]), ab, torch.zeros_like(x0))
    with pytest.raises(TypeError, match="t must be an int or an integer tensor"):
        q_sample(x0, torch.tensor([0.5, 1.0]), ab, torch.zeros_like(x0))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(2,\)"):
        q_sample(x0, torch.tensor([1, 2, 3]), ab, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="noise must have the sample's shape"):
        q_sample(x0, 1, ab, torch.zeros(3, 3))
    with pytest.raises(TypeError, match="x0 must be a floating-point tensor"):
        q_sample(torch.zeros(2, 3, dtype=torch.long), 1, ab, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="alphas_cumprod must be a 1-D floating-point tensor"):
        q_sample(x0, 1, ab.reshape(2, 5), torch.zeros_like(x0))
    with pytest.raises(ValueError, match=r"betas must lie in the open interval \(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.2], dtype=torch.float64))


def test_q_chain_record_keeps_only_the_asked_states():
    betas = linear_betas(50)
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    full = q_chain(x0, betas, generator=torch.Generator().manual_seed(5))
    some = q_chain(x0, betas, generator=torch.Generator().manual_seed(5), record=[0, 7, 50])
    assert full.shape == (51, 4, 3)
    torch.testing.assert_close(some, full[[0, 7, 50]])
    with pytest.raises(ValueError, match=r"record must list step counts in 0\.\.50"):
        q_chain(x0, betas, record=[51])
