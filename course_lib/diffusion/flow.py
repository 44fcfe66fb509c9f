"""Flow matching with straight paths (rectified flow): learn a velocity field, integrate it with Euler.

Join each data point x_0 to a noise sample eps by a straight line,

    x_t = (1 - t) x_0 + t eps,        t in [0, 1]   (t = 0: data, t = 1: noise),

along which a point moves with the constant velocity  d x_t / dt = eps - x_0.
A network u(x_t, t) trained to regress that velocity (Lipman et al. 2023; Liu et al. 2023),

    L = E_{t ~ U(0,1), x_0, eps} | (eps - x_0) - u(x_t, t) |^2 ,

learns, at every (x, t), the *average* velocity of all the lines through x at time t.
That field transports the noise distribution onto the data distribution, so solving
dx/dt = u(x, t) from t = 1 down to t = 0 turns noise into samples. The Euler method does
it in a few steps:  x_{t'} = x_t + (t' - t) u(x_t, t)  with t' < t.

Time runs as in diffusers' ``FlowMatchEulerDiscreteScheduler`` and Stable Diffusion 3
(t = 1 is noise, like t = T in DDPM). Lipman et al. and Liu et al. run it the other
way (t = 0 noise, t = 1 data, velocity x_0 - eps): the same model with t -> 1 - t and
the sign of the velocity flipped. The network sees ``t * num_train_timesteps``, as in
diffusers, so that a sinusoidal time embedding meant for 0..1000 gets a useful range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from course_lib.diffusion.sampling import (
    SamplerStep,
    Trajectory,
    check_num_steps,
    check_same_shape,
    check_tensor,
    denoising_loop,
    draw_noise,
    initial_noise,
    model_device,
    per_sample,
)


def _check_times(t, like: torch.Tensor, name: str = "t") -> torch.Tensor:
    t = per_sample(t, like, name)
    if torch.any(t < 0) or torch.any(t > 1):
        raise ValueError(f"{name} must lie in [0, 1] (0: data, 1: noise)")
    return t


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps: the straight path from data (t = 0) to noise (t = 1); ``t`` scalar or (B,)."""
    check_same_shape("noise", noise, check_tensor("x0", x0))
    t = _check_times(t, x0)
    return (1 - t) * x0 + t * noise


def flow_velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d x_t / dt = eps - x_0: the velocity along the straight path, the same at every t."""
    check_same_shape("noise", noise, check_tensor("x0", x0))
    return noise - x0


def flow_matching_loss(
    model: nn.Module,
    x0: torch.Tensor,
    *,
    t: torch.Tensor | float | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """Conditional flow matching with straight paths: mean | (eps - x_0) - u(x_t, t * 1000) |^2.

    ``t`` ~ U(0, 1) per sample and ``noise`` ~ N(0, I) unless given (Lipman et al. 2023,
    eq. 23 with sigma_min = 0; Liu et al. 2023, eq. 1).
    """
    check_tensor("x0", x0)
    check_num_steps("num_train_timesteps", num_train_timesteps)
    if t is None:
        t = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype).to(x0.device)
    t_per_sample = torch.as_tensor(t, dtype=x0.dtype, device=x0.device).expand(x0.shape[0])
    noise = draw_noise(x0, noise, generator)
    x_t = flow_interpolate(x0, noise, t_per_sample)
    output = model(x_t, t_per_sample * num_train_timesteps)
    check_same_shape("model_output", output, x0)
    return (output - flow_velocity_target(x0, noise)).pow(2).mean()


def flow_time_grid(num_inference_steps: int, num_train_timesteps: int = 1000, shift: float = 1.0) -> torch.Tensor:
    """The times t_0 = 1 > t_1 > ... > t_n = 0 an Euler sampler visits (n + 1 values, float64).

    As diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps``: n times evenly
    spaced from 1 down to 1 / num_train_timesteps (with ``shift = 1``), then 0. ``shift`` > 1 spends more of
    the steps at high noise, t -> shift t / (1 + (shift - 1) t) (Esser et al. 2024 use 3).
    """
    n = check_num_steps("num_inference_steps", num_inference_steps)
    T = check_num_steps("num_train_timesteps", num_train_timesteps)
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not shift > 0:
        raise ValueError(f"shift must be a positive number, got {shift!r}")
    def shifted(t):
        return shift * t / (1 + (shift - 1) * t)

    # diffusers spaces the grid down to the *shifted* 1/T and then shifts the whole grid,
    # so its lowest nonzero time is shifted twice; mirrored here so that the grids agree
    t = shifted(np.linspace(1.0, shifted(1.0 / T), n))
    return torch.from_numpy(np.append(t, 0.0))


@dataclass(frozen=True)
class EulerFlowSampler:
    """The Euler method for dx/dt = u(x, t), from t = 1 (noise) to t = 0 (data).

    ``step`` matches diffusers' ``FlowMatchEulerDiscreteScheduler.step`` (tested), with the
    network's timestep ``t * num_train_timesteps``.
    """

    num_train_timesteps: int = 1000
    shift: float = 1.0

    def __post_init__(self) -> None:
        flow_time_grid(1, self.num_train_timesteps, self.shift)  # validates

    def times(self, num_inference_steps: int) -> torch.Tensor:
        """The n + 1 times from 1 to 0 of an n-step run (:func:`flow_time_grid`)."""
        return flow_time_grid(num_inference_steps, self.num_train_timesteps, self.shift)

    def step(self, model_output: torch.Tensor, t: float, t_next: float, sample: torch.Tensor) -> SamplerStep:
        """x_{t'} = x_t + (t' - t) u(x_t, t); also returns the implied x_0 estimate x_t - t u."""
        check_tensor("sample", sample)
        check_same_shape("model_output", model_output, sample)
        t, t_next = float(t), float(t_next)
        if not 0 <= t_next < t <= 1:
            raise ValueError(f"need 0 <= t_next < t <= 1 (time runs from noise at 1 to data at 0), got t={t}, t_next={t_next}")
        # torch.add with alpha is one fused kernel with no temporary: a step costs two passes over x
        return SamplerStep(torch.add(sample, model_output, alpha=t_next - t), torch.add(sample, model_output, alpha=-t))


def flow_sample(
    model: nn.Module,
    shape: Sequence[int],
    num_steps: int = 20,
    *,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    num_train_timesteps: int = 1000,
    shift: float = 1.0,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Trajectory]:
    """Draw ``shape[0]`` samples by ``num_steps`` Euler steps of the velocity ``model(x, t * 1000)``.

    Deterministic given x_1 (from ``generator`` or given as ``x_T``). The trajectory's
    ``times`` are the t in [0, 1] of each state.
    """
    sampler = EulerFlowSampler(num_train_timesteps, shift)
    times = sampler.times(num_steps).tolist()
    device = model_device(model) if device is None else torch.device(device)
    x = initial_noise(shape, x_T=x_T, generator=generator, device=device)

    def step(output, i, x):
        return sampler.step(output, times[i], times[i + 1], x)

    model_times = [t * num_train_timesteps for t in times[:-1]]
    result = denoising_loop(model, x, model_times, step, record=return_trajectory, final_time=0.0)
    if return_trajectory:
        samples, trajectory = result
        trajectory.times = torch.tensor(times, dtype=torch.float64)
        return samples, trajectory
    return result
