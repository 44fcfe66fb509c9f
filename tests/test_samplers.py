"""DDPM, DDIM and Euler flow samplers: agreement with diffusers on identical inputs, and bad input.

Every comparison feeds both libraries the same sample, model output, timestep and noise,
in float64. diffusers keeps its schedule tables in float32, so each reference scheduler
gets our float64 tables before the comparison: what is compared is the step's formula,
not float32 rounding. Tolerance: 1e-6 (absolute and relative) throughout.
"""

import pytest
import torch

from course_lib.diffusion import (
    DDIMSampler,
    DDPMSampler,
    EulerFlowSampler,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    flow_sample,
    flow_time_grid,
    inference_timesteps,
    previous_timesteps,
)

diffusers = pytest.importorskip("diffusers")

TOL = dict(rtol=1e-6, atol=1e-6)
PREDICTIONS = ("epsilon", "sample", "v_prediction")
SHAPE = (3, 1, 4, 4)


def float64_tables(reference, schedule: NoiseSchedule):
    reference.betas = schedule.betas.clone()
    reference.alphas = schedule.alphas.clone()
    reference.alphas_cumprod = schedule.alphas_cumprod.clone()
    if hasattr(reference, "final_alpha_cumprod"):
        reference.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return reference


def tensors(seed: int, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.fixture(scope="module")
def cosine():
    return NoiseSchedule.from_name("cosine", 1000)


# --- DDPM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("clip_sample", [False, True])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_step_matches_diffusers(cosine, prediction_type, clip_sample, variance_type):
    reference = float64_tables(
        diffusers.DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
            clip_sample=clip_sample, variance_type=variance_type,
        ),
        cosine,
    )
    ours = DDPMSampler(cosine, prediction_type, variance_type, clip_sample)
    for t in (999, 500, 37, 1, 0):
        sample, output, _ = tensors(t)
        expected = reference.step(output, t, sample, generator=torch.Generator().manual_seed(t))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        got = ours.step(output, t, sample, noise=noise)
        torch.testing.assert_close(got.prev_sample, expected.prev_sample, **TOL)
        torch.testing.assert_close(got.pred_original_sample, expected.pred_original_sample, **TOL)
        # the generator path draws the same noise as diffusers
        drawn = ours.step(output, t, sample, generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(drawn.prev_sample, expected.prev_sample, **TOL)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_strided_ddpm_steps_match_diffusers(cosine, prediction_type, spacing):
    reference = float64_tables(
        diffusers.DDPMScheduler(
            beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=False,
            timestep_spacing=spacing,
        ),
        cosine,
    )
    reference.set_timesteps(7)
    ours = DDPMSampler(cosine, prediction_type, timestep_spacing=spacing)
    grid = ours.timesteps(7)
    assert grid.tolist() == reference.timesteps.tolist()
    for t, s in zip(grid.tolist(), previous_timesteps(grid).tolist()):
        sample, output, noise = tensors(t)
        expected = reference.step(output, t, sample, generator=torch.Generator().manual_seed(1))
        got = ours.step(output, t, sample, prev_timestep=s, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(got.prev_sample, expected.prev_sample, **TOL)


def test_ddpm_sample_matches_a_diffusers_sampling_loop(cosine):
    model = TinyModel()
    reference = float64_tables(
        diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False),
        cosine,
    )
    reference.set_timesteps(20)
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    ours_generator = torch.Generator()
    ours_generator.set_state(g.get_state())  # both loops draw the steps' noise from the same stream
    x = x_T
    for t in reference.timesteps:
        x = reference.step(model(x, t), int(t), x, generator=g).prev_sample
    ours = ddpm_sample(
        model, cosine, SHAPE, prediction_type="v_prediction", num_inference_steps=20,
        generator=ours_generator, x_T=x_T,
    )
    torch.testing.assert_close(ours, x, **TOL)


# --- DDIM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_step_matches_diffusers(cosine, prediction_type, eta, clip_sample):
    reference = float64_tables(
        diffusers.DDIMScheduler(
            beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=clip_sample
        ),
        cosine,
    )
    reference.set_timesteps(10)
    ours = DDIMSampler(cosine, prediction_type, eta, clip_sample)
    grid = ours.timesteps(10)
    assert grid.tolist() == reference.timesteps.tolist()
    for t, s in zip(grid.tolist(), previous_timesteps(grid).tolist()):
        sample, output, noise = tensors(t + 1)
        expected = reference.step(output, t, sample, eta=eta, variance_noise=noise)
        got = ours.step(output, t, sample, prev_timestep=s, noise=noise)
        torch.testing.assert_close(got.prev_sample, expected.prev_sample, **TOL)
        torch.testing.assert_close(got.pred_original_sample, expected.pred_original_sample, **TOL)


def test_ddim_with_steps_offset_matches_diffusers(cosine):
    reference = float64_tables(
        diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, steps_offset=1), cosine
    )
    reference.set_timesteps(25)
    ours = DDIMSampler(cosine, steps_offset=1)
    grid = ours.timesteps(25)
    assert grid.tolist() == reference.timesteps.tolist() and grid[-1] == 1
    for t, s in zip(grid.tolist(), previous_timesteps(grid).tolist()):
        sample, output, _ = tensors(t)
        expected = reference.step(output, t, sample).prev_sample
        torch.testing.assert_close(ours.step(output, t, sample, prev_timestep=s).prev_sample, expected, **TOL)


