"""Diffusion models, one idea a module.

- ``schedules``: beta schedules (linear, scaled-linear, cosine) and what follows from them
- ``forward``: the forward process q(x_t | x_{t-1}) and its closed form q(x_t | x_0)
- ``objectives``: what the network predicts (eps, x_0 or v), conversions, the training loss
- ``sampling``: what the samplers share: timestep grids, argument checks, the denoising loop
- ``ddpm``: ancestral sampling from the true posterior (Ho et al. 2020)
- ``ddim``: deterministic and few-step sampling (Song et al. 2021)
- ``flow``: flow matching with straight paths and the Euler sampler (Lipman et al. 2023)
"""

from course_lib.diffusion.ddim import DDIMSampler, ddim_sample, ddim_sigma
from course_lib.diffusion.ddpm import DDPMSampler, ddpm_sample, posterior_coefficients
from course_lib.diffusion.flow import (
    EulerFlowSampler,
    flow_interpolate,
    flow_matching_loss,
    flow_sample,
    flow_time_grid,
    flow_velocity_target,
)
from course_lib.diffusion.forward import q_chain, q_sample, q_step
from course_lib.diffusion.objectives import (
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    prediction_target,
    split_prediction,
    velocity,
    x0_error_weight,
    x0_from_eps,
    x0_from_v,
)
from course_lib.diffusion.sampling import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SamplerStep,
    Trajectory,
    inference_timesteps,
    previous_timesteps,
)
from course_lib.diffusion.schedules import (
    SCHEDULE_NAMES,
    NoiseSchedule,
    alphas_cumprod_from_betas,
    cosine_betas,
    linear_betas,
    make_betas,
    scaled_linear_betas,
    snr,
    snr_db,
)

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "EulerFlowSampler",
    "PREDICTION_TYPES",
    "SCHEDULE_NAMES",
    "SamplerStep",
    "TIMESTEP_SPACINGS",
    "NoiseSchedule",
    "Trajectory",
    "alphas_cumprod_from_betas",
    "cosine_betas",
    "ddim_sample",
    "ddim_sigma",
    "ddpm_sample",
    "diffusion_loss",
    "eps_from_v",
    "eps_from_x0",
    "flow_interpolate",
    "flow_matching_loss",
    "flow_sample",
    "flow_time_grid",
    "flow_velocity_target",
    "inference_timesteps",
    "linear_betas",
    "make_betas",
    "posterior_coefficients",
    "prediction_target",
    "previous_timesteps",
    "q_chain",
    "q_sample",
    "q_step",
    "scaled_linear_betas",
    "snr",
    "snr_db",
    "split_prediction",
    "velocity",
    "x0_error_weight",
    "x0_from_eps",
    "x0_from_v",
]
