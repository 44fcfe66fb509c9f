"""The forward (noising) process q: one step at a time, and all at once.

One step (Ho et al. 2020, eq. 2):

    q(x_t | x_{t-1}) = N( sqrt(1 - beta_t) x_{t-1},  beta_t I )

Because a Gaussian of a Gaussian is Gaussian, t steps collapse into one (eq. 4):

    q(x_t | x_0) = N( sqrt(alphabar_t) x_0,  (1 - alphabar_t) I )

The closed form needs the *cumulative* product alphabar_t, not the single-step
alpha_t: using ``alphas[t]`` there (as some tutorials do) adds only one step's worth
of noise, however large t is.
"""

from __future__ import annotations

import torch

from course_lib.diffusion.schedules import check_alphas_cumprod


def _check_sample(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")


def _check_noise(noise: torch.Tensor, x: torch.Tensor) -> None:
    _check_sample("noise", noise)
    if noise.shape != x.shape:
        raise ValueError(f"noise must have the sample's shape {tuple(x.shape)}, got {tuple(noise.shape)}")


def timesteps_as_tensor(t: torch.Tensor | int, batch_size: int, num_timesteps: int) -> torch.Tensor:
    """Validate timesteps and return them as an int64 tensor of shape (batch_size,).

    ``t`` may be one int for the whole batch or one integer per sample, each in
    ``0 .. num_timesteps - 1``.
    """
    if isinstance(t, bool):
        raise TypeError("t must be an int or an integer tensor, got a bool")
    if isinstance(t, int):
        t = torch.full((batch_size,), t, dtype=torch.long)
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__} {getattr(t, 'dtype', '')}")
    if t.ndim == 0:
        t = t.expand(batch_size)
    if t.shape != (batch_size,):
        raise ValueError(f"t must be a scalar or have shape ({batch_size},) to match the batch, got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_timesteps):
        raise ValueError(
            f"t must lie in 0..{num_timesteps - 1} (the schedule has {num_timesteps} steps), "
            f"got values from {int(t.min())} to {int(t.max())}"
        )
    return t.long()


def extract(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pick ``table[t]`` per sample and shape it (B, 1, 1, ...) to broadcast against ``like``."""
    values = table.to(like.device)[t.to(like.device)]
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def q_sample(
    x0: torch.Tensor, t: torch.Tensor | int, alphas_cumprod: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps: a sample of q(x_t | x_0) (Ho et al. 2020, eq. 4).

    ``x0`` is a batch (B, ...), ``t`` an int or a (B,) integer tensor of 0-based
    timesteps, ``noise`` the standard-normal eps of the same shape as ``x0``.
    """
    _check_sample("x0", x0)
    _check_noise(noise, x0)
    ab = check_alphas_cumprod(alphas_cumprod)
    t = timesteps_as_tensor(t, x0.shape[0], ab.numel())
    return extract(ab.sqrt(), t, x0) * x0 + extract((1 - ab).sqrt(), t, x0) * noise


def q_step(x_prev: torch.Tensor, t: torch.Tensor | int, betas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One forward step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (Ho et al. 2020, eq. 2)."""
    _check_sample("x_prev", x_prev)
    _check_noise(noise, x_prev)
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1:
        raise ValueError("betas must be a 1-D torch.Tensor")
    t = timesteps_as_tensor(t, x_prev.shape[0], betas.numel())
    return extract((1 - betas).sqrt(), t, x_prev) * x_prev + extract(betas.sqrt(), t, x_prev) * noise


def q_chain(
    x0: torch.Tensor,
    betas: torch.Tensor,
    generator: torch.Generator | None = None,
    record: list[int] | None = None,
) -> torch.Tensor:
    """Run the forward process step by step from x_0 and return the visited states.

    State k is x after k steps (state 0 is x_0). By default every state is returned,
    shape (T + 1, *x0.shape); ``record`` keeps only the listed states, in that order,
    which keeps memory small for long chains. Slow on purpose: this is the definition
    that the closed form of ``q_sample`` must reproduce.
    """
    _check_sample("x0", x0)
    num_steps = betas.numel()
    wanted = list(range(num_steps + 1)) if record is None else list(record)
    if any(not isinstance(k, int) or not 0 <= k <= num_steps for k in wanted):
        raise ValueError(f"record must list step counts in 0..{num_steps}, got {record!r}")
    kept = {0: x0} if 0 in wanted else {}
    x = x0
    for t in range(max(wanted, default=0)):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = q_step(x, t, betas, noise)
        if t + 1 in wanted:
            kept[t + 1] = x
    return torch.stack([kept[k] for k in wanted])
