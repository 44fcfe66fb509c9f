"""DDPM ancestral sampling: draw x_{t-1} from the true posterior, with x_0 replaced by its estimate.

Given x_0, the forward process can be run backwards exactly (Ho et al. 2020, eqs. 6-7):

    q(x_s | x_t, x_0) = N( c_0 x_0 + c_t x_t ,  sigma^2 I ),   s < t,

    beta     = 1 - alphabar_t / alphabar_s        (one DDPM step: s = t - 1, beta = beta_t)
    c_0      = sqrt(alphabar_s) beta / (1 - alphabar_t)
    c_t      = sqrt(1 - beta) (1 - alphabar_s) / (1 - alphabar_t)
    sigma^2  = (1 - alphabar_s) / (1 - alphabar_t) * beta        ("fixed_small", beta tilde)

A sampler does not know x_0, so it uses the network's estimate; everything else is
fixed by the schedule. Written for a general earlier step s (not only t - 1), the same
formulas sample with fewer steps, as diffusers' ``DDPMScheduler`` does: ``beta`` is then
the variance of the whole jump from s to t.

Ho et al. also tried sigma^2 = beta ("fixed_large"); both work for long chains, the
posterior variance (the default) is the better one with few steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from course_lib.diffusion.objectives import split_prediction
from course_lib.diffusion.sampling import (
    SamplerStep,
    Trajectory,
    as_alphas_cumprod,
    check_prediction_type,
    check_same_shape,
    check_tensor,
    denoising_loop,
    draw_noise,
    inference_timesteps,
    initial_noise,
    model_device,
    previous_timesteps,
)
from course_lib.diffusion.schedules import NoiseSchedule

VARIANCE_TYPES = ("fixed_small", "fixed_large")


def posterior_coefficients(alphabar_t, alphabar_prev) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_0, c_t, sigma^2) of q(x_s | x_t, x_0) = N(c_0 x_0 + c_t x_t, sigma^2 I) (Ho et al. 2020, eq. 7).

    ``alphabar_t`` and ``alphabar_prev`` (= alphabar_s, 1 for the clean sample) are tensors
    of one shape (float64 results of that shape) or two Python floats (float results, which
    is what a sampler's step uses: no tensor is made for three numbers).
    """
    floats = all(isinstance(a, float) for a in (alphabar_t, alphabar_prev))
    ab_t = alphabar_t if floats else torch.as_tensor(alphabar_t, dtype=torch.float64)
    ab_s = alphabar_prev if floats else torch.as_tensor(alphabar_prev, dtype=torch.float64)
    if floats:
        t_ok, s_ok = 0 < ab_t < 1, ab_t < ab_s <= 1
    else:
        t_ok, s_ok = bool(((ab_t > 0) & (ab_t < 1)).all()), bool(((ab_s > ab_t) & (ab_s <= 1)).all())
    if not t_ok:
        raise ValueError("alphabar_t must lie in (0, 1): the noisy sample must hold some noise")
    if not s_ok:
        raise ValueError("alphabar_prev must lie in (alphabar_t, 1]: the earlier step is the less noisy one")
    beta = 1 - ab_t / ab_s
    coef_x0 = ab_s**0.5 * beta / (1 - ab_t)
    coef_xt = (1 - beta) ** 0.5 * (1 - ab_s) / (1 - ab_t)
    variance = (1 - ab_s) / (1 - ab_t) * beta
    return coef_x0, coef_xt, variance


