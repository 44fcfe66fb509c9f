"""DDIM: the same trained model, sampled with far fewer steps, deterministically if we like.

Song, Meng and Ermon (2021) noticed that the DDPM loss only ever looks at the marginals
q(x_t | x_0), never at the chain that links them. Any process with those marginals fits
the same model, and they pick a family indexed by sigma (their eq. 12):

    x_s = sqrt(alphabar_s) x0_hat  +  sqrt(1 - alphabar_s - sigma^2) eps_hat  +  sigma z

    sigma = eta * sqrt( (1 - alphabar_s) / (1 - alphabar_t) ) * sqrt( 1 - alphabar_t / alphabar_s )

Read it as: estimate x_0 and eps from x_t, then re-noise the estimate to level s, reusing
the *predicted* noise for most of the new noise and fresh noise z for the rest.

- eta = 1 gives DDPM's posterior variance: ancestral sampling again;
- eta = 0 adds no fresh noise: the sampler is a deterministic map from x_T to x_0 (the
  probability-flow ODE, discretised), which tolerates large jumps s << t.
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


def _check_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0 (0: deterministic DDIM, 1: DDPM's variance), got {eta!r}")
    return float(eta)


def ddim_sigma(alphabar_t: float, alphabar_prev: float, eta: float) -> float:
    """sigma of the DDIM step from t to s (Song et al. 2021, eq. 16); eta = 1 is DDPM's posterior std."""
    return eta * ((1 - alphabar_prev) / (1 - alphabar_t) * (1 - alphabar_t / alphabar_prev)) ** 0.5


@dataclass(frozen=True)
class DDIMSampler:
    """Denoising diffusion implicit models (Song et al. 2021): one ``step`` per grid point.

    ``step`` matches diffusers' ``DDIMScheduler.step`` on the same inputs (tested) with
    ``set_alpha_to_one=True``: the last step lands on alphabar = 1, the clean sample.
    ``clip_sample`` clamps the x_0 estimate (diffusers' default True, ours False); the
    eps estimate is taken before clamping, as diffusers does by default.
    """

    schedule: NoiseSchedule | torch.Tensor
    prediction_type: str = "epsilon"
    eta: float = 0.0
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas_cumprod", as_alphas_cumprod(self.schedule))
        check_prediction_type(self.prediction_type)
        object.__setattr__(self, "eta", _check_eta(self.eta))
        if not self.clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be positive, got {self.clip_sample_range!r}")
        self.timesteps(1)  # validates spacing and offset

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def timesteps(self, num_inference_steps: int = 50) -> torch.Tensor:
        """The grid, from the noisiest step down (diffusers' ``set_timesteps`` rules)."""
        return inference_timesteps(
            self.num_train_timesteps, num_inference_steps, self.timestep_spacing, self.steps_offset
        )

    def alphabar(self, timestep: int) -> float:
        """alphabar at ``timestep``; 1.0 at any negative timestep, the clean sample."""
        return 1.0 if timestep < 0 else float(self.alphas_cumprod[timestep])

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        *,
        prev_timestep: int,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplerStep:
        """x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma z  (Song et al. 2021, eq. 12).

        ``prev_timestep`` is s (-1 or less: the clean sample). ``noise`` is z; it is used,
        and drawn from ``generator`` when not given, only when eta > 0.
        """
        check_tensor("sample", sample)
        check_same_shape("model_output", model_output, sample)
        if isinstance(timestep, torch.Tensor) and timestep.numel() == 1:
            timestep = int(timestep)
        if isinstance(timestep, bool) or not isinstance(timestep, int) or not 0 <= timestep < self.num_train_timesteps:
            raise ValueError(f"timestep must be an integer in 0..{self.num_train_timesteps - 1}, got {timestep!r}")
        if not int(prev_timestep) < timestep:
            raise ValueError(f"prev_timestep must come before timestep {timestep}, got {prev_timestep!r}")
        ab_t, ab_s = self.alphabar(timestep), self.alphabar(int(prev_timestep))
        x0_hat, eps_hat = split_prediction(model_output, sample, ab_t, self.prediction_type)
        if self.clip_sample:
            x0_hat = x0_hat.clamp(-self.clip_sample_range, self.clip_sample_range)
        sigma = ddim_sigma(ab_t, ab_s, self.eta)
        # max(., 0): at eta = 1 and the last step the difference is 0 up to rounding, never below
        x_prev = ab_s**0.5 * x0_hat + max(1 - ab_s - sigma**2, 0.0) ** 0.5 * eps_hat
        if noise is not None:
            draw_noise(sample, noise, generator)  # checks its shape even where it is not used
        if self.eta > 0:
            x_prev = x_prev + sigma * draw_noise(sample, noise, generator)
        return SamplerStep(x_prev, x0_hat)


def ddim_sample(
    model: nn.Module,
    schedule: NoiseSchedule | torch.Tensor,
    shape: Sequence[int],
    *,
    num_inference_steps: int = 50,
    eta: float = 0.0,
    prediction_type: str = "epsilon",
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    clip_sample: bool = False,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Trajectory]:
    """Draw ``shape[0]`` samples with ``num_inference_steps`` DDIM steps of ``model(x, t)``.

    With ``eta=0`` the result is a deterministic function of x_T (from ``generator`` or
    given); with ``eta > 0`` each step also draws fresh noise from ``generator``.
    """
    sampler = DDIMSampler(
        schedule, prediction_type, eta, clip_sample, timestep_spacing=timestep_spacing, steps_offset=steps_offset
    )
    times = sampler.timesteps(num_inference_steps)
    previous = previous_timesteps(times).tolist()
    device = model_device(model) if device is None else torch.device(device)
    x = initial_noise(shape, x_T=x_T, generator=generator, device=device)

    def step(output, i, x):
        return sampler.step(output, int(times[i]), x, prev_timestep=previous[i], generator=generator)

    return denoising_loop(model, x, times.tolist(), step, record=return_trajectory)