def test_ddim_sample_matches_a_diffusers_sampling_loop(cosine):
    model = TinyModel()
    reference = float64_tables(diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False), cosine)
    reference.set_timesteps(10)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = x_T
    for t in reference.timesteps:
        x = reference.step(model(x, t), int(t), x, eta=0.0).prev_sample
    ours = ddim_sample(model, cosine, SHAPE, num_inference_steps=10, x_T=x_T)
    torch.testing.assert_close(ours, x, **TOL)


def test_ddim_with_eta_one_is_ddpm(cosine):
    sample, output, noise = tensors(4)
    ddim = DDIMSampler(cosine, eta=1.0).step(output, 600, sample, prev_timestep=550, noise=noise)
    ddpm = DDPMSampler(cosine).step(output, 600, sample, prev_timestep=550, noise=noise)
    torch.testing.assert_close(ddim.prev_sample, ddpm.prev_sample, **TOL)


# --- timestep grids -----------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 3, 7, 10, 50, 333, 999, 1000])
def test_timestep_grids_match_diffusers(spacing, n):
    for cls in (diffusers.DDPMScheduler, diffusers.DDIMScheduler):
        for offset in ((0, 1) if spacing == "leading" and n < 1000 else (0,)):
            reference = cls(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=offset)
            reference.set_timesteps(n)
            ours = inference_timesteps(1000, n, spacing, offset)
            assert ours.tolist() == reference.timesteps.tolist(), (cls.__name__, spacing, n, offset)


def test_full_grid_is_every_timestep():
    assert inference_timesteps(50).tolist() == list(range(49, -1, -1))


