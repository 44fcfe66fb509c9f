"""ViT against CNN on the bundled digits: accuracy against training-set size, and the patch-size trade-off.

    python benchmarks/vit_vs_cnn.py --profile smoke     # seconds: one seed, two sizes, two patch sizes
    python benchmarks/vit_vs_cnn.py --profile cpu       # three seeds, 10/30/100 % of the data, patches 1-8
    python benchmarks/vit_vs_cnn.py --profile gpu       # five seeds, more sizes and steps, on CUDA
    python benchmarks/vit_vs_cnn.py --fractions 0.1 0.5 1 --seeds 0 1 --steps 400 --json out.json

The models are chapter 01's: ``ViT(8, p, 1, dim=32, depth=2, heads=4)`` and ``CNN(channels=(16, 32))``,
each with a linear head over ten classes, trained with the same recipe (``train.fit``: Adam,
lr 2e-3, batch 64 or the whole subset if smaller, the same number of steps) and tested on the
same 359 held-out digits (the split every chapter uses).

Table 1 trains both on nested random subsets of the 1,438 training digits (the subset, the
initialisation and the batch order all change with the seed) and reports the mean and standard
deviation of the test accuracy over seeds, and the CNN's lead.

Table 2 varies the ViT's patch size on all the training data: tokens, parameters, test accuracy
(mean and sd over seeds) and the time of one training step (forward, loss, backward, Adam) on a
fixed batch of 64, relative to the CNN's. The times are taken in this process, the models taking
turns in every repetition after warm-up steps, so that a change in the machine's load hits all of
them; each reported time is the median over repetitions, each ratio the median of per-repetition
ratios.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import data, runtime, train  # noqa: E402
from course_lib.nn.encoders import CNN, ViT  # noqa: E402
from course_lib.nn.encoders.vit import count_parameters  # noqa: E402

PROFILES = {
    "smoke": dict(fractions=(0.1, 1.0), seeds=(0,), steps=100, patch_sizes=(2, 4), repeats=3),
    "cpu": dict(fractions=(0.1, 0.3, 1.0), seeds=(0, 1, 2), steps=600, patch_sizes=(1, 2, 4, 8), repeats=7),
    "gpu": dict(fractions=(0.05, 0.1, 0.3, 0.6, 1.0), seeds=(0, 1, 2, 3, 4), steps=2000, patch_sizes=(1, 2, 4, 8), repeats=15),
}
TIMED_STEPS = 5  # training steps per timed repetition
BATCH = 64


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="sizes (default: COURSE_PROFILE, else gpu with CUDA, else cpu)")
    parser.add_argument("--fractions", type=float, nargs="+", help="training-set fractions for table 1, in (0, 1]")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (subset, initialisation, batch order)")
    parser.add_argument("--steps", type=int, help="training steps per model")
    parser.add_argument("--patch-sizes", type=int, nargs="+", help="ViT patch sizes for table 2 (divisors of 8)")
    parser.add_argument("--repeats", type=int, help="timed repetitions per model in table 2")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: the usable cores, at most 8)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the profile's device)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.profile is None:
        args.profile = os.environ.get("COURSE_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
        if args.profile not in PROFILES:
            parser.error(f"COURSE_PROFILE must be one of {sorted(PROFILES)}, got {args.profile!r}")
    sizes = PROFILES[args.profile]
    for name in ("fractions", "seeds", "steps", "patch_sizes", "repeats"):
        if getattr(args, name) is None:
            setattr(args, name, sizes[name])
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    if any(p < 1 or 8 % p for p in args.patch_sizes):
        parser.error(f"--patch-sizes must divide the image size 8, got {args.patch_sizes}")
    if any(s < 0 for s in args.seeds):
        parser.error(f"--seeds must be non-negative, got {args.seeds}")
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    args.device = torch.device(args.device) if args.device else runtime.device(args.profile)
    return args


def make_vit(patch_size: int = 2) -> ViT:
    return ViT(image_size=8, patch_size=patch_size, in_channels=1, dim=32, depth=2, heads=4, num_classes=10)


def make_cnn() -> CNN:
    return CNN(in_channels=1, num_classes=10, channels=(16, 32))


def classification_loss(model, batch):
    images, labels = batch
    return F.cross_entropy(model(images), labels)


@torch.no_grad()
def test_accuracy(model, test, device) -> float:
    model.eval()
    predictions = model(test.images.to(device)).argmax(1).cpu()
    return (predictions == test.labels).float().mean().item()


def train_and_test(make, images, labels, test, steps, seed, device) -> float:
    torch.manual_seed(seed)
    model = make()
    train.fit(model, classification_loss, (images, labels), steps=steps, batch_size=min(BATCH, len(labels)),
              lr=2e-3, seed=seed, device=device, progress=False)
    return test_accuracy(model, test, device)


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def data_size_table(args, digits, test) -> tuple[list[str], list[dict]]:
    lines = [
        "| fraction | training images | ViT accuracy | CNN accuracy | CNN − ViT |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = []
    for fraction in args.fractions:
        n = max(1, round(fraction * len(digits)))
        accuracy = {"ViT": [], "CNN": []}
        for seed in args.seeds:
            subset = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))[:n]
            for name, make in (("ViT", make_vit), ("CNN", make_cnn)):
                accuracy[name].append(train_and_test(make, digits.images[subset], digits.labels[subset], test,
                                                     args.steps, seed, args.device))
        lead = [c - v for c, v in zip(accuracy["CNN"], accuracy["ViT"])]
        lines.append(f"| {fraction:g} | {n} | {mean_sd(accuracy['ViT'])} | {mean_sd(accuracy['CNN'])} | {mean_sd(lead)} |")
        rows.append(dict(fraction=fraction, images=n, vit=accuracy["ViT"], cnn=accuracy["CNN"]))
    return lines, rows


def step_times(models: dict[str, torch.nn.Module], repeats: int, device) -> dict[str, list[float]]:
    """Seconds per training step of each model, ``repeats`` readings each, the models taking turns."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 1, 8, 8, generator=g).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=g).to(device)
    optimizers = {name: torch.optim.Adam(m.to(device).parameters(), lr=2e-3) for name, m in models.items()}

    def run(name: str, steps: int) -> float:
        model, optimizer = models[name], optimizers[name]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = classification_loss(model, (x, y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / steps

    for name in models:
        run(name, 3)  # warm-up: allocator, kernels, caches
    times = {name: [] for name in models}
    order = list(models)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(run(name, TIMED_STEPS))
    return times


def patch_size_table(args, digits, test) -> tuple[list[str], list[dict]]:
    names = [f"ViT, patch {p}" for p in args.patch_sizes] + ["CNN"]
    makers = {f"ViT, patch {p}": (lambda p=p: make_vit(p)) for p in args.patch_sizes} | {"CNN": make_cnn}
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = makers[name]()
    times = step_times(models, args.repeats, args.device)
    lines = [
        "| model | tokens | parameters | ms per step | time / CNN's | test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = []
    for name in names:
        model = models[name]
        accuracy = [train_and_test(makers[name], digits.images, digits.labels, test, args.steps, seed, args.device)
                    for seed in args.seeds]
        ratio = statistics.median(t / c for t, c in zip(times[name], times["CNN"]))
        tokens = model.num_tokens if isinstance(model, ViT) else "—"
        ms = 1000 * statistics.median(times[name])
        lines.append(f"| {name} | {tokens} | {count_parameters(model):,} | {ms:.2f} | {ratio:.2f} | {mean_sd(accuracy)} |")
        rows.append(dict(model=name, tokens=tokens if tokens != "—" else None, parameters=count_parameters(model),
                         ms_per_step=ms, time_ratio_to_cnn=ratio, accuracy=accuracy))
    return lines, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = runtime.configure_threads() if args.threads is None else args.threads
    torch.set_num_threads(threads)
    digits, test = data.load_digits("train"), data.load_digits("test")
    where = str(args.device)
    if args.device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(args.device)})"
    header = (
        f"profile {args.profile} on {where}, {threads} CPU threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}; {args.steps} training steps, seeds {list(args.seeds)}; "
        f"ViT {count_parameters(make_vit()):,} parameters (patch 2), CNN {count_parameters(make_cnn()):,}"
    )
    print(header + "\n")
    t0 = time.perf_counter()
    size_lines, size_rows = data_size_table(args, digits, test)
    print(f"Test accuracy on {len(test)} held-out digits against the training-set size (mean ± sd over seeds)\n")
    print("\n".join(size_lines) + "\n", flush=True)
    patch_lines, patch_rows = patch_size_table(args, digits, test)
    print(f"Patch-size trade-off on all {len(digits)} training digits (8x8 pixels; times per step of a batch of {BATCH})\n")
    print("\n".join(patch_lines) + "\n")
    print(f"total time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(header=header, data_size=size_rows, patch_size=patch_rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
