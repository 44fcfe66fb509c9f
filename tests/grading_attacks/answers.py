"""Honest chapter 04 answers, as source text, shared by the grader's tests.

They are written independently of the solutions notebook (q_sample uses ``view`` where
the solution uses ``reshape``) so that the tests do not only re-grade one text.
"""

IMPORTS = "import math\nimport numpy as np\nimport torch"
LINEAR = """def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)"""
COSINE = """def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)"""
Q_SAMPLE = """def q_sample(x0, t, alphas_cumprod, noise):
    ab = alphas_cumprod[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise"""
SNR_DB = """def snr_db(alphas_cumprod):
    return 10 * torch.log10(alphas_cumprod / (1 - alphas_cumprod))"""
BELOW = """def first_step_below(alphas_cumprod, threshold_db):
    below = torch.nonzero(snr_db(alphas_cumprod) < threshold_db)
    return int(below[0]) if len(below) else len(alphas_cumprod)"""
