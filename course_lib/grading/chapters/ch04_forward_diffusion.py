"""Chapter 04, the forward process and noise schedules: five graded functions.

The references are ``course_lib.diffusion``'s tested versions. Inputs are float64
(timesteps int64), and so must the answers be: schedules are built in float64 so that
a 1,000-step cumulative product does not drift.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.grading.spec import Question

# The library's versions of the graded functions: withheld from the sandbox's view of course_lib.
LIBRARY_ANSWERS = ("course_lib/diffusion",)


def _random_T(rng: np.random.Generator) -> int:
    return int(rng.integers(10, 1001))


def _random_beta_range(rng: np.random.Generator) -> tuple[float, float]:
    start = float(10 ** rng.uniform(-5, -2))
    end = float(rng.uniform(start * 2, 0.5))
    return start, end


def _random_alphas_cumprod(rng: np.random.Generator, T: int) -> np.ndarray:
    from course_lib.diffusion import schedules

    start, end = _random_beta_range(rng)
    betas = schedules.linear_betas(T, start, end).numpy()
    return np.cumprod(1.0 - betas)


# --- linear_betas ---------------------------------------------------------------------


def _linear_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(num_timesteps=1000, beta_start=1e-4, beta_end=0.02)]
    for T in (_random_T(rng), _random_T(rng), int(rng.integers(2, 10))):
        start, end = _random_beta_range(rng)
        cases.append(dict(num_timesteps=T, beta_start=start, beta_end=end))
    return cases


def _linear_reference(num_timesteps, beta_start, beta_end):
    from course_lib.diffusion import schedules

    return schedules.linear_betas(int(num_timesteps), float(beta_start), float(beta_end)).numpy()


# --- cosine_betas ---------------------------------------------------------------------


def _cosine_cases(rng: np.random.Generator) -> list[dict]:
    cases = [dict(num_timesteps=1000), dict(num_timesteps=_random_T(rng))]
    cases.append(dict(num_timesteps=_random_T(rng), s=float(rng.uniform(0.001, 0.05))))
    # a low max_beta makes the clipping at the last steps visible
    cases.append(dict(num_timesteps=_random_T(rng), s=0.008, max_beta=float(rng.uniform(0.3, 0.9))))
    return cases


def _cosine_reference(num_timesteps, s=0.008, max_beta=0.999):
    from course_lib.diffusion import schedules

    return schedules.cosine_betas(int(num_timesteps), s=float(s), max_beta=float(max_beta)).numpy()


# --- q_sample -------------------------------------------------------------------------


def _q_sample_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(4):
        T = _random_T(rng)
        shape = (int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        cases.append(
            dict(
                x0=rng.uniform(-1, 1, size=shape),
                t=rng.integers(0, T, size=shape[0]).astype(np.int64),
                alphas_cumprod=_random_alphas_cumprod(rng, T),
                noise=rng.standard_normal(shape),
            )
        )
    return cases


def _q_sample_reference(x0, t, alphas_cumprod, noise):
    from course_lib.diffusion import forward

    out = forward.q_sample(
        torch.from_numpy(x0), torch.from_numpy(t), torch.from_numpy(alphas_cumprod), torch.from_numpy(noise)
    )
    return out.numpy()


# --- snr_db ---------------------------------------------------------------------------


def _snr_cases(rng: np.random.Generator) -> list[dict]:
    from course_lib.diffusion import schedules

    T = _random_T(rng)
    cosine = np.cumprod(1.0 - schedules.cosine_betas(T).numpy())
    uniform = np.sort(rng.uniform(0.01, 0.99, size=int(rng.integers(5, 50))))[::-1].copy()
    return [
        dict(alphas_cumprod=_random_alphas_cumprod(rng, _random_T(rng))),
        dict(alphas_cumprod=cosine),
        dict(alphas_cumprod=uniform),
    ]


def _snr_reference(alphas_cumprod):
    from course_lib.diffusion import schedules

    return schedules.snr_db(torch.from_numpy(alphas_cumprod)).numpy()


# --- first_step_below ---------------------------------------------------------------


def _below_cases(rng: np.random.Generator) -> list[dict]:
    from course_lib.diffusion import schedules

    cases = []
    for name in ("linear", "cosine", "linear", "cosine"):
        T = _random_T(rng)
        ab = _random_alphas_cumprod(rng, T) if name == "linear" else np.cumprod(1.0 - schedules.cosine_betas(T).numpy())
        snr = schedules.snr_db(torch.from_numpy(ab)).numpy()
        k = int(rng.integers(1, T))  # a threshold half-way between two steps: no ties to round
        cases.append(dict(alphas_cumprod=ab, threshold_db=float((snr[k - 1] + snr[k]) / 2)))
    lowest, highest = (_snr_range(case["alphas_cumprod"]) for case in cases[2:])
    cases[2]["threshold_db"] = lowest[0] - 5.0  # never below: the answer is T
    cases[3]["threshold_db"] = highest[1] + 5.0  # below from the start: the answer is 0
    return cases


def _snr_range(ab: np.ndarray) -> tuple[float, float]:
    snr = 10 * np.log10(ab / (1 - ab))
    return float(snr.min()), float(snr.max())


def _below_reference(alphas_cumprod, threshold_db):
    from course_lib.diffusion import schedules

    snr = schedules.snr_db(torch.from_numpy(alphas_cumprod)).numpy()
    below = np.flatnonzero(snr < threshold_db)
    return np.asarray(below[0] if below.size else len(alphas_cumprod), dtype=np.int64)


QUESTIONS = [
    Question(
        name="linear_betas",
        points=1,
        make_cases=_linear_cases,
        reference=_linear_reference,
        dtype="float64",
        summary="T betas evenly spaced from beta_start to beta_end (float64)",
    ),
    Question(
        name="cosine_betas",
        points=2,
        make_cases=_cosine_cases,
        reference=_cosine_reference,
        dtype="float64",
        summary="Nichol & Dhariwal cosine schedule, clipped at max_beta (float64)",
    ),
    Question(
        name="q_sample",
        points=2,
        make_cases=_q_sample_cases,
        reference=_q_sample_reference,
        tensor_args=("x0", "t", "alphas_cumprod", "noise"),
        dtype="float64",
        summary="x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) noise, per-sample t",
    ),
    Question(
        name="snr_db",
        points=1,
        make_cases=_snr_cases,
        reference=_snr_reference,
        tensor_args=("alphas_cumprod",),
        rtol=1e-6,
        atol=1e-6,
        dtype="float64",
        summary="10 log10(alphabar / (1 - alphabar))",
    ),
    Question(
        name="first_step_below",
        points=2,
        make_cases=_below_cases,
        reference=_below_reference,
        tensor_args=("alphas_cumprod",),
        rtol=0.0,
        atol=0.0,
        summary="first t with SNR_dB(t) < threshold_db, or len(alphas_cumprod); a Python int",
    ),
]
