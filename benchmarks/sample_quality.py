"""Sample quality of the book's digit samplers, judged by a classifier trained on real digits.

    python benchmarks/sample_quality.py --profile cpu
    python benchmarks/sample_quality.py --profile smoke --json benchmarks/results/sample_quality_smoke.json
    python benchmarks/sample_quality.py --profile cpu --train-steps 8000 --base-channels 32   # override sizes

Trains, with ``course_lib.train.fit`` and ``course_lib.nn.UNet2D``, a diffusion model
(v-prediction on a cosine schedule, with an EMA of the weights) and a flow-matching model
on the 8x8 training digits, then draws as many samples as there are held-out test digits
with each sampler: DDPM ancestral sampling with all 1,000 steps, DDIM at several step
counts, and the Euler flow sampler at several step counts. Every set is judged by one
classifier trained on the real training digits (``course_lib.metrics``):

- confident: the share of samples whose most probable class has probability > 0.9;
- classes / min share: how many of the ten classes the samples cover, and the rarest one's share;
- FID: the Frechet distance between the classifier's penultimate-layer features of the
  samples and of the training digits;
- precision / recall: k-NN manifold precision and recall (k = 3) in the same feature space.

The held-out real digits, judged the same way, are the ceiling. The goals (printed under
the table, the exit status is 1 when one is missed):

1. the diffusion model's samples (DDPM-1000) have a confident share within 10 points of
   the real held-out digits', with all ten classes present;
2. DDIM with 50 steps and flow matching with 20 steps reach at least 90 % of DDPM-1000's
   quality by every measure: confident share, precision and recall (ratio of the values) and
   FID (ratio DDPM-1000's FID / theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib import metrics, runtime, train  # noqa: E402
from course_lib.data import load_digits  # noqa: E402
from course_lib.diffusion import NoiseSchedule, ddim_sample, ddpm_sample, diffusion_loss, flow_matching_loss, flow_sample  # noqa: E402
from course_lib.nn.unet import UNet2D  # noqa: E402

# Sizes per profile. n_samples None = as many as held-out test digits (360), so that every
# row's FID, precision and recall are estimated from sets of the same size.
SIZES = {
    "smoke": dict(classifier_steps=300, train_steps=300, base_channels=16, batch_size=128, n_samples=100, repeats=1,
                  ddim_steps=(50, 20, 10), flow_steps=(50, 20, 10)),
    "cpu": dict(classifier_steps=1500, train_steps=12000, base_channels=16, batch_size=128, n_samples=None, repeats=4,
                ddim_steps=(50, 20, 10), flow_steps=(50, 20, 10)),
    "gpu": dict(classifier_steps=3000, train_steps=20000, base_channels=64, batch_size=256, n_samples=None, repeats=8,
                ddim_steps=(100, 50, 20, 10), flow_steps=(100, 50, 20, 10)),
}
PREDICTION = "v_prediction"
SCHEDULE = "cosine"
EMA_DECAY = 0.999
LR = 2e-3
THRESHOLD = 0.9


def make_unet(base_channels: int) -> UNet2D:
    """The 8x8 digits U-Net: two levels (8x8 and 4x4), attention at 4x4."""
    return UNet2D(in_channels=1, base_channels=base_channels, channel_mults=(1, 2),
                  attention_levels=(False, True), groups=8, heads=4)


def train_models(images: torch.Tensor, sizes: dict, device: torch.device, seed: int, cache: Path | None):
    """The diffusion (v-prediction) and flow-matching U-Nets, trained identically; return the two fit results.

    With ``cache``, each run checkpoints there under a name that holds every setting but
    the number of steps: a later call with more steps continues the same run (exactly as
    if it had not stopped), one with the same steps returns at once.
    """
    schedule = NoiseSchedule.from_name(SCHEDULE, 1000)
    common = dict(steps=sizes["train_steps"], batch_size=sizes["batch_size"], lr=LR, ema_decay=EMA_DECAY,
                  grad_clip=1.0, seed=seed, device=device, progress=False)

    def checkpoint(kind: str) -> Path | None:
        name = f"digits_{kind}_b{sizes['base_channels']}_bs{sizes['batch_size']}_lr{LR}_ema{EMA_DECAY}_seed{seed}.pt"
        return cache / name if cache is not None else None

    torch.manual_seed(seed)
    diffusion = train.fit(make_unet(sizes["base_channels"]),
                          lambda m, x: diffusion_loss(m, x, schedule, prediction_type=PREDICTION), images,
                          checkpoint_path=checkpoint(f"{PREDICTION}_{SCHEDULE}"), **common)
    torch.manual_seed(seed)
    flow = train.fit(make_unet(sizes["base_channels"]), lambda m, x: flow_matching_loss(m, x), images,
                     checkpoint_path=checkpoint("flow"), **common)
    return schedule, diffusion, flow


def samplers(schedule, diffusion_model, flow_model, sizes: dict):
    """(name, draw(n, generator)) for every row of the table, in order."""
    rows = [("DDPM-1000", lambda n, g: ddpm_sample(diffusion_model, schedule, (n, 1, 8, 8),
                                                   prediction_type=PREDICTION, generator=g))]
    for k in sizes["ddim_steps"]:
        rows.append((f"DDIM-{k}", lambda n, g, k=k: ddim_sample(
            diffusion_model, schedule, (n, 1, 8, 8), num_inference_steps=k, prediction_type=PREDICTION,
            timestep_spacing="trailing", generator=g)))
    for k in sizes["flow_steps"]:
        rows.append((f"flow-{k}", lambda n, g, k=k: flow_sample(flow_model, (n, 1, 8, 8), num_steps=k, generator=g)))
    return rows


def quality_row(name: str, sets: list[metrics.SampleQuality], seconds: float | None) -> dict:
    """One table row from the measures of ``repeats`` sample sets: means, the FID's spread, the worst coverage."""
    fids = np.array([q.fid for q in sets])
    row = {"sampler": name, "sets": len(sets), "seconds": seconds, "fid_sd": float(fids.std(ddof=1)) if len(sets) > 1 else None}
    for key in ("confident_share", "min_share", "max_share", "entropy", "fid", "precision", "recall", "inception_score"):
        row[key] = float(np.mean([getattr(q, key) for q in sets]))
    row["n_present"] = min(q.n_present for q in sets)
    return row


