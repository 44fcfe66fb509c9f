"""What the network predicts, how to convert between the choices, and the training loss.

A noisy sample x_t = sqrt(alphabar) x_0 + sqrt(1 - alphabar) eps holds two unknowns,
x_0 and eps; knowing x_t and either one gives the other. A denoising network can
therefore be trained to output any of three equivalent targets (diffusers' names):

==============  ==========================================  =============================
prediction      the network outputs                          introduced by
==============  ==========================================  =============================
epsilon         the noise eps                                Ho et al. (2020)
sample          the clean sample x_0                         (the "obvious" choice)
v_prediction    v = sqrt(alphabar) eps - sqrt(1-alphabar) x_0  Salimans & Ho (2022)
==============  ==========================================  =============================

All three conversions are exact, so the choice changes only the *weighting* of the
loss across noise levels: the mean squared error on eps equals SNR(t) times the error
on x_0, and the error on v equals (1 + SNR(t)) times it (:func:`x0_error_weight`).

``alphabar`` arguments are a number or a (B,) tensor (one value per sample). Tensors
of any shape (B, ...) work: images (B, C, H, W) and 2-D points (B, 2) alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.diffusion.forward import timesteps_as_tensor
from course_lib.diffusion.sampling import (
    as_alphas_cumprod,
    check_prediction_type,
    check_same_shape,
    check_tensor,
    draw_noise,
    per_sample,
)
from course_lib.diffusion.schedules import NoiseSchedule


def _scales(alphabar, like: torch.Tensor, check: bool = True) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """sqrt(alphabar) and sqrt(1 - alphabar), shaped to broadcast against ``like``.

    A plain number (what the samplers pass, one level for the batch) stays a Python float:
    no tensor is made and nothing waits for a GPU.
    """
    if isinstance(alphabar, (int, float)) and not isinstance(alphabar, bool):
        if check and not 0 < alphabar <= 1:
            raise ValueError(f"alphabar must lie in (0, 1], got {alphabar!r}")
        return math.sqrt(alphabar), math.sqrt(1 - alphabar)
    ab = per_sample(alphabar, like, "alphabar")
    if check and (torch.any(ab <= 0) or torch.any(ab > 1)):  # skipped in training: it would sync a GPU
        raise ValueError("alphabar must lie in (0, 1]")
    return ab.sqrt(), (1 - ab).sqrt()


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alphabar) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar): Ho et al. (2020), eq. 15 solved for x_0."""
    check_same_shape("eps", eps, check_tensor("x_t", x_t))
    a, s = _scales(alphabar, x_t)
    return (x_t - s * eps) / a


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alphabar) -> torch.Tensor:
    """eps = (x_t - sqrt(alphabar) x_0) / sqrt(1 - alphabar); undefined at alphabar = 1 (no noise)."""
    check_same_shape("x0", x0, check_tensor("x_t", x_t))
    a, s = _scales(alphabar, x_t)
    return (x_t - a * x0) / s


def velocity(x0: torch.Tensor, eps: torch.Tensor, alphabar) -> torch.Tensor:
    """v = sqrt(alphabar) eps - sqrt(1 - alphabar) x_0 (Salimans & Ho 2022, eq. 8 with alpha = sqrt(alphabar)).

    Writing sqrt(alphabar) = cos(phi), sqrt(1 - alphabar) = sin(phi), x_t = cos(phi) x_0 +
    sin(phi) eps moves on a circle as phi grows, and v = d x_t / d phi is its velocity.
    """
    check_same_shape("eps", eps, check_tensor("x0", x0))
    a, s = _scales(alphabar, x0)
    return a * eps - s * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alphabar) -> torch.Tensor:
    """x_0 = sqrt(alphabar) x_t - sqrt(1 - alphabar) v (a rotation back by phi)."""
    check_same_shape("v", v, check_tensor("x_t", x_t))
    a, s = _scales(alphabar, x_t)
    return a * x_t - s * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alphabar) -> torch.Tensor:
    """eps = sqrt(1 - alphabar) x_t + sqrt(alphabar) v."""
    check_same_shape("v", v, check_tensor("x_t", x_t))
    a, s = _scales(alphabar, x_t)
    return s * x_t + a * v


