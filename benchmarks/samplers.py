"""Benchmark of the diffusion samplers: per-step cost against diffusers, and quality against steps.

    .venv/bin/python benchmarks/samplers.py                      # --profile cpu
    .venv/bin/python benchmarks/samplers.py --profile smoke
    .venv/bin/python benchmarks/samplers.py --profile gpu --device cuda --json benchmarks/results/samplers.json

Two tables:

1. **Step cost.** One ``step`` of ``DDPMSampler``, ``DDIMSampler`` (eta 0 and 1) and
   ``EulerFlowSampler`` against diffusers' ``DDPMScheduler``, ``DDIMScheduler`` and
   ``FlowMatchEulerDiscreteScheduler`` on the same tensors (a batch of digit-sized images and
   a batch of large latents), in the same process, repetitions interleaved, median time.
   The ratio is ours / diffusers (below 1: ours is faster). This is the sampler's own
   overhead, which matters when the network is small; with a big network the network dominates.
2. **Quality against steps** on the two-moons toy data of chapter 05: a v-prediction model and
   a flow-matching model (``ToyDenoiser``) trained with the profile's budget, then the sliced
   Wasserstein distance of their samples to held-out data for DDPM with every step, DDIM and
   Euler flow at several step counts, and a rectified flow (reflow of the flow model on its own
   noise-sample pairs) with 1 and 2 steps, with the distance between two real samples as the
   floor. Targets: DDIM with 50 steps, the flow with 50 steps and the rectified flow with ONE step
   within 10 % (plus the floor) of 1,000-step DDPM's distance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib import data, runtime, train  # noqa: E402
from course_lib.diffusion import (  # noqa: E402
    DDIMSampler,
    DDPMSampler,
    EulerFlowSampler,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    diffusion_loss,
    flow_matching_loss,
    flow_sample,
    flow_time_grid,
)
from course_lib.nn import ToyDenoiser  # noqa: E402

PROFILES = {
    "smoke": dict(repeats=30, toy_steps=300, toy_width=64, toy_points=2000, n_samples=500),
    "cpu": dict(repeats=200, toy_steps=3000, toy_width=128, toy_points=8000, n_samples=2000),
    "gpu": dict(repeats=500, toy_steps=6000, toy_width=256, toy_points=20000, n_samples=5000),
}
SHAPES = {"digits": (64, 1, 8, 8), "latents": (8, 4, 64, 64)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(calls: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each entry, the entries run in turn within every repetition."""
    for fn in calls.values():  # warm up
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def step_cost_rows(repeats: int, device: torch.device) -> list[dict]:
    import diffusers

    schedule = NoiseSchedule.from_name("cosine", 1000)
    rows = []
    for label, shape in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        sample, output, noise = (torch.randn(shape, generator=g).to(device) for _ in range(3))
        pairs = {}

        ddpm_ref = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
        ddpm_ref.alphas_cumprod = ddpm_ref.alphas_cumprod.to(device)
        ddpm = DDPMSampler(schedule)
        pairs["DDPM step"] = (
            lambda: ddpm.step(output, 500, sample),  # both draw their noise from the global generator
            lambda: ddpm_ref.step(output, 500, sample),
        )
        for eta in (0.0, 1.0):
            ddim_ref = diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
            ddim_ref.set_timesteps(50)
            ddim = DDIMSampler(schedule, eta=eta)
            pairs[f"DDIM step, eta {eta:g}"] = (
                lambda ddim=ddim: ddim.step(output, 500, sample, prev_timestep=480, noise=noise),
                lambda ddim_ref=ddim_ref, eta=eta: ddim_ref.step(output, 500, sample, eta=eta, variance_noise=noise),
            )
        flow_ref = diffusers.FlowMatchEulerDiscreteScheduler()
        flow_ref.set_timesteps(20)
        flow = EulerFlowSampler()
        times = flow_time_grid(20).tolist()

        def flow_ref_step():
            flow_ref._step_index = 5  # the scheduler counts its steps; hold it at one step
            return flow_ref.step(output, flow_ref.timesteps[5], sample)

        pairs["Euler flow step"] = (lambda: flow.step(output, times[5], times[6], sample), flow_ref_step)
        for name, (ours, theirs) in pairs.items():
            median = time_interleaved({"ours": ours, "diffusers": theirs}, repeats, device)
            rows.append(dict(step=name, shape=label, ours_us=1e6 * median["ours"],
                             diffusers_us=1e6 * median["diffusers"], ratio=median["ours"] / median["diffusers"]))
    return rows