@dataclass(frozen=True)
class DDPMSampler:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) for eps-, x_0- or v-predicting models.

    >>> sampler = DDPMSampler(schedule, prediction_type="epsilon")
    >>> for t, s in zip(sampler.timesteps(), previous_timesteps(sampler.timesteps())):
    ...     x = sampler.step(model(x, t), t, x, prev_timestep=s).prev_sample

    ``step`` matches diffusers' ``DDPMScheduler.step`` on the same inputs (tested):
    ``clip_sample`` clamps the x_0 estimate to +-``clip_sample_range`` before the
    posterior mean is formed (diffusers' default is True; ours is False, because a
    clamp hides a badly trained model instead of fixing it).
    """

    schedule: NoiseSchedule | torch.Tensor
    prediction_type: str = "epsilon"
    variance_type: str = "fixed_small"
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas_cumprod", as_alphas_cumprod(self.schedule))
        check_prediction_type(self.prediction_type)
        if self.variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {self.variance_type!r}")
        if not self.clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be positive, got {self.clip_sample_range!r}")
        self.timesteps(1)  # validates spacing and offset

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def timesteps(self, num_inference_steps: int | None = None) -> torch.Tensor:
        """The grid, from the noisiest step down (all T steps when ``num_inference_steps`` is None)."""
        return inference_timesteps(
            self.num_train_timesteps, num_inference_steps, self.timestep_spacing, self.steps_offset
        )

    def alphabar(self, timestep: int) -> float:
        """alphabar at ``timestep``; 1.0 at timestep -1, the clean sample."""
        return 1.0 if timestep < 0 else float(self.alphas_cumprod[timestep])

    def _check_timesteps(self, timestep, prev_timestep) -> tuple[int, int]:
        if isinstance(timestep, torch.Tensor) and timestep.numel() == 1:
            timestep = int(timestep)
        if isinstance(timestep, bool) or not isinstance(timestep, int) or not 0 <= timestep < self.num_train_timesteps:
            raise ValueError(f"timestep must be an integer in 0..{self.num_train_timesteps - 1}, got {timestep!r}")
        prev = timestep - 1 if prev_timestep is None else int(prev_timestep)
        if not -1 <= prev < timestep:
            raise ValueError(f"prev_timestep must lie in -1..{timestep - 1} (before timestep), got {prev_timestep!r}")
        return timestep, prev

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        *,
        prev_timestep: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplerStep:
        """x_s = c_0 x0_hat + c_t x_t + sigma z, z ~ N(0, I), for s = ``prev_timestep`` (default t - 1).

        ``noise`` is z (for reproducible, comparable runs); without it z is drawn from
        ``generator``. No noise is added at timestep 0, as in Algorithm 2.
        """
        check_tensor("sample", sample)
        check_same_shape("model_output", model_output, sample)
        t, s = self._check_timesteps(timestep, prev_timestep)
        ab_t, ab_s = self.alphabar(t), self.alphabar(s)
        x0_hat, _ = split_prediction(model_output, sample, ab_t, self.prediction_type)
        if self.clip_sample:
            x0_hat = x0_hat.clamp(-self.clip_sample_range, self.clip_sample_range)
        coef_x0, coef_xt, variance = posterior_coefficients(ab_t, ab_s)
        mean = coef_x0 * x0_hat + coef_xt * sample
        if noise is not None:
            draw_noise(sample, noise, generator)  # checks its shape even where it is not used
        if t == 0:
            return SamplerStep(mean, x0_hat)
        if self.variance_type == "fixed_large":
            variance = 1 - ab_t / ab_s
        z = draw_noise(sample, noise, generator)
        return SamplerStep(mean + variance**0.5 * z, x0_hat)


def ddpm_sample(
    model: nn.Module,
    schedule: NoiseSchedule | torch.Tensor,
    shape: Sequence[int],
    *,
    prediction_type: str = "epsilon",
    num_inference_steps: int | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    variance_type: str = "fixed_small",
    clip_sample: bool = False,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Trajectory]:
    """Draw ``shape[0]`` samples by ancestral sampling with ``model(x, t)`` (Ho et al. 2020, Algorithm 2).

    All T steps by default; ``num_inference_steps`` samples on a coarser grid (the posterior
    of each longer jump, see the module docstring). x_T and every step's noise come from
    ``generator`` (drawn on the CPU, so a seed gives the same samples on any device), or
    x_T is given. ``return_trajectory`` also returns the visited states.
    """
    sampler = DDPMSampler(
        schedule, prediction_type, variance_type, clip_sample,
        timestep_spacing=timestep_spacing, steps_offset=steps_offset,
    )
    times = sampler.timesteps(num_inference_steps)
    previous = previous_timesteps(times).tolist()
    device = model_device(model) if device is None else torch.device(device)
    x = initial_noise(shape, x_T=x_T, generator=generator, device=device)

    def step(output, i, x):
        return sampler.step(output, int(times[i]), x, prev_timestep=previous[i], generator=generator)

    return denoising_loop(model, x, times.tolist(), step, record=return_trajectory)
