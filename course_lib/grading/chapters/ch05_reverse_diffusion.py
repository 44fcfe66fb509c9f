"""Chapter 05, learning to denoise: five graded functions.

The references are ``course_lib.diffusion``'s tested versions (the conversions of
``objectives``, the posterior of ``ddpm``, the step of ``ddim`` and the path of ``flow``).
Inputs are float64 and so must the answers be.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.grading.spec import Question

# The library's versions of the graded functions: withheld from the sandbox's view of
# course_lib. The package's __init__ imports every module, so hiding single files would
# break ``import course_lib.diffusion`` just the same; the graded cells need only torch.
LIBRARY_ANSWERS = ("course_lib/diffusion",)


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    """A batch of images (B, C, H, W) or of points (B, D), B >= 1."""
    batch = int(rng.integers(1, 7))
    if rng.random() < 0.5:
        return (batch, int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    return (batch, int(rng.integers(1, 5)))


def _alphabar(rng: np.random.Generator, size) -> np.ndarray:
    """Noise levels spread over the whole range, from nearly clean to nearly pure noise."""
    return 10 ** -rng.uniform(0.001, 4, size=size)


def _random_alphas_cumprod(rng: np.random.Generator) -> np.ndarray:
    T = int(rng.integers(2, 1001))
    start = float(10 ** rng.uniform(-5, -3))
    betas = np.linspace(start, float(rng.uniform(0.01, 0.5)), T)
    return np.cumprod(1.0 - betas)


# --- conversions ------------------------------------------------------------------------


def _conversion_cases(rng: np.random.Generator, second: str) -> list[dict]:
    cases = []
    for _ in range(4):
        shape = _shape(rng)
        cases.append({"x_t": rng.standard_normal(shape), second: rng.standard_normal(shape),
                      "alphabar": _alphabar(rng, shape[0])})
    return cases


def _x0_from_eps_reference(x_t, eps, alphabar):
    from course_lib.diffusion import objectives

    return objectives.x0_from_eps(torch.from_numpy(x_t), torch.from_numpy(eps), torch.from_numpy(alphabar)).numpy()


def _x0_from_v_reference(x_t, v, alphabar):
    from course_lib.diffusion import objectives

    return objectives.x0_from_v(torch.from_numpy(x_t), torch.from_numpy(v), torch.from_numpy(alphabar)).numpy()


# --- posterior ----------------------------------------------------------------------------


def _posterior_cases(rng: np.random.Generator) -> list[dict]:
    from course_lib.diffusion import schedules

    cosine = np.cumprod(1.0 - schedules.cosine_betas(int(rng.integers(2, 1001))).numpy())
    return [dict(alphas_cumprod=_random_alphas_cumprod(rng)) for _ in range(3)] + [dict(alphas_cumprod=cosine)]


def _posterior_reference(alphas_cumprod):
    from course_lib.diffusion import ddpm

    ab = torch.from_numpy(alphas_cumprod)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
    return torch.stack(ddpm.posterior_coefficients(ab, ab_prev), dim=1).numpy()


# --- DDIM step ----------------------------------------------------------------------------


def _ddim_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for k, eta in enumerate((0.0, 1.0, float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9)))):
        shape = _shape(rng)
        ab_t = float(_alphabar(rng, None))
        # the last case is the final step, to the clean sample (alphabar_prev = 1)
        ab_prev = 1.0 if k == 3 else float(rng.uniform(ab_t, 1.0) * 0.98 + ab_t * 0.02)
        cases.append(dict(x_t=rng.standard_normal(shape), eps_hat=rng.standard_normal(shape), alphabar_t=ab_t,
                          alphabar_prev=ab_prev, eta=eta, noise=rng.standard_normal(shape)))
    return cases


def _ddim_reference(x_t, eps_hat, alphabar_t, alphabar_prev, eta, noise):
    from course_lib.diffusion import ddim

    # a two-entry table: timestep 1 is alphabar_t, timestep 0 (or -1, the clean sample) the earlier one
    final = alphabar_prev == 1.0
    table = torch.tensor([0.5 if final else alphabar_prev, alphabar_t], dtype=torch.float64)
    sampler = ddim.DDIMSampler(table, "epsilon", eta=float(eta))
    out = sampler.step(torch.from_numpy(eps_hat), 1, torch.from_numpy(x_t), prev_timestep=-1 if final else 0,
                       noise=torch.from_numpy(noise))
    return out.prev_sample.numpy()


# --- flow path ----------------------------------------------------------------------------


def _flow_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for k in range(4):
        shape = _shape(rng)
        t = rng.uniform(0, 1, size=shape[0])
        if k == 0:
            t[0] = 0.0  # the ends of the path
            t[-1] = 1.0
        cases.append(dict(x0=rng.uniform(-1, 1, size=shape), noise=rng.standard_normal(shape), t=t))
    return cases


def _flow_reference(x0, noise, t):
    from course_lib.diffusion import flow

    return flow.flow_interpolate(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()


QUESTIONS = [
    Question(
        name="x0_from_eps",
        points=1,
        make_cases=lambda rng: _conversion_cases(rng, "eps"),
        reference=_x0_from_eps_reference,
        tensor_args=("x_t", "eps", "alphabar"),
        dtype="float64",
        summary="x0 = (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar), one alphabar per sample",
    ),
    Question(
        name="x0_from_v",
        points=1,
        make_cases=lambda rng: _conversion_cases(rng, "v"),
        reference=_x0_from_v_reference,
        tensor_args=("x_t", "v", "alphabar"),
        dtype="float64",
        summary="x0 = sqrt(alphabar) x_t - sqrt(1 - alphabar) v, one alphabar per sample",
    ),
    Question(
        name="posterior_coefficients",
        points=2,
        make_cases=_posterior_cases,
        reference=_posterior_reference,
        tensor_args=("alphas_cumprod",),
        dtype="float64",
        summary="rows (c0, ct, posterior variance) of q(x_{t-1} | x_t, x0), shape (T, 3), alphabar_{-1} = 1",
    ),
    Question(
        name="ddim_step",
        points=2,
        make_cases=_ddim_cases,
        reference=_ddim_reference,
        tensor_args=("x_t", "eps_hat", "noise"),
        dtype="float64",
        summary="one DDIM step (Song et al. 2021, eq. 12) with explicit noise; alphabars are floats",
    ),
    Question(
        name="flow_interpolate",
        points=1,
        make_cases=_flow_cases,
        reference=_flow_reference,
        tensor_args=("x0", "noise", "t"),
        dtype="float64",
        summary="x_t = (1 - t) x0 + t noise, one t per sample",
    ),
]
