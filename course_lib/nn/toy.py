"""A small denoiser for 2-D points: an MLP that also reads the timestep.

For points in the plane a U-Net has nothing to convolve; a few fully connected layers
suffice. The timestep is embedded with the same sinusoidal embedding as the U-Net's and
added to the hidden state of every residual block, so that one network can behave very
differently at high noise (move everything towards the data) and at low noise (make
small corrections).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.nn.layers import SinusoidalTimeEmbedding


class ToyDenoiser(nn.Module):
    """``model(x, t) -> (B, dim)``: eps, x_0, v or a flow velocity for points ``x`` of shape (B, dim).

    ``t``: a scalar or a (B,) tensor of integer or fractional timesteps (0..1000 for
    the DDPM schedules, ``t * 1000`` for flow matching). The architecture: an input layer,
    ``depth`` residual blocks ``h <- h + W2 silu(W1 silu(h + e(t)))`` with the time
    embedding e(t) added inside each, and an output layer initialised at zero, so that a
    fresh model predicts 0 (the mean of eps and of the target velocity).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 64):
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("hidden", hidden, 1), ("depth", depth, 0), ("time_dim", time_dim, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.dim = dim
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim), nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.dim}), got {got}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), one timestep per point; got {tuple(t.shape)}")
        emb = self.time_embedding(t).to(x.dtype)
        h = self.input(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.output(h)