def prediction_target(
    x0: torch.Tensor, noise: torch.Tensor, alphabar, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """What a network trained with ``prediction_type`` should output for x_t made from (x0, noise)."""
    check_prediction_type(prediction_type)
    check_same_shape("noise", noise, check_tensor("x0", x0))
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    return velocity(x0, noise, alphabar)


def split_prediction(
    model_output: torch.Tensor, x_t: torch.Tensor, alphabar, prediction_type: str = "epsilon"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output read as the pair (x_0 estimate, eps estimate), for any ``prediction_type``.

    Every sampler needs both: DDPM's posterior mean is written with x_0, DDIM's step
    with x_0 and eps. Converting here once is what lets one sampler serve all three kinds
    of model.
    """
    check_prediction_type(prediction_type)
    check_same_shape("model_output", model_output, check_tensor("x_t", x_t))
    if prediction_type == "epsilon":
        return x0_from_eps(x_t, model_output, alphabar), model_output
    if prediction_type == "sample":
        a, s = _scales(alphabar, x_t)
        # eps is left undefined at alphabar = 1 by dividing by s = 0; diffusers does the same
        return model_output, (x_t - a * model_output) / s
    return x0_from_v(x_t, model_output, alphabar), eps_from_v(x_t, model_output, alphabar)


def x0_error_weight(snr: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """w(t) with  E|target - output|^2 = w(t) E|x_0 - x_0 estimate|^2  for each prediction type.

    epsilon: SNR(t); sample: 1; v_prediction: 1 + SNR(t) (Salimans & Ho 2022, Sec. 4;
    Kingma et al. 2021). The eps loss thus cares little about x_0 at high noise and
    enormously at low noise; the x_0 loss weighs all levels alike.
    """
    check_prediction_type(prediction_type)
    snr = torch.as_tensor(snr, dtype=torch.float64)
    if prediction_type == "epsilon":
        return snr
    if prediction_type == "sample":
        return torch.ones_like(snr)
    return 1 + snr


def diffusion_loss(
    model: nn.Module,
    x0: torch.Tensor,
    schedule: NoiseSchedule | torch.Tensor,
    *,
    prediction_type: str = "epsilon",
    t: torch.Tensor | int | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The simple loss of Ho et al. (2020), eq. 14:  E_{t, x_0, eps} | target - model(x_t, t) |^2.

    ``t`` is drawn uniformly from 0..T-1 per sample unless given; ``noise`` is drawn
    (from ``generator``) unless given. ``target`` is eps, x_0 or v by ``prediction_type``.
    The ELBO weights each t by a factor the simple loss drops (the chapter derives it);
    dropping it trains better samplers. Returns the mean over all elements, a scalar.
    """
    check_prediction_type(prediction_type)
    check_tensor("x0", x0)
    ab_table = as_alphas_cumprod(schedule)
    batch = x0.shape[0]
    if t is None:
        t = torch.randint(ab_table.numel(), (batch,), generator=generator).to(x0.device)
    t = timesteps_as_tensor(t, batch, ab_table.numel()).to(x0.device)
    noise = draw_noise(x0, noise, generator)
    alphabar = ab_table.to(x0.device)[t].to(x0.dtype)
    a, s = _scales(alphabar, x0, check=False)  # the table was checked by as_alphas_cumprod
    x_t = a * x0 + s * noise
    output = model(x_t, t)
    check_same_shape("model_output", output, x0)
    target = prediction_target(x0, noise, alphabar, prediction_type)
    return (output - target).pow(2).mean()


__all__ = [
    "diffusion_loss",
    "eps_from_v",
    "eps_from_x0",
    "prediction_target",
    "split_prediction",
    "velocity",
    "x0_error_weight",
    "x0_from_eps",
    "x0_from_v",
]