def add_ratios(rows: list[dict], baseline: str = "DDPM-1000") -> None:
    """Each row's quality relative to the baseline row: higher-is-better values divided, FID inverted."""
    base = next(r for r in rows if r["sampler"] == baseline)
    for r in rows:
        r["ratio"] = {
            "confident": r["confident_share"] / base["confident_share"] if base["confident_share"] else float("nan"),
            "precision": r["precision"] / base["precision"] if base["precision"] else float("nan"),
            "recall": r["recall"] / base["recall"] if base["recall"] else float("nan"),
            "fid": base["fid"] / r["fid"] if r["fid"] > 0 else float("inf"),
        }


def markdown_table(rows: list[dict]) -> str:
    head = ("| samples | confident | classes | min share | FID | precision | recall | seconds "
            "| vs DDPM-1000 (conf. / FID / P / R) |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = r["ratio"]
        seconds = "—" if r["seconds"] is None else f"{r['seconds']:.1f}"
        fid = f"{r['fid']:.2f}" + ("" if r["fid_sd"] is None else f" ± {r['fid_sd']:.2f}")
        lines.append(
            f"| {r['sampler']} | {r['confident_share']:.1%} | {r['n_present']}/10 | {r['min_share']:.1%} "
            f"| {fid} | {r['precision']:.3f} | {r['recall']:.3f} | {seconds} "
            f"| {ratio['confident']:.2f} / {ratio['fid']:.2f} / {ratio['precision']:.2f} / {ratio['recall']:.2f} |"
        )
    return "\n".join(lines)


def check_goals(rows: list[dict]) -> list[tuple[str, bool]]:
    by_name = {r["sampler"]: r for r in rows}
    real, ddpm = by_name["real held-out"], by_name["DDPM-1000"]
    goals = [(
        f"DDPM-1000 confident share {ddpm['confident_share']:.1%} within 10 points of real "
        f"{real['confident_share']:.1%}, all ten classes present ({ddpm['n_present']}/10)",
        ddpm["confident_share"] >= real["confident_share"] - 0.10 and ddpm["n_present"] == 10,
    )]
    for name in ("DDIM-50", "flow-20"):
        if name in by_name:
            ratio = by_name[name]["ratio"]
            worst = min(ratio.values())
            goals.append((f"{name} reaches >= 90% of DDPM-1000 by every measure (worst ratio {worst:.2f})",
                          worst >= 0.9))
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=runtime.PROFILES, default=None,
                        help="sizes to use (default: COURSE_PROFILE, else gpu with CUDA, else cpu)")
    parser.add_argument("--train-steps", type=int, help="optimizer steps of each generative model")
    parser.add_argument("--base-channels", type=int, help="U-Net width (channels of the first level)")
    parser.add_argument("--classifier-steps", type=int, help="optimizer steps of the judging classifier")
    parser.add_argument("--n-samples", type=int, help="samples a set (default: as many as held-out digits)")
    parser.add_argument("--repeats", type=int, help="sample sets a sampler draws; the table shows their means")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: usable cores, at most 8)")
    parser.add_argument("--json", type=Path, help="also write the rows and settings as JSON here")
    parser.add_argument("--cache", type=Path, help="checkpoint the models here; a later run reuses or continues them "
                        "(training times then count only the steps that run)")
    args = parser.parse_args(argv)

    profile = args.profile or runtime.active_profile()
    os.environ[runtime.PROFILE_ENV] = profile
    sizes = dict(SIZES[profile])
    for key in ("train_steps", "base_channels", "classifier_steps", "n_samples", "repeats"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads() if args.threads else runtime.configure_threads()
    device = runtime.device(profile)
    runtime.seed_everything(args.seed)

    train_set, test_set = load_digits("train"), load_digits("test")
    n = sizes["n_samples"] or len(test_set)
    print(f"profile {profile} on {device} ({threads} threads), {len(train_set)} training digits, "
          f"{sizes['repeats']} sets of {n} samples a sampler; "
          f"sizes {sizes}", flush=True)

    t0 = time.perf_counter()
    classifier = metrics.train_digit_classifier(*train_set.tensors, steps=sizes["classifier_steps"],
                                                seed=args.seed, device=device)
    classifier_seconds = time.perf_counter() - t0
    accuracy = classifier.accuracy(*test_set.tensors)
    print(f"judge: classifier trained in {classifier_seconds:.1f} s, held-out accuracy {accuracy:.1%}", flush=True)

    schedule, diffusion, flow = train_models(train_set.images, sizes, device, args.seed, args.cache)
    n_params = sum(p.numel() for p in diffusion.ema_model.parameters())
    print(f"diffusion model ({n_params:,} parameters): {diffusion.steps} steps in {diffusion.seconds:.1f} s, "
          f"final loss {sum(diffusion.losses[-100:]) / min(100, len(diffusion.losses)):.4f} (mean of last 100)")
    print(f"flow model: {flow.steps} steps in {flow.seconds:.1f} s, "
          f"final loss {sum(flow.losses[-100:]) / min(100, len(flow.losses)):.4f} (mean of last 100)", flush=True)

    reference = train_set.images
    real = test_set.images[torch.randperm(len(test_set), generator=torch.Generator().manual_seed(args.seed))[:n]]
    rows = [quality_row("real held-out", [metrics.evaluate_samples(classifier, real, reference)], None)]
    repeats = sizes["repeats"]
    for name, draw in samplers(schedule, diffusion.ema_model, flow.ema_model, sizes):
        t0 = time.perf_counter()
        samples = draw(n * repeats, torch.Generator().manual_seed(args.seed + 1)).clamp(-1, 1).cpu()
        seconds = (time.perf_counter() - t0) / repeats
        sets = [metrics.evaluate_samples(classifier, samples[i * n : (i + 1) * n], reference) for i in range(repeats)]
        rows.append(quality_row(name, sets, seconds))
        print(f"  {name}: {seconds:.1f} s a set, confident {rows[-1]['confident_share']:.1%}, "
              f"FID {rows[-1]['fid']:.2f}", flush=True)
    add_ratios(rows)

    print()
    print(markdown_table(rows))
    print()
    resumed = "" if not (diffusion.start_step or flow.start_step) else (
        f" (resumed from the cache at steps {diffusion.start_step} and {flow.start_step}: "
        "the times count only the steps trained in this run)")
    print(f"Training: diffusion {diffusion.seconds:.0f} s, flow {flow.seconds:.0f} s "
          f"({sizes['train_steps']} steps each, batch {sizes['batch_size']}, {n_params:,} parameters){resumed}; "
          f"judge {classifier_seconds:.0f} s ({accuracy:.1%} held-out accuracy). "
          f"{platform.processor() or platform.machine()}, {threads} threads, device {device}.")
    goals = check_goals(rows)
    for text, ok in goals:
        print(f"- [{'x' if ok else ' '}] {text}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "profile": profile, "device": str(device), "threads": threads, "sizes": sizes,
            "classifier": {"seconds": classifier_seconds, "accuracy": accuracy},
            "training_seconds": {"diffusion": diffusion.seconds, "flow": flow.seconds},
            "rows": rows, "goals": [{"goal": t, "met": ok} for t, ok in goals],
        }, indent=2))
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