def sliced_distance(a: torch.Tensor, b: torch.Tensor, n_directions: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two point clouds of equal size."""
    directions = torch.randn(n_directions, a.shape[1], generator=torch.Generator().manual_seed(seed))
    directions = directions / directions.norm(dim=1, keepdim=True)
    pa = (a.float().cpu() @ directions.T).sort(dim=0).values
    pb = (b.float().cpu() @ directions.T).sort(dim=0).values
    return (pa - pb).abs().mean().item()


def quality_rows(sizes: dict, device: torch.device) -> tuple[list[dict], dict]:
    schedule = NoiseSchedule.from_name("cosine", 1000)
    toy = data.toy_data("moons", sizes["toy_points"], seed=0)
    held_out = data.toy_data("moons", sizes["n_samples"], seed=1)
    floor = sliced_distance(data.toy_data("moons", sizes["n_samples"], seed=2), held_out)

    def fit(loss_fn, points=toy):
        torch.manual_seed(0)
        model = ToyDenoiser(hidden=sizes["toy_width"], depth=3)
        start = time.perf_counter()
        result = train.fit(model, loss_fn, points, steps=sizes["toy_steps"], batch_size=256, lr=2e-3,
                           ema_decay=0.99, device=device, progress=False)
        return result.ema_model, time.perf_counter() - start

    v_model, v_seconds = fit(lambda m, b: diffusion_loss(m, b, schedule, prediction_type="v_prediction"))
    flow_model, flow_seconds = fit(lambda m, b: flow_matching_loss(m, b))
    x_T = torch.randn(sizes["n_samples"], 2, generator=torch.Generator().manual_seed(1)).to(device)
    runs = {"DDPM, 1000 steps": lambda: ddpm_sample(v_model, schedule, x_T.shape, x_T=x_T, prediction_type="v_prediction",
                                                     generator=torch.Generator().manual_seed(2))}
    for n in (10, 20, 50):
        runs[f"DDIM, {n} steps"] = lambda n=n: ddim_sample(v_model, schedule, x_T.shape, x_T=x_T,
                                                           prediction_type="v_prediction", num_inference_steps=n)
    for n in (5, 10, 20, 50):
        runs[f"flow, {n} Euler steps"] = lambda n=n: flow_sample(flow_model, x_T.shape, n, x_T=x_T)
    # reflow (Liu et al. 2023): a second flow trained on the first one's (noise, sample) pairs
    pair_noise = torch.randn(sizes["toy_points"], 2, generator=torch.Generator().manual_seed(7)).to(device)
    pair_samples = flow_sample(flow_model, pair_noise.shape, 50, x_T=pair_noise)
    rectified, rectified_seconds = fit(lambda m, b: flow_matching_loss(m, b[0], noise=b[1]), (pair_samples, pair_noise))
    for n in (1, 2):
        runs[f"rectified flow, {n} Euler step{'s' if n > 1 else ''}"] = lambda n=n: flow_sample(rectified, x_T.shape, n, x_T=x_T)
    rows = []
    for name, run in runs.items():
        _sync(device)
        start = time.perf_counter()
        points = run()
        _sync(device)
        rows.append(dict(sampler=name, distance=sliced_distance(points, held_out), seconds=time.perf_counter() - start))
    reference = rows[0]["distance"]
    for row in rows:
        row["ratio"] = row["distance"] / reference
    info = dict(floor=floor, v_train_seconds=v_seconds, flow_train_seconds=flow_seconds,
                rectified_train_seconds=rectified_seconds)
    targeted = ("DDIM, 50 steps", "flow, 50 Euler steps", "rectified flow, 1 Euler step")
    target = {r["sampler"]: r["distance"] <= 1.1 * reference + floor for r in rows if r["sampler"] in targeted}
    info["targets_met"] = target
    return rows, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the profile's device)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per step (default: the profile's)")
    parser.add_argument("--skip-quality", action="store_true", help="only the step-cost table")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = dict(PROFILES[args.profile])
    device = torch.device(args.device) if args.device else runtime.device(args.profile)
    threads = runtime.configure_threads()
    runtime.seed_everything(0)

    print(f"# Samplers benchmark: profile {args.profile}, device {device}, {threads} threads, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
    steps = step_cost_rows(args.repeats or sizes["repeats"], device)
    print("| step | tensor | ours (µs) | diffusers (µs) | ours / diffusers |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in steps:
        shape = "x".join(map(str, SHAPES[r["shape"]]))
        print(f"| {r['step']} | {r['shape']} {shape} | {r['ours_us']:.0f} | {r['diffusers_us']:.0f} | {r['ratio']:.2f} |")

    result = {"profile": args.profile, "device": str(device), "threads": threads, "steps": steps}
    if not args.skip_quality:
        rows, info = quality_rows(sizes, device)
        print(f"\nQuality on two moons ({sizes['n_samples']} samples; training {sizes['toy_steps']} steps each: v-model "
              f"{info['v_train_seconds']:.1f} s, flow {info['flow_train_seconds']:.1f} s, rectified flow "
              f"{info['rectified_train_seconds']:.1f} s)\n")
        print("| sampler | sliced distance | / DDPM-1000 | seconds |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| real vs real (floor) | {info['floor']:.4f} | | |")
        for r in rows:
            print(f"| {r['sampler']} | {r['distance']:.4f} | {r['ratio']:.2f} | {r['seconds']:.2f} |")
        met = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in info["targets_met"].items())
        print(f"\nTargets (within 10 % of DDPM-1000, plus the floor): {met}")
        result.update(quality=rows, **info)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
