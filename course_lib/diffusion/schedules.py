"""Noise schedules: how much noise the forward process adds at each step.

A schedule is a sequence of variances beta_1..beta_T. Everything else follows:

    alpha_t     = 1 - beta_t
    alphabar_t  = alpha_1 * alpha_2 * ... * alpha_t          (cumulative product)
    SNR(t)      = alphabar_t / (1 - alphabar_t)

Code indexes time from 0, like diffusers: ``betas[0]`` is the paper's beta_1 and
``alphas_cumprod[t]`` is alphabar_{t+1}. Everything here is computed in float64, so
that a 1,000-step cumulative product does not drift; cast where a model needs float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine")


def _check_num_timesteps(num_timesteps: int) -> int:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive integer, got {num_timesteps!r}")
    return num_timesteps


def _check_beta_range(beta_start: float, beta_end: float) -> None:
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
            raise ValueError(f"{name} must lie in the open interval (0, 1), got {value!r}")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4).

    The defaults are DDPM's, chosen for T = 1000 steps on images scaled to [-1, 1].
    """
    _check_num_timesteps(num_timesteps)
    _check_beta_range(beta_start, beta_end)
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(
    num_timesteps: int, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """Betas whose square roots are evenly spaced: beta_t = (linspace(sqrt b0, sqrt b1))^2.

    Latent diffusion (Rombach et al. 2022, Stable Diffusion) uses this with the
    defaults above; it adds noise more gently than ``linear`` early on.
    """
    _check_num_timesteps(num_timesteps)
    _check_beta_range(beta_start, beta_end)
    roots = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_timesteps, dtype=torch.float64)
    return roots**2


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """f(u) = cos^2( (u + s) / (1 + s) * pi / 2 ) for u = t / T in [0, 1] (Nichol & Dhariwal 2021, eq. 17).

    alphabar_t = f(t/T) / f(0); the offset ``s`` keeps beta_1 from being vanishingly small.
    """
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule: beta_t = min(1 - alphabar_t / alphabar_{t-1}, max_beta).

    Nichol & Dhariwal (2021) define the schedule through alphabar rather than beta,
    so that the signal fades roughly linearly in the middle of the process instead of
    being gone long before t = T. Clipping at ``max_beta`` avoids the singularity at
    the last step, where alphabar reaches 0.
    """
    _check_num_timesteps(num_timesteps)
    if not (isinstance(s, (int, float)) and s >= 0):
        raise ValueError(f"s must be a non-negative offset, got {s!r}")
    if not (isinstance(max_beta, (int, float)) and 0.0 < max_beta < 1.0):
        raise ValueError(f"max_beta must lie in the open interval (0, 1), got {max_beta!r}")
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = cosine_alpha_bar(u, s)
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


_BUILDERS = {"linear": linear_betas, "scaled_linear": scaled_linear_betas, "cosine": cosine_betas}


def make_betas(name: str, num_timesteps: int = 1000, **kwargs) -> torch.Tensor:
    """Betas of the schedule called ``name`` (one of ``SCHEDULE_NAMES``)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown schedule name {name!r}; expected one of {', '.join(SCHEDULE_NAMES)}")
    return _BUILDERS[name](num_timesteps, **kwargs)


def check_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Validate a cumulative-alpha table: a 1-D floating tensor with values in (0, 1]."""
    if not isinstance(alphas_cumprod, torch.Tensor):
        raise TypeError(f"alphas_cumprod must be a torch.Tensor, got {type(alphas_cumprod).__name__}")
    if alphas_cumprod.ndim != 1 or not alphas_cumprod.is_floating_point():
        raise ValueError(
            "alphas_cumprod must be a 1-D floating-point tensor, "
            f"got shape {tuple(alphas_cumprod.shape)} and dtype {alphas_cumprod.dtype}"
        )
    return alphas_cumprod


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alphabar_t = prod_{s<=t} (1 - beta_s): the fraction of signal *variance* left after t steps."""
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1:
        raise ValueError(f"betas must be a 1-D torch.Tensor, got {type(betas).__name__}")
    if not betas.is_floating_point():
        raise ValueError(f"betas must be floating point, got dtype {betas.dtype}")
    if torch.any(betas <= 0) or torch.any(betas >= 1):
        raise ValueError("betas must lie in the open interval (0, 1)")
    return torch.cumprod(1 - betas, dim=0)


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of q(x_t | x_0): SNR(t) = alphabar_t / (1 - alphabar_t) (Kingma et al. 2021)."""
    ab = check_alphas_cumprod(alphas_cumprod)
    return ab / (1 - ab)


def snr_db(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """SNR in decibels, 10 log10 SNR(t): 0 dB is where signal and noise variances are equal."""
    return 10 * torch.log10(snr(alphas_cumprod))


@dataclass(frozen=True)
class NoiseSchedule:
    """A named beta schedule and the quantities derived from it.

    >>> schedule = NoiseSchedule.from_name("cosine", 1000)
    >>> x_t, noise = schedule.add_noise(x0, t)          # sample q(x_t | x_0)
    """

    betas: torch.Tensor
    name: str = "custom"

    def __post_init__(self) -> None:
        alphas_cumprod_from_betas(self.betas)  # validates
        object.__setattr__(self, "betas", self.betas.to(torch.float64))

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000, **kwargs) -> "NoiseSchedule":
        return cls(make_betas(name, num_timesteps, **kwargs), name=name)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    def __len__(self) -> int:
        return self.num_timesteps

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    def snr(self) -> torch.Tensor:
        return snr(self.alphas_cumprod)

    def snr_db(self) -> torch.Tensor:
        return snr_db(self.alphas_cumprod)

    def signal_scale(self) -> torch.Tensor:
        """sqrt(alphabar_t): how much of x_0's *amplitude* survives in x_t."""
        return self.alphas_cumprod.sqrt()

    def noise_scale(self) -> torch.Tensor:
        """sqrt(1 - alphabar_t): the standard deviation of the noise in x_t."""
        return (1 - self.alphas_cumprod).sqrt()

    def add_noise(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | int,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample x_t ~ q(x_t | x_0) in one step; return ``(x_t, noise)``.

        Pass ``noise`` to make the sample reproducible and comparable across
        schedules; otherwise it is drawn with ``generator``.
        """
        from course_lib.diffusion.forward import q_sample  # forward imports this module

        if noise is None:
            if not isinstance(x0, torch.Tensor):
                raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return q_sample(x0, t, self.alphas_cumprod, noise), noise
