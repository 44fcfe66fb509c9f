"""Run profiles, device choice and seeding: the few lines at the top of every notebook.

One switch, the environment variable ``COURSE_PROFILE``, sets the size of every
experiment in the book:

========  ==========================  ==============================================
profile   who                         aim
========  ==========================  ==============================================
smoke     CI and quick checks         every notebook runs in about a minute on 2 cores
cpu       a student's laptop          recognisably right results in a few minutes
gpu       Colab, lab GPUs             the best the chapter can show in a few minutes
========  ==========================  ==============================================

Without ``COURSE_PROFILE`` the profile is ``gpu`` when CUDA is visible and ``cpu``
otherwise. A notebook states its sizes for all three profiles in one visible call::

    cfg = runtime.settings(
        smoke=dict(n_images=64, epochs=1),
        cpu=dict(n_images=512, epochs=5),
        gpu=dict(n_images=4096, epochs=20),
    )
    cfg.n_images   # the value for the active profile

so a student sees at a glance what the profile changes and nothing else.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")
PROFILE_ENV = "COURSE_PROFILE"
DEVICE_ENV = "COURSE_DEVICE"
DEFAULT_SEED = 0


def cuda_available() -> bool:
    return torch.cuda.is_available()


def active_profile() -> str:
    """The run profile: ``COURSE_PROFILE`` if set, else ``gpu`` with CUDA, else ``cpu``."""
    requested = os.environ.get(PROFILE_ENV, "").strip().lower()
    if requested:
        if requested not in PROFILES:
            raise ValueError(
                f"{PROFILE_ENV}={requested!r} is not a run profile; expected one of {', '.join(PROFILES)}"
            )
        return requested
    return "gpu" if cuda_available() else "cpu"


def device(profile: str | None = None) -> torch.device:
    """The device experiments run on.

    ``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides the choice.
    Otherwise CUDA is used whenever it is visible, except under ``smoke``, which is
    meant to be the same small CPU run everywhere.
    """
    override = os.environ.get(DEVICE_ENV, "").strip()
    if override:
        return torch.device(override)
    profile = profile or active_profile()
    if profile != "smoke" and cuda_available():
        return torch.device("cuda")
    return torch.device("cpu")


def configure_threads(max_threads: int = 8) -> int:
    """Use the cores this process may run on (capped), and return the count.

    PyTorch's default counts every core of the machine, which oversubscribes
    containers and CI runners that see more cores than they are allowed to use.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        available = os.cpu_count() or 1
    threads = max(1, min(available, max_threads))
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int = DEFAULT_SEED) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's global generators; return a seeded torch Generator.

    The returned generator is for code that should not depend on how many random
    numbers other cells drew before it.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if cuda_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Settings:
    """The active profile's sizes, plus the profile, device and seed they belong to."""

    profile: str
    device: torch.device
    seed: int
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(
            f"no setting named {name!r}; this notebook's settings are: {', '.join(sorted(values)) or 'none'}"
        )

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def __str__(self) -> str:
        width = max((len(k) for k in self.values), default=0)
        lines = [f"profile {self.profile!r} on {self.device}, seed {self.seed}"]
        lines += [f"  {key:<{width}} = {value!r}" for key, value in self.values.items()]
        return "\n".join(lines)


def settings(
    *,
    smoke: Mapping[str, Any],
    cpu: Mapping[str, Any],
    gpu: Mapping[str, Any],
    seed: int = DEFAULT_SEED,
    show: bool = True,
) -> Settings:
    """Pick this profile's sizes, seed every generator, set threads, and print the choice.

    All three profiles must name the same settings, so that no notebook path is
    exercised under one profile only.
    """
    table = {"smoke": dict(smoke), "cpu": dict(cpu), "gpu": dict(gpu)}
    keys = set(table["smoke"])
    for name, values in table.items():
        if set(values) != keys:
            missing = sorted(keys - set(values))
            extra = sorted(set(values) - keys)
            raise ValueError(
                f"settings for profile {name!r} must name the same keys as 'smoke'; "
                f"missing {missing}, extra {extra}"
            )
    profile = active_profile()
    configure_threads()
    seed_everything(seed)
    chosen = Settings(profile=profile, device=device(profile), seed=seed, values=table[profile])
    if show:
        print(chosen)
    return chosen


def describe() -> str:
    """One line on where the notebook runs: profile, device, versions, threads. Printed and returned."""
    profile = active_profile()
    dev = device(profile)
    detail = ""
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        detail = f" ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    elif profile == "gpu":
        detail = " (the gpu profile was asked for, but no CUDA device is visible)"
    line = (
        f"course_lib: profile {profile!r}, device {dev}{detail}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(line)
    return line
