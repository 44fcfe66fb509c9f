"""What every sampler shares: argument checks, timestep grids and the denoising loop.

A sampler starts from pure noise x_T and applies one ``step`` per timestep of a grid,
each step calling the network once. The samplers differ only in the grid and in the
step (``ddpm``, ``ddim``, ``flow``); this module holds the rest, once.

Timestep grids follow diffusers' ``set_timesteps`` for DDPM and DDIM, so that a model
can be sampled with the same steps by either library:

=========  ==========================================================  ================
spacing    timesteps for T = 1000 training steps and n = 10             used by
=========  ==========================================================  ================
leading    900, 800, ..., 100, 0 (+ ``steps_offset``)                   diffusers' default
trailing   999, 899, ..., 199, 99                                       Lin et al. (2024)
linspace   999, 888, ..., 111, 0                                        Karras et al. (2022)
=========  ==========================================================  ================

"leading" never visits the last, noisiest timestep when n < T: sampling then starts
from pure noise at a step where the training inputs still held a trace of the image.
"trailing" fixes that (Lin et al. 2024, Table 2); the chapter measures the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.diffusion.schedules import NoiseSchedule, check_alphas_cumprod

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


class SamplerStep(NamedTuple):
    """One step's result: the less noisy sample and the step's estimate of the clean sample x_0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


@dataclass
class Trajectory:
    """The states a sampler visited: ``states[0]`` is the starting noise, ``states[-1]`` the sample.

    ``predicted_x0[i]`` is the network's estimate of the clean sample at step ``i`` (one
    fewer than the states); ``times[i]`` the timestep (DDPM/DDIM) or time (flow) of
    ``states[i]``, with -1 (DDPM/DDIM) or 0.0 (flow) for the final sample.
    """

    states: torch.Tensor
    predicted_x0: torch.Tensor
    times: torch.Tensor


# --- argument checks ------------------------------------------------------------------


def check_prediction_type(prediction_type: str) -> str:
    """``prediction_type`` if it is one of ``PREDICTION_TYPES``, else a ValueError naming the choices."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {', '.join(map(repr, PREDICTION_TYPES))}, got {prediction_type!r}"
        )
    return prediction_type


def check_tensor(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` if it is a floating-point tensor with a batch dimension, else an error naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    return x


def check_same_shape(name: str, x: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """``x`` (a model output or a noise tensor) must have the sample's shape: no silent broadcasting."""
    check_tensor(name, x)
    if x.shape != sample.shape:
        raise ValueError(f"{name} must have the sample's shape {tuple(sample.shape)}, got {tuple(x.shape)}")
    return x


def check_num_steps(name: str, value: int, maximum: int | None = None) -> int:
    """A step count as an int: at least 1 and, for DDPM/DDIM grids, at most the training timesteps."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(
            f"{name}={value} is more than the schedule's {maximum} training timesteps; "
            f"a model can only be sampled at timesteps it was trained on"
        )
    return int(value)


def as_alphas_cumprod(schedule: NoiseSchedule | torch.Tensor) -> torch.Tensor:
    """The float64 table alphabar_t of a :class:`NoiseSchedule` or of a 1-D tensor."""
    if isinstance(schedule, NoiseSchedule):
        return schedule.alphas_cumprod
    ab = check_alphas_cumprod(schedule).to(torch.float64)
    if torch.any(ab <= 0) or torch.any(ab > 1):
        raise ValueError("alphas_cumprod must lie in (0, 1]")
    return ab


def draw_noise(
    sample: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The given ``noise`` (checked), or standard normal noise drawn on the CPU from ``generator``.

    Drawing on the CPU and then moving makes a seeded run give the same numbers on every
    device, as diffusers' ``randn_tensor`` does.
    """
    if noise is not None:
        if generator is not None:
            raise ValueError("give either noise or generator, not both")
        return check_same_shape("noise", noise, sample)
    drawn = torch.randn(sample.shape, generator=generator, dtype=sample.dtype)
    return drawn.to(sample.device)


