"""Training throughput of course_lib's UNet2D against diffusers' UNet2DModel, same network; a markdown table.

    python benchmarks/unet_throughput.py --profile smoke        # seconds: one small case
    python benchmarks/unet_throughput.py --profile cpu          # 8x8 and 16x16 digits, and 32x32
    python benchmarks/unet_throughput.py --profile gpu          # CUDA, bf16 autocast, larger images
    python benchmarks/unet_throughput.py --resolution 16 --batch 64 --repeats 9

Both models are built from one configuration: ``UNet2D(...)`` and
``UNet2DModel(**diffusers_config(unet))``, which is the same architecture block for block
(the tests show the two compute the same function once the weights are copied), so the
parameter counts are equal, not merely within 10 %. Each training step is a forward pass,
the eps-prediction MSE loss, a backward pass and an Adam step (what ``train.fit`` does).
The two models take turns in one process (interleaved repetitions, the order alternating,
after warm-up steps), so that a change in the machine's load hits both; the ratio reported
is the median over repetitions of (diffusers' time / ours), and images/s are medians too.
On CUDA both run under bf16 autocast (as ``train.fit`` does) and the clock waits for the
GPU (``torch.cuda.synchronize``) before each reading.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib.nn import UNet2D  # noqa: E402
from course_lib.nn.unet_diffusers import diffusers_config  # noqa: E402

# per profile: (resolution, batch) cases, repetitions, steps per repetition
PROFILES = {
    "smoke": dict(cases=[(8, 64)], repeats=3, steps=2),
    "cpu": dict(cases=[(8, 128), (16, 64), (32, 32)], repeats=9, steps=3),
    "gpu": dict(cases=[(32, 128), (64, 64)], repeats=15, steps=10),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="sizes (default: COURSE_PROFILE, else gpu with CUDA, else cpu)")
    parser.add_argument("--resolution", type=int, nargs="+", help="image sizes (override the profile's)")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes, one per resolution or one for all")
    parser.add_argument("--repeats", type=int, help="timed repetitions per model")
    parser.add_argument("--steps", type=int, help="training steps per repetition")
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--channel-mults", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers-per-level", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: all cores)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    if args.profile is None:
        args.profile = os.environ.get("COURSE_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
        if args.profile not in PROFILES:
            parser.error(f"COURSE_PROFILE must be one of {sorted(PROFILES)}, got {args.profile!r}")
    sizes = PROFILES[args.profile]
    cases = sizes["cases"]
    if args.resolution:
        batches = args.batch or [dict(cases).get(r, 32) for r in args.resolution]
        if len(batches) == 1:
            batches = batches * len(args.resolution)
        if len(batches) != len(args.resolution):
            parser.error("--batch takes one value, or one per --resolution")
        cases = list(zip(args.resolution, batches))
    elif args.batch:
        if len(args.batch) != 1:
            parser.error("--batch without --resolution takes one value")
        cases = [(r, args.batch[0]) for r, _ in cases]
    args.cases = cases
    args.repeats = args.repeats or sizes["repeats"]
    args.steps = args.steps or sizes["steps"]
    for name in ("repeats", "steps", "base_channels", "layers_per_level"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def build_pair(args, device: torch.device):
    """Our UNet2D and diffusers' UNet2DModel of the same architecture (attention at the lowest level)."""
    from diffusers import UNet2DModel

    mults = tuple(args.channel_mults)
    attention = tuple(i == len(mults) - 1 for i in range(len(mults)))
    torch.manual_seed(0)
    ours = UNet2D(in_channels=1, base_channels=args.base_channels, channel_mults=mults,
                  layers_per_level=args.layers_per_level, attention_levels=attention)
    config = diffusers_config(ours)
    theirs = UNet2DModel(**config)
    return ours.to(device).train(), theirs.to(device).train(), config


class Trainer:
    """One model with its optimizer: ``step(x, t, noise)`` is one training step of eps-prediction."""

    def __init__(self, model, returns_output_object: bool, device: torch.device):
        self.model = model
        self.unwrap = returns_output_object
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(self, xt, t, noise):
        with self.autocast:
            out = self.model(xt, t)
            out = out.sample if self.unwrap else out
            loss = F.mse_loss(out.float(), noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def time_steps(trainer: Trainer, batches, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for xt, t, noise in batches:
        trainer.step(xt, t, noise)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(args, resolution: int, batch: int, device: torch.device) -> dict:
    ours, theirs, config = build_pair(args, device)
    params = [sum(p.numel() for p in m.parameters()) for m in (ours, theirs)]
    if abs(params[0] - params[1]) > 0.1 * params[1]:
        raise RuntimeError(f"parameter counts differ by more than 10%: {params}")
    g = torch.Generator(device="cpu").manual_seed(1)
    batches = [
        (torch.randn(batch, 1, resolution, resolution, generator=g).to(device),
         torch.randint(0, 1000, (batch,), generator=g).to(device),
         torch.randn(batch, 1, resolution, resolution, generator=g).to(device))
        for _ in range(args.steps)
    ]
    trainers = {"ours": Trainer(ours, False, device), "diffusers": Trainer(theirs, True, device)}
    for trainer in trainers.values():  # warm-up: allocator, kernels, lazy initialisation
        time_steps(trainer, batches[:2], device)
    times = {name: [] for name in trainers}
    for rep in range(args.repeats):
        order = list(trainers) if rep % 2 == 0 else list(reversed(trainers))
        for name in order:
            times[name].append(time_steps(trainers[name], batches, device))
    images = batch * args.steps
    return dict(
        resolution=resolution, batch=batch, params=params, config=config,
        ours=images / statistics.median(times["ours"]),
        diffusers=images / statistics.median(times["diffusers"]),
        ratio=statistics.median(d / o for o, d in zip(times["ours"], times["diffusers"])),
        spread=(min(d / o for o, d in zip(times["ours"], times["diffusers"])),
                max(d / o for o, d in zip(times["ours"], times["diffusers"]))),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA was asked for but is not available", file=sys.stderr)
        return 2
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(args, r, b, device) for r, b in args.cases]

    config = rows[0]["config"]
    where = (torch.cuda.get_device_name(device) + ", bf16 autocast" if device.type == "cuda"
             else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                  f"{os.cpu_count()} cores, fp32 (no GPU here: the CUDA path, bf16 autocast, is not measured)")
    print(f"## UNet2D vs diffusers UNet2DModel: training throughput ({args.profile} profile)\n")
    print(f"Device: {where}. torch {torch.__version__}.")
    print(f"Architecture (both): block_out_channels={config['block_out_channels']}, "
          f"layers_per_block={config['layers_per_block']}, blocks={config['down_block_types']} / "
          f"{config['up_block_types']}, attention head size {config['attention_head_dim']} at the lowest level "
          f"and in the middle, GroupNorm groups {config['norm_num_groups']}. One step = forward, MSE, backward, Adam. "
          f"{args.repeats} interleaved repetitions of {args.steps} steps each after 2 warm-up steps; medians.\n")
    print("| resolution | batch | params (ours) | params (diffusers) | ours (images/s) | diffusers (images/s) "
          "| speed-up (median) | min-max over repetitions |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['resolution']}x{row['resolution']} | {row['batch']} | {row['params'][0]:,} | "
              f"{row['params'][1]:,} | {row['ours']:.0f} | {row['diffusers']:.0f} | {row['ratio']:.2f}x | "
              f"{row['spread'][0]:.2f}-{row['spread'][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
