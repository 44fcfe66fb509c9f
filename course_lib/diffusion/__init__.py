"""Diffusion models, one idea a module.

- ``schedules``: beta schedules (linear, scaled-linear, cosine) and what follows from them
- ``forward``: the forward process q(x_t | x_{t-1}) and its closed form q(x_t | x_0)
"""

from course_lib.diffusion.forward import q_chain, q_sample, q_step
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
    "SCHEDULE_NAMES",
    "NoiseSchedule",
    "alphas_cumprod_from_betas",
    "cosine_betas",
    "linear_betas",
    "make_betas",
    "q_chain",
    "q_sample",
    "q_step",
    "scaled_linear_betas",
    "snr",
    "snr_db",
]
