"""The ``exifclip`` command line.

Every result is a file or JSON on stdout; every failure is one line on
stderr naming the file, and the other files are still processed. The exit
status is 0 when every input succeeded, 1 when some failed, 2 on usage errors,
130 when interrupted (Ctrl-C).

Every output file is written atomically (:mod:`exifclip._atomic`): a killed
run leaves whole files or none, never half of one. ``localize`` and ``embed``
save each image's work as they go and take ``--resume`` to skip what an
earlier run finished (:mod:`exifclip._resume`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _error(message: str) -> None:
    print(f"exifclip: error: {message}", file=sys.stderr)


def _cmd_exif(args: argparse.Namespace) -> int:
    import warnings

    from .exif import exif_to_text, read_exif

    failed = 0
    tags = args.tags.split(",") if args.tags else None
    for path in args.images:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                exif = read_exif(path)
            for w in caught:
                print(f"exifclip: warning: {w.message}", file=sys.stderr)
            text = exif_to_text(exif, tags=tags, style=args.style)
        except (ValueError, OSError, TypeError) as exc:
            _error(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), "exif": exif, "text": text}, ensure_ascii=False))
        else:
            print(f"{path}\t{text}")
    return 1 if failed else 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from ._batch import BatchErrors
    from ._resume import EmbedParts, source_key
    from .embedder import ExifPatchEmbedder, pool_patch_embeddings
    from .hub import ModelNotFoundError

    if args.save_every < 1:
        _error(f"--save-every must be a positive number of images, got {args.save_every}")
        return 2
    embedder = ExifPatchEmbedder(
        model=args.model,
        revision=args.revision,
        patch_size=args.patch_size,
        num_per_dim=args.num_per_dim,
        stride=args.stride,
        batch_size=args.batch_size,
        device=args.device,
        errors="skip",
        progress=args.progress,
        **_decode_params(args),
    )
    try:
        embedder.fit()
    except (ModelNotFoundError, ValueError) as exc:
        _error(str(exc))
        return 2
    settings = {
        "model": str(args.model),
        "revision": args.revision,
        "patch_size": embedder.patch_size_,
        "num_per_dim": args.num_per_dim,
        "stride": args.stride,
        "patches": bool(args.patches),
    }
    out = Path(args.out)
    parts = EmbedParts(out, settings, resume=args.resume)
    images = [str(p) for p in args.images]
    resumed = {source_key(p) for p in images} & set(parts.done)
    pending = list(dict.fromkeys(p for p in images if source_key(p) not in parts.done))  # unique, in order
    failed: dict[str, str] = {}
    computed = 0
    try:
        for start in range(0, len(pending), args.save_every):
            chunk = pending[start : start + args.save_every]
            report = BatchErrors("skip")
            per_image = embedder._transform_patches(chunk, report)
            for failure in report.failures:
                _error(f"{failure.source}: {failure.reason}")
                failed[chunk[failure.index]] = failure.reason
            items = {}
            for path, item in zip(chunk, per_image):
                if item is None:
                    continue
                entry = {"embedding": pool_patch_embeddings(item.embeddings)}
                if args.patches:
                    entry["patches"], entry["positions"] = item.embeddings, item.grid.positions()
                items[source_key(path)] = entry
            if items:
                parts.save_part(items)
                computed += len(items)
    except KeyboardInterrupt:
        _error(
            f"interrupted: {computed + len(resumed)} of {len(pending) + len(resumed)} images are saved in "
            f"{parts.folder}; rerun with --resume to go on"
        )
        return 130
    failed_files = [p for p in images if p in failed]
    embedded = parts.finish(
        images,
        failed_files,
        embedder.embedding_dim_,
        {"model": np.asarray(str(args.model)), "patch_size": np.asarray(embedder.patch_size_)},
    )
    summary = {
        "out": str(out),
        "embedded": embedded,
        "computed": computed,
        "skipped": len(resumed),
        "failed": len(failed_files),
        "dim": embedder.embedding_dim_,
        "model": str(args.model),
    }
    print(json.dumps(summary))
    return 1 if failed_files else 0


# `exifclip train` flags -> TrainingConfig fields (flags left out keep the config's value).
_TRAIN_FIELDS = {
    "metadata": "metadata",
    "arch": "arch",
    "init": "init",
    "revision": "revision",
    "out": "out_dir",
    "steps": "steps",
    "batch_size": "batch_size",
    "accum_steps": "accum_steps",
    "lr": "lr",
    "warmup_steps": "warmup_steps",
    "min_lr_ratio": "min_lr_ratio",
    "weight_decay": "weight_decay",
    "clip_grad_norm": "clip_grad_norm",
    "min_tags": "min_tags",
    "tags": "tags",
    "text_style": "text_style",
    "patch_size": "patch_size",
    "vocab_size": "vocab_size",
    "cache_images": "cache_images",
    "num_workers": "num_workers",
    "batchnorm": "batchnorm",
    "precision": "precision",
    "seed": "seed",
    "device": "device",
    "checkpoint_every": "checkpoint_every",
    "keep_checkpoints": "keep_checkpoints",
    "eval_every": "eval_every",
    "resume": "resume",
}


def _load_eval_hook(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--eval-hook must look like 'package.module:function', got {spec!r}")
    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--eval-hook {spec}: cannot import it ({exc})") from None
    if not callable(hook):
        raise ValueError(f"--eval-hook {spec}: not callable")
    return hook


def _cmd_train(args: argparse.Namespace) -> int:
    from .hub import ModelNotFoundError
    from .training import TrainingConfig, train
    from .training_data import find_images

    try:
        if args.config:
            config = TrainingConfig.from_json(args.config)
        elif args.resume and args.out and (Path(args.out) / "training_config.json").is_file():
            config = TrainingConfig.from_json(Path(args.out) / "training_config.json")  # resume as it was run
        else:
            config = TrainingConfig()
        changes = {f: getattr(args, a) for a, f in _TRAIN_FIELDS.items() if getattr(args, a) is not None}
        if args.images:
            if len(args.images) == 1:
                changes["images"] = args.images[0]
            else:
                changes["images"] = [f for p in args.images for f in (find_images(p) if Path(p).is_dir() else [p])]
        if "arch" in changes:
            changes["init"] = None
        elif "init" in changes:
            changes["arch"] = None
        if changes.get("clip_grad_norm") == 0:
            changes["clip_grad_norm"] = None
        if args.augment is not None:
            changes["augment"] = json.loads(args.augment) if args.augment.strip().startswith("{") else True
        if args.no_progress:
            changes["progress"] = False
        config = config.replace(**changes)
        if not config.out_dir:
            raise ValueError("--out DIR is required (the model, checkpoints and log are written there)")
        hook = _load_eval_hook(args.eval_hook) if args.eval_hook else None
        if hook is not None and not config.eval_every:
            config = config.replace(eval_every=max(config.steps // 10, 1))
        config.validate()
        result = train(config, eval_hook=hook)
    except (ValueError, FileNotFoundError, ModelNotFoundError, json.JSONDecodeError) as exc:
        _error(str(exc))
        return 2
    failed = [
        (name, reason, detail)
        for name, reason, detail in result.skipped_files
        if reason in ("unreadable", "decode_failed")
    ]
    for name, reason, detail in failed[:20]:
        _error(detail if name in detail else f"{name}: {detail}")
    if len(failed) > 20:
        _error(f"... and {len(failed) - 20} more unreadable photos; see {Path(config.out_dir) / 'skipped_files.csv'}")
    summary = {
        "out": config.out_dir,
        "step": result.step,
        "final_loss": result.losses[-1] if result.losses else None,
        "photos": result.dataset["images"],
        "skipped": result.dataset["skipped"],
        "patches_per_s": round(result.patches_per_s, 2) if result.patches_per_s == result.patches_per_s else None,
        "world_size": result.world_size,
        "resumed_from": result.resumed_from,
    }
    if result.evals:
        summary["last_eval"] = result.evals[-1]
    if result.world_size == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 1 if failed else 0


def _localizer_from_args(args: argparse.Namespace):
    from .splice import SpliceLocalizer

    # "skip": a failed image is None with its reason in failures_; the commands report it.
    return SpliceLocalizer(
        model=args.model,
        revision=args.revision,
        patch_size=args.patch_size,
        num_per_dim=args.num_per_dim,
        stride=args.stride,
        batch_size=args.batch_size,
        device=args.device,
        method=args.method,
        threshold=args.threshold,
        score_method=args.score_method,
        errors="skip",
        **_decode_params(args),
    )


# The keys of a localize record that name its pictures; STEM.json, written after them, marks them complete.
_LOCALIZE_OUTPUTS = ("heatmap", "mask", "overlay")


def _localize_settings(args: argparse.Namespace) -> dict:
    """What a localize result depends on: a resumed image must have been made with the same."""
    return {
        "model": str(args.model),
        "revision": args.revision,
        "method": args.method,
        "threshold": args.threshold,
        "score_method": args.score_method,
        "patch_size": args.patch_size,
        "num_per_dim": args.num_per_dim,
        "stride": args.stride,
        "vmax": args.vmax,
    }


def _localize_one(localizer, path: str, stem: str, out: Path, args: argparse.Namespace, settings: dict) -> dict:
    """Localise one image and write its pictures, then its marker; returns the record."""
    import time

    from ._atomic import atomic_write
    from ._resume import source_key
    from .io import load_image
    from .viz import colorize, mask_image, overlay, save_png

    start = time.perf_counter()
    image = load_image(path, **_decode_params(args))  # decoded once: localised and drawn
    result = localizer.localize([image])[0]
    if result is None:
        raise ValueError(localizer.failures_[0].reason)
    files = {
        "heatmap": save_png(colorize(result.heatmap, vmax=args.vmax), out / f"{stem}_heatmap.png"),
        "mask": save_png(mask_image(result.mask), out / f"{stem}_mask.png"),
        "overlay": save_png(overlay(image, result.heatmap, result.mask, vmax=args.vmax), out / f"{stem}_overlay.png"),
    }
    grid = result.grid
    record = {
        "file": str(path),
        "abspath": source_key(path),
        "score": result.score,
        "score_method": args.score_method,
        "spliced_fraction": float(result.mask.mean()),
        "heatmap_max": float(result.heatmap.max()),
        "heatmap_scale": [0.0, args.vmax],
        **{k: str(v) for k, v in files.items()},
        "grid": {"patch_size": grid.patch_size, "stride": grid.stride, "rows": grid.n_rows, "cols": grid.n_cols},
        "timings": {
            **{k: round(v, 4) for k, v in result.timings.items()},
            "total_s": round(time.perf_counter() - start, 4),
        },
        "model": str(args.model),
        "settings": settings,
    }
    with atomic_write(out / f"{stem}.json", "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    return record


def _cmd_localize(args: argparse.Namespace) -> int:
    from ._atomic import atomic_write, remove_stale_parts
    from ._resume import assign_stems, completed_record
    from .hub import ModelNotFoundError

    localizer = _localizer_from_args(args)
    try:
        localizer.fit()
    except (ModelNotFoundError, ValueError) as exc:
        _error(str(exc))
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out)  # temporaries of a killed run
    images = [str(p) for p in args.images]
    stems = assign_stems(images, out)
    settings = _localize_settings(args)
    records: list[dict | None] = [None] * len(images)
    done = skipped = failed = 0
    interrupted = False
    try:
        for i, (path, stem) in enumerate(zip(images, stems)):
            if args.resume:
                records[i] = completed_record(out, stem, path, settings, _LOCALIZE_OUTPUTS)
                if records[i] is not None:
                    skipped += 1
                    continue
            try:
                records[i] = _localize_one(localizer, path, stem, out, args, settings)
            except (ValueError, OSError) as exc:  # ImageLoadError is a ValueError
                message = str(exc)
                _error(message if path in message else f"{path}: {message}")
                failed += 1
                continue
            done += 1
            print(json.dumps(records[i]), flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Every finished image of these inputs, in input order: this run's and resumed ones.
        with atomic_write(out / "results.jsonl", "w") as log:
            for record in records:
                if record is not None:
                    log.write(json.dumps(record) + "\n")
    left = len(images) - done - skipped - failed
    summary = f"{done} localized, {skipped} skipped (already done), {failed} failed"
    if interrupted:
        _error(
            f"interrupted: {summary}, {left} not finished, of {len(images)} images in {out}; "
            "rerun with --resume to finish"
        )
        return 130
    print(f"exifclip: localize: {summary}, of {len(images)} images in {out}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import time
    import warnings

    import numpy as np

    from .datasets import load_dataset
    from .evaluation import evaluate_localization
    from .hub import ModelNotFoundError
    from .io import ImageLoadError

    kwargs = {}
    if args.variant:
        kwargs["variant"] = args.variant
    if args.mask_root:
        kwargs["mask_root"] = args.mask_root
    try:
        samples = list(load_dataset(args.dataset, args.root, **kwargs))
    except (ValueError, OSError) as exc:
        _error(str(exc))
        return 2
    if args.limit:
        samples = samples[: args.limit]
    if not samples:
        _error(f"no images found for dataset {args.dataset!r} under {args.root}")
        return 2
    localizer = _localizer_from_args(args)
    try:
        localizer.fit()
    except (ModelNotFoundError, ValueError) as exc:
        _error(str(exc))
        return 2
    results, seconds = [], []
    progress = None
    if args.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(samples), unit="img", desc="evaluating")
    for sample in samples:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = localizer.localize([sample.image])[0]
            if result is None:
                raise ValueError(localizer.failures_[0].reason)
            results.append(result)
            seconds.append(time.perf_counter() - start)
        except (ImageLoadError, ValueError, OSError) as exc:
            _error(f"{sample.name}: {exc}")
            results.append(None)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    report = evaluate_localization(
        results, [s.mask for s in samples], labels=[s.label for s in samples], names=[s.name for s in samples]
    )
    per_image_s = float(np.mean(seconds)) if seconds else float("nan")
    print(
        f"dataset: {args.dataset} ({args.root}), model: {args.model}, method: {args.method}, score: {args.score_method}"
    )
    print(report)
    print(f"seconds per image: {per_image_s:.3f}")
    if args.json:
        payload = {
            "dataset": args.dataset,
            "root": str(args.root),
            "model": str(args.model),
            "method": args.method,
            "score_method": args.score_method,
            "seconds_per_image": per_image_s,
            **report.to_dict(),
        }
        from ._atomic import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if report.n_failed else 0


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-truncated", action="store_true",
                   help="decode truncated JPEGs (missing rows filled flat, with a warning) instead of failing them")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels, before decoding (default: about 179 megapixels; "
                        "0: no exifclip limit, Pillow's own still applies)")


def _decode_params(args: argparse.Namespace) -> dict:
    from .io import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS if args.max_pixels is None else (None if args.max_pixels == 0 else args.max_pixels)
    return {"allow_truncated": bool(args.allow_truncated), "max_pixels": limit}


def _add_localizer_options(p: argparse.ArgumentParser) -> None:
    from .splice import DETECTION_SCORES

    p.add_argument("--model", default="exifclip-small", help="packaged name, directory or Hub id")
    p.add_argument("--revision", help="Hub branch, tag or commit")
    p.add_argument("--method", choices=["meanshift", "ncut"], default="meanshift", help="how the mask is made")
    p.add_argument("--threshold", type=float, help="heatmap threshold for the mask (default: per image)")
    p.add_argument(
        "--score-method",
        choices=sorted(DETECTION_SCORES),
        default="mean",
        help="detection score ('mean' is the paper's)",
    )
    p.add_argument("--patch-size", type=int, help="patch side in pixels (default: the model's)")
    p.add_argument("--num-per-dim", type=int, default=30, help="patches along the longer side")
    p.add_argument("--stride", type=int, help="explicit patch stride in pixels")
    p.add_argument("--batch-size", type=int, default=256, help="patches per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    _add_decode_options(p)


def _cmd_convert_official(args: argparse.Namespace) -> int:
    from .convert import ConversionError, convert_official

    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        _error(f"{out}: exists and is not empty (pass --overwrite to replace its model files)")
        return 1
    tokenizer = None if args.tokenizer.lower() == "none" else args.tokenizer
    try:
        model = convert_official(args.checkpoint, out, tokenizer=tokenizer)
    except ConversionError as exc:
        _error(str(exc))
        return 1
    info = {k: v for k, v in model.conversion_info.items() if k != "text_config"}
    print(json.dumps({"out_dir": str(out), "tokenizer": tokenizer is not None, **info}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``exifclip`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="exifclip", description="Camera-trace embeddings learnt from EXIF as language."
    )
    parser.add_argument("--version", action="version", version=f"exifclip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exif", help="print the EXIF of images as model text")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--json", action="store_true", help="one JSON object per line: file, exif dict, text")
    p.add_argument("--style", choices=["default", "paper"], default="default", help="value rules of the text")
    p.add_argument("--tags", help="comma-separated tag list and order (default: exifclip.exif.DEFAULT_TAGS)")
    p.set_defaults(func=_cmd_exif)

    p = sub.add_parser("embed", help="embed images by their camera traces into an .npz file")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", required=True, help="output .npz: files, embeddings (n, dim), failed_files")
    p.add_argument("--model", default="exifclip-small", help="packaged name, directory or Hub id")
    p.add_argument("--revision", help="Hub branch, tag or commit")
    p.add_argument("--patch-size", type=int, help="patch side in pixels (default: the model's)")
    p.add_argument("--num-per-dim", type=int, default=30, help="patches along the longer side")
    p.add_argument("--stride", type=int, help="explicit patch stride in pixels")
    p.add_argument("--batch-size", type=int, default=256, help="patches per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--patches", action="store_true", help="also store every patch embedding and position")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    _add_decode_options(p)
    p.add_argument(
        "--save-every",
        type=int,
        default=256,
        metavar="N",
        help="save the work every N images (in .OUT.parts/, merged into OUT at the end), so an "
        "interrupted run can --resume",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the images already embedded with the same settings (saved parts of an "
        "interrupted run, or rows of an existing OUT); failed images are retried",
    )
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("localize", help="splice heatmap, mask, overlay and score for each image")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: per image STEM_heatmap.png, STEM_mask.png, "
        "STEM_overlay.png and STEM.json (written last: the image is done); results.jsonl: the "
        "records of all the images given, in order",
    )
    _add_localizer_options(p)
    p.add_argument(
        "--vmax",
        type=float,
        default=1.0,
        help="heatmap value drawn brightest (default 1.0: a fixed scale across images)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip images whose STEM.json and pictures exist from a run with the same settings "
        "(an interrupted run goes on); failed images are retried",
    )
    p.set_defaults(func=_cmd_localize)

    p = sub.add_parser("evaluate", help="localisation and detection metrics on a benchmark")
    p.add_argument("--dataset", required=True, help="columbia, dso1, korus, in_the_wild, casia1, folder or synthetic")
    p.add_argument("--root", required=True, help="the dataset folder, as it ships")
    p.add_argument("--variant", help="synthetic benchmark variant: png or jpeg90")
    p.add_argument("--mask-root", help="external masks (CASIA 1)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--json", help="also write the metrics (and per-image rows) to this JSON file")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    _add_localizer_options(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "train",
        help="train or fine-tune a model on photos and their own EXIF (torchrun for many GPUs)",
        description="Contrastive training on photos and their EXIF (exifclip.training.train). Flags not given "
        "keep the value of --config (a TrainingConfig JSON file) or, with --resume, of the run's own "
        "OUT/training_config.json. Several GPUs: torchrun --nproc-per-node N -m exifclip.cli train ...",
    )
    p.add_argument("--images", nargs="+", help="a directory of photos (searched recursively) or image files")
    p.add_argument("--metadata", help="CSV or JSONL mapping files to EXIF (read instead of the files' own EXIF)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--arch", help="train from scratch: small or paper-resnet50")
    src.add_argument("--init", help="fine-tune this model: packaged name, directory or Hub id")
    p.add_argument("--revision", help="Hub branch, tag or commit of --init")
    p.add_argument("--out", help="output directory: final model, checkpoints/, train_log.jsonl")
    p.add_argument("--config", help="a TrainingConfig JSON file (flags override it)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue from the latest checkpoint in --out (or from CHECKPOINT); a fresh start if none",
    )
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--batch-size", type=int, help="global batch: photos per step over all processes")
    p.add_argument("--accum-steps", type=int, help="micro-batches per step (the loss stays over the global batch)")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps before the cosine decay")
    p.add_argument("--min-lr-ratio", type=float, help="final learning rate as a fraction of --lr")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--clip-grad-norm", type=float, help="gradient clipping norm (0: none)")
    p.add_argument("--min-tags", type=int, help="skip photos with fewer EXIF tags in their text (default 11)")
    p.add_argument("--tags", choices=["default", "all"], help="which tags the text holds")
    p.add_argument("--text-style", choices=["default", "paper"])
    p.add_argument("--patch-size", type=int, help="patch side in pixels (default: the model's)")
    p.add_argument("--vocab-size", type=int, help="WordPiece vocabulary size when training from scratch")
    p.add_argument(
        "--augment",
        nargs="?",
        const="on",
        default=None,
        metavar="JSON",
        help="processing augmentations (JPEG, resample, blur, noise, gamma), optionally a JSON object "
        "of AugmentConfig settings",
    )
    p.add_argument("--cache-images", action="store_true", default=None, help="keep decoded photos in memory")
    p.add_argument("--num-workers", type=int, help="data-loading processes")
    p.add_argument("--batchnorm", choices=["batch", "sync", "frozen"])
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda (under torchrun: each rank its own GPU)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: none)")
    p.add_argument("--keep-checkpoints", type=int, help="how many recent checkpoints to keep")
    p.add_argument("--eval-every", type=int, help="steps between calls of --eval-hook")
    p.add_argument("--eval-hook", metavar="MODULE:FUNCTION", help="eval_hook(model, step) -> dict, logged")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "convert-official",
        help="convert the paper's released checkpoint (wrapper_75_new.pth) into an exifclip model",
        description="Read the official EXIF-as-Language checkpoint (full training checkpoint or the pruned "
        "photoholmes form) with torch.load(weights_only=True) and save it as a paper-resnet50 model "
        "(config.json, model.safetensors, tokenizer, model card) usable as --model OUT_DIR.",
    )
    p.add_argument("checkpoint", help="wrapper_75_new.pth or its pruned form")
    p.add_argument("out_dir", help="output model directory")
    p.add_argument(
        "--tokenizer",
        default="distilbert-base-uncased",
        help="Hub id, directory or vocab.txt of the text tokenizer; 'none' for the image side only "
        "(default: distilbert-base-uncased, from the local Hub cache when offline)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    p.set_defaults(func=_cmd_convert_official)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
