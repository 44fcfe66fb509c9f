"""Fusion strategies and the modality-imbalance remedies of chapter 03, as markdown tables.

    .venv/bin/python benchmarks/fusion.py --profile smoke          # one seed, a short run (about a minute)
    .venv/bin/python benchmarks/fusion.py --profile cpu            # two seeds
    .venv/bin/python benchmarks/fusion.py --profile gpu --json benchmarks/results/fusion.json
    .venv/bin/python benchmarks/fusion.py --steps 400 --seeds 3    # override the profile's sizes

The task is the chapter's: name a colour digit from its image (pixel noise of a standard
deviation drawn per image, uniform in [0, 0.6]) and its caption (the digit word wrong 10% of
the time), both corrupted afresh in every batch. Every model trains with Adam (lr 3e-3, batch
64) by ``course_lib.train.fit`` for the same number of steps, and is measured on the held-out
test digits, each with its own fixed corruption.

Table 1: the three fusion strategies, each trained plainly and with modality dropout (image
dropped with probability 0.2, caption with 0.5): test accuracy with both modalities, with the
image or the caption missing, with every image noisier than any in training (sigma = 1), and with
half of the digit words wrong; and the training time per model.

Table 2: modality imbalance in the cross-attention model, and remedies for it: the accuracy from
the image alone (caption removed) after a quarter of training and at the end, as a fraction of
the accuracy of the same architecture trained on the image only (measured in the same process and
run: the ratio), and the accuracy with both modalities. Remedies: modality dropout as in table 1,
dropping only the caption, dropping each modality with 0.3, and a ten times smaller learning rate
for the text front end (word embeddings, word positions, null word, missing-caption vector).

Means over ``--seeds`` seeds (model initialisation and batch order), with the spread (half the
range) where there are several.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib import runtime, train  # noqa: E402
from course_lib.data.bimodal_digits import add_pixel_noise, load_bimodal_digits, swap_digit_words  # noqa: E402
from course_lib.nn.fusion import FUSION_MODELS, modality_dropout  # noqa: E402

PROFILES = {"smoke": dict(steps=120, seeds=1), "cpu": dict(steps=1000, seeds=2), "gpu": dict(steps=3000, seeds=3)}
MAX_NOISE, WRONG_WORD, DROP = 0.6, 0.1, (0.2, 0.5)
CONDITIONS = ("both", "no image", "no caption", "noisy image", "wrong words")
TEXT_FRONT_END = ("word_embedding", "word_position", "null_word", "missing_text")
REMEDIES = {
    "none": dict(),
    "modality dropout (0.2, 0.5)": dict(drop=DROP),
    "caption dropout only (0, 0.5)": dict(drop=(0.0, 0.5)),
    "symmetric dropout (0.3, 0.3)": dict(drop=(0.3, 0.3)),
    "text learning rate / 10": dict(text_lr_factor=0.1),
}


def test_conditions(test, seed=123):
    g = torch.Generator().manual_seed(seed)
    n = len(test)
    images = add_pixel_noise(test.images, MAX_NOISE * torch.rand(n, generator=g), g)
    tokens = swap_digit_words(test.tokens, test.digit_ids, WRONG_WORD, g)
    masks = ([True, True], [False, True], [True, False])
    both, only_caption, only_image = (torch.tensor(m).expand(n, 2) for m in masks)
    return {
        "both": (images, tokens, both),
        "no image": (images, tokens, only_caption),
        "no caption": (images, tokens, only_image),
        "noisy image": (add_pixel_noise(test.images, 1.0, g), tokens, both),
        "wrong words": (images, swap_digit_words(test.tokens, test.digit_ids, 0.5, g), both),
    }


@torch.no_grad()
def evaluate(model, conditions, labels, device):
    model.eval()
    return {
        name: (model(x.to(device), t.to(device), p.to(device)).argmax(1).cpu() == labels).float().mean().item()
        for name, (x, t, p) in conditions.items()
    }


def train_and_probe(name, data, probe, steps, seed, device, drop=None, text_lr_factor=1.0):
    """Train one model; return (probe results after steps // 4 and after steps, seconds of training)."""
    torch.manual_seed(seed)
    model = FUSION_MODELS[name](data.tokenizer.vocab_size, num_classes=10)

    def loss_fn(model, batch):
        images, tokens, labels = batch
        images = add_pixel_noise(images, MAX_NOISE * torch.rand(len(images), device=images.device))
        tokens = swap_digit_words(tokens, data.digit_ids, WRONG_WORD)
        present = None if drop is None else modality_dropout(len(labels), drop).to(labels.device)
        return F.cross_entropy(model(images, tokens, present), labels)

    def optimizer():
        text = [p for n, p in model.named_parameters() if n.startswith(TEXT_FRONT_END)]
        rest = [p for n, p in model.named_parameters() if not n.startswith(TEXT_FRONT_END)]
        return torch.optim.Adam([{"params": rest, "lr": 3e-3}, {"params": text, "lr": 3e-3 * text_lr_factor}])

    results, seconds = [], 0.0
    with tempfile.TemporaryDirectory() as folder:
        for stop in (max(1, steps // 4), steps):
            start = time.perf_counter()
            model.to(device)  # the optimizer must hold the parameters that fit will train
            train.fit(model, loss_fn, data.tensors, steps=stop, optimizer=optimizer(), batch_size=64, seed=seed,
                      device=device, progress=False, checkpoint_path=Path(folder) / "run.pt")
            seconds += time.perf_counter() - start
            results.append(probe(model))
    return results, seconds


def mean_spread(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.max() - values.min()) / 2


def cell(values, digits=3):
    mean, spread = mean_spread(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default=None, help="sizes (default: COURSE_PROFILE, else cpu or gpu)"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (overrides the profile)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration (overrides the profile)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models: 1 is fastest)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    profile = args.profile or runtime.active_profile()
    steps = args.steps or PROFILES[profile]["steps"]
    seeds = args.seeds or PROFILES[profile]["seeds"]
    if steps < 1 or seeds < 1:
        parser.error("--steps and --seeds must be positive")
    torch.set_num_threads(args.threads)
    device = runtime.device(profile)

    data, test = load_bimodal_digits("train"), load_bimodal_digits("test")
    conditions = test_conditions(test)
    probe = lambda model: evaluate(model, conditions, test.labels, device)
    started = time.perf_counter()

    strategies = {}
    for name in FUSION_MODELS:
        for training, drop in (("plain", None), ("modality dropout", DROP)):
            runs = [train_and_probe(name, data, probe, steps, seed, device, drop=drop) for seed in range(seeds)]
            strategies[f"{name}, {training}"] = dict(
                accuracy={c: [r[0][-1][c] for r in runs] for c in CONDITIONS}, seconds=[r[1] for r in runs]
            )

    def cross_attention_runs(**options):
        return [
            train_and_probe("cross-attention", data, probe, steps, seed, device, **options) for seed in range(seeds)
        ]

    reference = cross_attention_runs(drop=(0.0, 1.0))  # the image-only model: the caption always dropped
    image_only = {stage: [r[0][i]["no caption"] for r in reference] for i, stage in enumerate(("quarter", "end"))}
    remedies = {}
    for label, options in REMEDIES.items():
        runs = cross_attention_runs(**options)
        remedies[label] = {
            "image alone, 1/4": [r[0][0]["no caption"] for r in runs],
            "image alone, end": [r[0][1]["no caption"] for r in runs],
            "ratio, 1/4": [r[0][0]["no caption"] / ref for r, ref in zip(runs, image_only["quarter"])],
            "ratio, end": [r[0][1]["no caption"] / ref for r, ref in zip(runs, image_only["end"])],
            "both, end": [r[0][1]["both"] for r in runs],
        }
    remedies["image-only model (reference)"] = {
        "image alone, 1/4": image_only["quarter"], "image alone, end": image_only["end"],
        "ratio, 1/4": [1.0] * seeds, "ratio, end": [1.0] * seeds, "both, end": [r[0][1]["both"] for r in reference],
    }
    total = time.perf_counter() - started

    print(f"## Fusion strategies (chapter 03), profile `{profile}`: {steps} steps, {seeds} seed(s), {device}\n")
    images, tokens, _ = conditions["both"]
    caption_right = (tokens == test.digit_ids[test.labels].unsqueeze(1)).any(1).float().mean().item()
    print(f"Test accuracy. The caption alone can reach {1 - WRONG_WORD:.2f} in expectation, {caption_right:.3f} on this "
          "test draw (the share of test captions that name the right digit).\n")
    print("| model, training | " + " | ".join(CONDITIONS) + " | train time (s) |")
    print("|---|" + "---:|" * (len(CONDITIONS) + 1))
    for label, row in strategies.items():
        accuracies = " | ".join(cell(row["accuracy"][c]) for c in CONDITIONS)
        print(f"| {label} | {accuracies} | {cell(row['seconds'], 1)} |")
    print(f"\n## Modality imbalance in the cross-attention model, and remedies ({steps // 4} and {steps} steps)\n")
    print("Image alone = accuracy with the caption removed; ratio = image alone / the image-only model's, same seed.\n")
    columns = ("image alone, 1/4", "ratio, 1/4", "image alone, end", "ratio, end", "both, end")
    print("| remedy | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for label, row in remedies.items():
        print(f"| {label} | " + " | ".join(cell(row[c]) for c in columns) + " |")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {cores} usable cores, {args.threads} torch thread(s), torch {torch.__version__}; "
          f"whole benchmark {total:.0f} s.")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(profile=profile, steps=steps, seeds=seeds, device=str(device),
                                             strategies=strategies, remedies=remedies, seconds=total), indent=1))


if __name__ == "__main__":
    main()
