"""Training benchmarks: throughput, and evidence that training learns camera traces.

``throughput``
    Patches per second of :func:`exifclip.training.train` (forward, backward,
    AdamW step, data loading from decoded-image cache) for each architecture,
    on synthetic 512x512 JPEGs with EXIF (or ``--images``), random init, steps
    after the first; ``--text-attention-dropout`` gives a row per value.

``learn``
    Train ``small`` from scratch on ``../shared/data/digicam`` with some
    camera models held out entirely, and compare the trained model with the
    random-init model it started from (same tokenizer):

    (a) patch-to-EXIF retrieval on held-out photos of the *training* cameras
        (one photo per camera with >= 2 photos, never trained on): each of
        ``--patches`` random patches per photo ranks the held-out photos'
        EXIF texts; top-1 = its own photo's text ranks first (chance
        1 / n_photos). Also per photo, from the mean patch embedding.
    (b) zero-shot splice localisation (``SpliceLocalizer``, default grid) on
        dev splices made by :func:`exifclip.splice.synthetic.make_splices` from the
        *held-out* camera models' photos only (crops of at most 768 px, PNG,
        and the same recompressed at JPEG quality 90), with as many authentic
        crops; p-mAP (spliced images only), cIoU and detection AP.

Usage::

    python benchmarks/bench_train.py throughput --arch small paper-resnet50
    python benchmarks/bench_train.py throughput --arch small --images ../shared/data/digicam --front-end srm \
        --batch-size 32 --steps 40 --text-attention-dropout 0.1 0 0.1 0
    python benchmarks/bench_train.py learn --steps 300 --batch-size 32
    python benchmarks/bench_train.py learn --steps 300 --batch-size 32 --augment

Prints one JSON object per result line; ``--out FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import platform
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import piexif
import torch
from PIL import Image

from exifclip.embedder import embed_texts
from exifclip.modeling import patches_to_pixel_values
from exifclip.training import TrainingConfig, train
from exifclip.training.data import ExifPatchDataset

DIGICAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "digicam"


def _emit(record: dict, out: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with open(out, "a") as fh:
            fh.write(line + "\n")


def _machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# -- throughput ---------------------------------------------------------------------------------

def _synthetic_photos(directory: Path, n: int, size: int = 512) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR), np.float32)
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Make%d" % (i % 5), piexif.ImageIFD.Model: b"Cam %d" % i},
                            "Exif": {piexif.ExifIFD.ExposureTime: (1, 100 + i), piexif.ExifIFD.FNumber: (28, 10),
                                     piexif.ExifIFD.ISOSpeedRatings: 100 * (1 + i % 8),
                                     piexif.ExifIFD.FocalLength: (50, 1), piexif.ExifIFD.MeteringMode: 5,
                                     piexif.ExifIFD.Flash: 16, piexif.ExifIFD.WhiteBalance: 0,
                                     piexif.ExifIFD.ExposureProgram: 2, piexif.ExifIFD.ColorSpace: 1,
                                     piexif.ExifIFD.ExposureMode: 0}})
        Image.fromarray(img).save(directory / f"p{i:03d}.jpg", exif=exif, quality=92)


def bench_throughput(args) -> None:
    plan = {"small": (args.batch_size or 64, args.steps or 6),
            "paper-resnet50": (args.batch_size or 16, args.steps or 3)}
    with tempfile.TemporaryDirectory() as tmp:
        if args.images is None:
            _synthetic_photos(Path(tmp), 64)
        images = str(args.images or tmp)
        for arch in args.arch:
            batch, steps = plan[arch]
            for dropout in args.text_attention_dropout or [None]:  # None: the architecture's own
                cfg = TrainingConfig(images=images, arch=arch, steps=steps + 1, batch_size=batch, min_tags=11,
                                     cache_images=True, device=args.device, progress=False, lr=1e-4,
                                     front_end=args.front_end, text_attention_dropout=dropout)
                start = time.perf_counter()
                result = train(cfg)
                _emit({"bench": "train_throughput", "arch": arch, "device": str(next(result.model.parameters()).device),
                       "images": "synthetic" if args.images is None else str(args.images),
                       "front_end": result.model.config.vision_front_end,
                       "text_attention_dropout": result.model.config.text_config.attention_dropout,
                       "batch_size": batch, "timed_steps": steps, "patch_size": result.model.config.patch_size,
                       "patches_per_s": round(result.patches_per_s, 2),
                       "s_per_step": round(batch / result.patches_per_s, 3),
                       "wall_s": round(time.perf_counter() - start, 1),
                       **_machine()}, args.out)


# -- learning evidence on digicam ----------------------------------------------------------------

def _split(root: Path, n_held_models: int, seed: int):
    rows = list(csv.DictReader(open(root / "MANIFEST.csv")))
    by_model = defaultdict(list)
    for r in rows:
        if r["model"].strip():
            by_model[(r["make"].strip(), r["model"].strip())].append(str(root / r["file"]))
    rng = np.random.default_rng(seed)
    candidates = sorted(k for k, v in by_model.items() if len(v) >= 3)
    held_models = [candidates[i] for i in sorted(rng.choice(len(candidates), n_held_models, replace=False))]
    train_files, heldout_photos = [], []
    for key, files in sorted(by_model.items()):
        files = sorted(files)
        if key in held_models:
            continue
        if len(files) >= 2:
            heldout_photos.append(files[-1])
            files = files[:-1]
        train_files.extend(files)
    return train_files, heldout_photos, {k: sorted(by_model[k]) for k in held_models}


def _retrieval(model, dataset: ExifPatchDataset, n_patches: int, seed: int) -> dict:
    model = model.eval()
    p = model.config.patch_size
    rng = np.random.default_rng(seed)
    patches, owner = [], []
    for i in range(len(dataset)):
        img = dataset.image(i)
        h, w = img.shape[:2]
        for _ in range(n_patches):
            y, x = rng.integers(0, h - p + 1), rng.integers(0, w - p + 1)
            patches.append(img[y:y + p, x:x + p])
            owner.append(i)
    owner = np.asarray(owner)
    with torch.inference_mode():
        x = patches_to_pixel_values(torch.from_numpy(np.stack(patches)), model.config.image_mean,
                                    model.config.image_std)
        z = torch.cat([model.get_image_features(c) for c in x.split(256)])
        z = torch.nn.functional.normalize(z, dim=-1).numpy()
    t = embed_texts(model, dataset.texts)
    sims = z @ t.T
    patch_top1 = float((sims.argmax(1) == owner).mean())
    mean = np.stack([z[owner == i].mean(0) for i in range(len(dataset))])
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    photo_top1 = float(((mean @ t.T).argmax(1) == np.arange(len(dataset))).mean())
    ranks = (sims > sims[np.arange(len(owner)), owner][:, None]).sum(1)
    return {"patch_top1": round(patch_top1, 4), "photo_top1": round(photo_top1, 4),
            "patch_top5": round(float((ranks < 5).mean()), 4), "chance_top1": round(1 / len(dataset), 4)}


def _make_splices(held: dict, out: Path, n: int, seed: int) -> Path:
    """``make_splices`` over the held-out camera models' photos only (symlinked, not copied)."""
    from exifclip.splice.synthetic import make_splices

    photos = out / "heldout-photos"
    photos.mkdir(parents=True, exist_ok=True)
    for files in held.values():
        for f in files:
            (photos / Path(f).name).symlink_to(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_splices(photos, out / "splices", n=n, seed=seed, jpeg_quality=90, max_size=768)
    return out / "splices"


def _splice_scores(model_dir: str, bench: Path, variant: str, device: str) -> dict:
    from exifclip.splice.datasets import load_synthetic
    from exifclip.splice.evaluation import evaluate_localization
    from exifclip.splice import SpliceLocalizer

    samples = list(load_synthetic(bench, variant=variant))
    loc = SpliceLocalizer(model=model_dir, device=device).fit()
    results = loc.localize([s.image for s in samples])
    report = evaluate_localization(results, [s.mask for s in samples], labels=[s.label for s in samples])

    def r(v):
        return None if v is None else round(float(v), 4)

    return {"pmap": r(report.pmap), "ciou": r(report.ciou), "detection_ap": r(report.detection_ap),
            "n_spliced": report.n_spliced, "n_authentic": report.n_authentic}


def bench_learn(args) -> None:
    if not DIGICAM.is_dir():
        raise SystemExit(f"{DIGICAM} is absent: the learning benchmark needs the digicam photos")
    warnings.simplefilter("ignore")
    train_files, heldout_files, held_models = _split(DIGICAM, args.held_models, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heldout = ExifPatchDataset(heldout_files, patch_size=64, min_tags=11, cache_images=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    config = TrainingConfig(images=train_files, arch="small", steps=args.steps, batch_size=args.batch_size,
                            lr=args.lr, warmup_steps=max(args.steps // 20, 1), min_tags=11, cache_images=True,
                            num_workers=args.num_workers, augment=True if args.augment else None,
                            device=args.device, progress=args.progress, seed=args.seed,
                            eval_every=args.eval_every, out_dir=str(tmp / "run"))

    def hook(model, step):
        return _retrieval(model, heldout, args.patches, seed=1)

    # The model is built here, as train() would build it (vocabulary from the training texts), so that
    # its random init can be kept as the baseline.
    from exifclip.modeling import create_model
    from exifclip.modeling.tokenization import build_exif_tokenizer
    from exifclip.training.augment import AugmentConfig, augmentation_phrases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_ds = ExifPatchDataset(train_files, patch_size=64, min_tags=11, cache_images=True,
                                    augment=config.augment, seed=args.seed)
    corpus = train_ds.texts + augmentation_phrases(AugmentConfig.coerce(config.augment))
    model = create_model("small", tokenizer=build_exif_tokenizer(corpus, vocab_size=4096), seed=args.seed)
    random_init = copy.deepcopy(model)
    random_init.save_pretrained(tmp / "random-init")
    baseline = _retrieval(random_init, heldout, args.patches, seed=1)

    start = time.perf_counter()
    result = train(config, model=model, dataset=train_ds, eval_hook=hook if args.eval_every else None)
    train_s = time.perf_counter() - start
    trained = result.model
    final = _retrieval(trained, heldout, args.patches, seed=1)
    record = {"bench": "train_learns", "arch": "small", "augment": bool(args.augment), "steps": result.step,
              "batch_size": args.batch_size, "lr": args.lr, "train_photos": result.dataset["images"],
              "train_cameras": len({Path(f).name.rsplit("_", 1)[0] for f in train_files}),
              "heldout_photos_of_training_cameras": len(heldout), "held_out_camera_models": len(held_models),
              "train_s": round(train_s, 1), "patches_per_s": round(result.patches_per_s, 1),
              "loss_first10": round(float(np.mean(result.losses[:10])), 4),
              "loss_last10": round(float(np.mean(result.losses[-10:])), 4),
              "retrieval_random_init": baseline, "retrieval_trained": final,
              "curve": result.evals, **_machine()}
    if not args.no_splices:
        bench = _make_splices(held_models, tmp, args.splices, seed=args.seed)
        t0 = time.perf_counter()
        for variant in ("png", "jpeg90"):
            record[f"splices_{variant}_random_init"] = _splice_scores(str(tmp / "random-init"), bench, variant,
                                                                      args.device)
            record[f"splices_{variant}_trained"] = _splice_scores(str(tmp / "run"), bench, variant, args.device)
        record["splice_eval_s"] = round(time.perf_counter() - t0, 1)
        record["held_out_models"] = [" ".join(k) for k in sorted(held_models)]
    _emit(record, args.out)
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["throughput", "learn"])
    parser.add_argument("--arch", nargs="+", default=["small", "paper-resnet50"])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--held-models", type=int, default=8)
    parser.add_argument("--patches", type=int, default=16, help="patches per held-out photo (retrieval)")
    parser.add_argument("--splices", type=int, default=16, help="spliced (and as many authentic) dev images")
    parser.add_argument("--no-splices", action="store_true")
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--images", type=Path, help="throughput: train on these photos (default: synthetic JPEGs)")
    parser.add_argument("--front-end", help="throughput: the image tower's front-end (default: the architecture's)")
    parser.add_argument("--text-attention-dropout", type=float, nargs="+",
                        help="throughput: one row per value of the text tower's attention dropout")
    args = parser.parse_args(argv)
    if args.what == "throughput":
        bench_throughput(args)
    else:
        args.steps = args.steps or 300
        args.batch_size = args.batch_size or 32
        bench_learn(args)


if __name__ == "__main__":
    main()