def per_sample(value: torch.Tensor | float, like: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or a (B,) tensor as a tensor that broadcasts against ``like`` (B, ...) sample by sample."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        return value
    if value.ndim != 1 or value.shape[0] != like.shape[0]:
        raise ValueError(
            f"{name} must be a scalar or have shape ({like.shape[0]},), one value per sample; got {tuple(value.shape)}"
        )
    return value.reshape(-1, *([1] * (like.ndim - 1)))


# --- timestep grids -----------------------------------------------------------------------


def inference_timesteps(
    num_train_timesteps: int,
    num_inference_steps: int | None = None,
    spacing: str = "leading",
    steps_offset: int = 0,
) -> torch.Tensor:
    """The decreasing integer timesteps a DDPM/DDIM sampler visits (diffusers' ``set_timesteps``).

    ``num_inference_steps=None`` means every training timestep, T - 1 down to 0. The
    three ``spacing`` rules are those of the module docstring; ``steps_offset`` shifts the
    "leading" grid up (Stable Diffusion uses 1).
    """
    T = check_num_steps("num_train_timesteps", num_train_timesteps)
    n = T if num_inference_steps is None else check_num_steps("num_inference_steps", num_inference_steps, T)
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(map(repr, TIMESTEP_SPACINGS))}, got {spacing!r}")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, (int, np.integer)) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative integer, got {steps_offset!r}")
    if spacing == "leading":
        grid = (np.arange(n) * (T // n)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        grid = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    else:
        grid = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    if grid.max() >= T:
        raise ValueError(f"steps_offset={steps_offset} pushes the grid past the last timestep {T - 1}")
    return torch.from_numpy(grid.copy())


def previous_timesteps(timesteps: torch.Tensor) -> torch.Tensor:
    """The timestep each step of a grid goes to: the next entry, and -1 (the clean sample) after the last."""
    return torch.cat([timesteps[1:], timesteps.new_tensor([-1])])


# --- the loop ---------------------------------------------------------------------------


def model_timesteps(value: float | int, batch_size: int, device: torch.device) -> torch.Tensor:
    """One timestep for the whole batch as the (B,) tensor networks take: int64 for integers, else float32."""
    dtype = torch.long if isinstance(value, (int, np.integer)) else torch.float32
    return torch.full((batch_size,), value, dtype=dtype, device=device)


@torch.no_grad()
def denoising_loop(
    model: nn.Module,
    x_T: torch.Tensor,
    times: Sequence[float | int],
    step: Callable[[torch.Tensor, int, torch.Tensor], SamplerStep],
    *,
    record: bool = False,
    final_time: float | int = -1,
) -> torch.Tensor | tuple[torch.Tensor, Trajectory]:
    """Run ``x <- step(model(x, times[i]), i, x).prev_sample`` for every entry of ``times``.

    The network is put in eval mode for the loop (dropout off) and restored afterwards.
    With ``record`` it also returns a :class:`Trajectory` (kept on the CPU).
    """
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    x = x_T
    states, predictions = [x.detach().cpu()] if record else [], []
    try:
        for i, t in enumerate(times):
            output = model(x, model_timesteps(t, x.shape[0], x.device))
            check_same_shape("model_output", output, x)
            result = step(output, i, x)
            x = result.prev_sample
            if record:
                states.append(x.detach().cpu())
                predictions.append(result.pred_original_sample.detach().cpu())
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    if not record:
        return x
    all_times = torch.tensor([*times, final_time], dtype=torch.float64)
    return x, Trajectory(torch.stack(states), torch.stack(predictions), all_times)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a parameter-free callable)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def initial_noise(
    shape: Sequence[int],
    *,
    x_T: torch.Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The starting point x_T ~ N(0, I): ``x_T`` if given, else drawn on the CPU from ``generator``."""
    if x_T is not None:
        check_tensor("x_T", x_T)
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x_T.shape)}")
        return x_T.to(device) if device is not None else x_T
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape) or not len(shape):
        raise ValueError(f"shape must be a non-empty sequence of positive integers (B, ...), got {tuple(shape)!r}")
    x = torch.randn(tuple(int(s) for s in shape), generator=generator, dtype=dtype)
    return x.to(device) if device is not None else x