@pytest.mark.parametrize("n", [1, 2, 10, 28, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_time_grid_matches_diffusers(n, shift):
    reference = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    reference.set_timesteps(n)
    ours = flow_time_grid(n, 1000, shift)
    torch.testing.assert_close(ours, reference.sigmas.double(), **TOL)
    torch.testing.assert_close(ours[:-1] * 1000, reference.timesteps.double(), rtol=1e-6, atol=1e-4)


# --- Euler flow ---------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_flow_steps_match_diffusers(shift):
    reference = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    reference.set_timesteps(8)
    ours = EulerFlowSampler(1000, shift)
    times = ours.times(8)
    reference.sigmas = times.clone()  # float64, as above
    for i, timestep in enumerate(reference.timesteps):
        sample, output, _ = tensors(i)
        expected = reference.step(output, timestep, sample).prev_sample
        got = ours.step(output, times[i], times[i + 1], sample)
        # diffusers casts the sample to float32 inside step(): about 1e-7 of rounding
        torch.testing.assert_close(got.prev_sample, expected, **TOL)
        torch.testing.assert_close(got.pred_original_sample, sample - times[i] * output, **TOL)


def test_flow_sample_matches_a_diffusers_sampling_loop():
    model = TinyModel()
    reference = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    reference.set_timesteps(6)
    reference.sigmas = flow_time_grid(6)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = x_T
    for timestep in reference.timesteps:
        x = reference.step(model(x, timestep), timestep, x).prev_sample
    samples, trajectory = flow_sample(model, SHAPE, 6, x_T=x_T, return_trajectory=True)
    torch.testing.assert_close(samples, x, **TOL)
    assert trajectory.states.shape == (7, *SHAPE) and trajectory.predicted_x0.shape == (6, *SHAPE)
    assert trajectory.times[0] == 1.0 and trajectory.times[-1] == 0.0


def test_flow_sampler_integrates_a_constant_velocity_exactly():
    # for u = c the ODE solution from x_1 is x_0 = x_1 - c, whatever the steps
    c = torch.tensor([[0.5, -2.0]])
    x_T = torch.zeros(1, 2)
    for n in (1, 3, 17):
        out = flow_sample(lambda x, t: c.expand_as(x), (1, 2), n, x_T=x_T)
        torch.testing.assert_close(out, -c)


# --- reproducibility ------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_records_trajectories(cosine):
    model = TinyModel().float()
    a = ddpm_sample(model, cosine, (4, 1, 4, 4), num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    b, traj = ddpm_sample(
        model, cosine, (4, 1, 4, 4), num_inference_steps=5, generator=torch.Generator().manual_seed(0),
        return_trajectory=True,
    )
    torch.testing.assert_close(a, b)
    assert traj.states.shape == (6, 4, 1, 4, 4) and traj.times.tolist() == [800, 600, 400, 200, 0, -1]
    torch.testing.assert_close(traj.states[-1], b)
    c = ddpm_sample(model, cosine, (4, 1, 4, 4), num_inference_steps=5, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)
    assert model.training  # the loop restores the model's mode


# --- bad input ------------------------------------------------------------------------------


def test_steps_reject_model_outputs_of_another_shape(cosine):
    sample = torch.zeros(2, 1, 4, 4)
    wrong = torch.zeros(2, 1, 4, 5)
    with pytest.raises(ValueError, match="model_output"):
        DDPMSampler(cosine).step(wrong, 10, sample)
    with pytest.raises(ValueError, match="model_output"):
        DDIMSampler(cosine).step(wrong, 10, sample, prev_timestep=5)
    with pytest.raises(ValueError, match="model_output"):
        EulerFlowSampler().step(wrong, 1.0, 0.5, sample)


def test_sample_functions_reject_a_model_of_the_wrong_output_shape(cosine):
    def bad(x, t):
        return x[:, :, :2]

    with pytest.raises(ValueError, match="model_output"):
        ddpm_sample(bad, cosine, (2, 1, 4, 4), num_inference_steps=2)
    with pytest.raises(ValueError, match="model_output"):
        ddim_sample(bad, cosine, (2, 1, 4, 4), num_inference_steps=2)
    with pytest.raises(ValueError, match="model_output"):
        flow_sample(bad, (2, 1, 4, 4), 2)


def test_unknown_prediction_types_are_rejected(cosine):
    for make in (lambda: DDPMSampler(cosine, "noise"), lambda: DDIMSampler(cosine, "x0")):
        with pytest.raises(ValueError, match="prediction_type"):
            make()
    with pytest.raises(ValueError, match="prediction_type"):
        ddpm_sample(TinyModel(), cosine, SHAPE, prediction_type="eps")


@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5, True])
def test_step_counts_outside_the_schedule_are_rejected(cosine, steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        ddim_sample(TinyModel(), cosine, SHAPE, num_inference_steps=steps)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ddpm_sample(TinyModel(), cosine, SHAPE, num_inference_steps=steps)
    if steps != 1001:  # the flow's time is continuous: any count >= 1 is fine
        with pytest.raises(ValueError, match="num_inference_steps"):
            flow_sample(TinyModel(), SHAPE, steps)


def test_other_bad_arguments_name_themselves(cosine):
    sample = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="noise"):
        DDPMSampler(cosine).step(sample, 5, sample, noise=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="timestep"):
        DDPMSampler(cosine).step(sample, 1000, sample)
    with pytest.raises(ValueError, match="prev_timestep"):
        DDPMSampler(cosine).step(sample, 5, sample, prev_timestep=5)
    with pytest.raises(ValueError, match="eta"):
        DDIMSampler(cosine, eta=-0.1)
    with pytest.raises(ValueError, match="variance_type"):
        DDPMSampler(cosine, variance_type="learned")
    with pytest.raises(ValueError, match="spacing"):
        inference_timesteps(1000, 10, "uniform")
    with pytest.raises(ValueError, match="t_next"):
        EulerFlowSampler().step(sample, 0.2, 0.5, sample)
    with pytest.raises(ValueError, match="x_T"):
        ddim_sample(TinyModel(), cosine, SHAPE, x_T=torch.zeros(1, 2))
    with pytest.raises(TypeError, match="sample"):
        DDPMSampler(cosine).step(sample, 5, sample.numpy())


class TinyModel(torch.nn.Module):
    """A fixed, time-dependent, nonlinear map: enough to tell one sampler's arithmetic from another's."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * (x.ndim - 1))) / 1000
        return (self.scale * torch.tanh(x) * (1 + t) - 0.1 * t).to(x.dtype)
