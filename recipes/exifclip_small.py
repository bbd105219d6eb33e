"""Regenerate the packaged default model ``exifclip-small`` from the data.

One command, deterministic for its seed on the same hardware::

    python recipes/exifclip_small.py --data ../shared/data/digicam --out build/exifclip-small --install

It trains the ``small`` architecture with :func:`exifclip.training.train` on
the digicam corpus (CC0 camera photos, github.com/drewnoakes/digicam_corpus),
leaving out every photo of the camera models in :data:`HELD_OUT_MODELS`
(they are the evaluation set of ``benchmarks/bench_default_model.py``).
``--install`` copies the weights, config and tokenizer into
``exifclip/models/exifclip-small/`` (the model card there is written by
hand from the measured figures).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

#: Camera models never seen in training: (EXIF Make, EXIF Model) as in MANIFEST.csv.
HELD_OUT_MODELS = [
    ("Canon", "Canon PowerShot G2"),
    ("PENTAX Corporation", "PENTAX *ist DL"),
    ("SEIKO EPSON CORP.", "PhotoPC 3100Z"),
    ("EASTMAN KODAK COMPANY", "KODAK DC280 ZOOM DIGITAL CAMERA"),
    ("Canon", "Canon EOS DIGITAL REBEL XT"),
    ("SONY", "SLT-A57"),
    ("NIKON CORPORATION", "NIKON D90"),
    ("NIKON", "COOLPIX S3100"),
    ("GoPro", "HERO7 Black"),
]

#: The training settings (exifclip.training.TrainingConfig fields).
RECIPE = {
    "arch": "small",
    "steps": 2400,
    "batch_size": 32,
    "lr": 1e-3,
    "warmup_steps": 100,
    "min_lr_ratio": 0.05,
    "weight_decay": 0.1,
    "min_tags": 11,
    "cache_images": True,
    "augment": None,
    "seed": 0,
    "device": "auto",
    "checkpoint_every": 400,
    "progress": True,
}


#: The files of a packaged model (the model card is written by hand beside them).
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")


def install(model_dir: Path, name: str) -> Path:
    """Copy a trained model's files into ``exifclip/models/NAME``; returns that folder."""
    target = Path(__file__).resolve().parents[1] / "exifclip" / "models" / name
    target.mkdir(parents=True, exist_ok=True)
    for file in MODEL_FILES:
        if (model_dir / file).is_file():
            shutil.copy(model_dir / file, target / file)
    return target


def split(data: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Training files; held-out files by camera model; probe-test files.

    The probe-test files are the last photo (by name) of every training
    camera with at least three photos: kept out of training so that a
    camera-model linear probe can be tested on unseen photos of known
    cameras.
    """
    rows = list(csv.DictReader(open(data / "MANIFEST.csv", newline="")))
    held = {f"{make} {model}": [] for make, model in HELD_OUT_MODELS}
    by_model: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        key = (row["make"].strip(), row["model"].strip())
        path = str((data / row["file"]).resolve())
        if key in HELD_OUT_MODELS:
            held[f"{key[0]} {key[1]}"].append(path)
        elif key[1]:
            by_model.setdefault(key, []).append(path)
    train, probe_test = [], []
    for key in sorted(by_model):
        files = sorted(by_model[key])
        if len(files) >= 3:
            probe_test.append(files.pop())
        train.extend(files)
    return sorted(train), {k: sorted(v) for k, v in held.items()}, sorted(probe_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/digicam", help="the digicam folder (with MANIFEST.csv)")
    parser.add_argument("--out", default="build/exifclip-small", help="training output folder")
    parser.add_argument("--steps", type=int, help="override the recipe's steps")
    parser.add_argument("--augment", action="store_true", help="turn on processing augmentations")
    parser.add_argument("--install", action="store_true", help="copy the result into exifclip/models/exifclip-small")
    args = parser.parse_args()

    from exifclip.training import TrainingConfig, train

    data = Path(args.data)
    train_files, held, probe_test = split(data)
    recipe = dict(RECIPE, steps=args.steps or RECIPE["steps"], augment=True if args.augment else None)
    config = TrainingConfig(images=train_files, out_dir=args.out, **recipe)
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    out = Path(args.out)
    summary = {"recipe": recipe, "train_photos": len(train_files), "held_out_models": sorted(held),
               "held_out_photos": sum(len(v) for v in held.values()),
               "probe_test_photos": len(probe_test), "wall_s": round(wall, 1),
               "patches_per_s": round(float(result.patches_per_s), 1)}
    (out / "recipe_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    if args.install:
        model_dir = out / "model" if (out / "model" / "config.json").is_file() else out
        print(f"installed into {install(model_dir, 'exifclip-small')}")


if __name__ == "__main__":
    main()
