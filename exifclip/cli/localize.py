"""``exifclip localize``: a splice heatmap, mask, overlay and score per image (resumable)."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json
import sys
from pathlib import Path

from ._options import (
    CommandError,
    add_decode_options,
    add_model_options,
    add_splice_options,
    decode_kwargs,
    error_for,
    make_localizer,
)

NAME = "localize"

# The keys of a localize record that name its pictures; STEM.json, written after them, marks them complete.
OUTPUTS = ("heatmap", "mask", "overlay")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="splice heatmap, mask, overlay and score for each image")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: per image STEM_heatmap.png, STEM_mask.png, "
        "STEM_overlay.png and STEM.json (written last: the image is done); results.jsonl: the "
        "records of all the images given, in order",
    )
    add_model_options(p)
    add_splice_options(p)
    add_decode_options(p)
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
    p.set_defaults(func=run)
    return p


def settings_of(args: argparse.Namespace) -> dict:
    """What a localize result depends on: a resumed image must have been made with the same."""
    settings = {
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
    if args.dtype is not None:  # only when given: results of earlier versions stay resumable
        settings["dtype"] = args.dtype
    if args.fast:
        settings["mode"] = "fast"
    return settings


def localize_one(localizer, path: str, stem: str, out: Path, args: argparse.Namespace, settings: dict) -> dict:
    """Localise one image and write its pictures, then its marker; returns the record."""
    import time

    from .._atomic import atomic_write
    from ..io import load_image
    from ..viz import colorize, mask_image, overlay, save_png
    from ._resume import source_key

    start = time.perf_counter()
    image = load_image(path, **decode_kwargs(args))  # decoded once: localised and drawn
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


def run(args: argparse.Namespace) -> int:
    from .._atomic import atomic_write, remove_stale_parts
    from ._resume import assign_stems, completed_record

    localizer = make_localizer(args).fit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out)  # temporaries of a killed run
    images = [str(p) for p in args.images]
    stems = assign_stems(images, out)
    settings = settings_of(args)
    records: list[dict | None] = [None] * len(images)
    done = skipped = failed = 0
    interrupted = False
    try:
        for i, (path, stem) in enumerate(zip(images, stems)):
            if args.resume:
                records[i] = completed_record(out, stem, path, settings, OUTPUTS)
                if records[i] is not None:
                    skipped += 1
                    continue
            try:
                records[i] = localize_one(localizer, path, stem, out, args, settings)
            except (ValueError, OSError) as exc:  # ImageLoadError is a ValueError
                error_for(path, exc)
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
    summary = f"{done} localized, {skipped} skipped (already done), {failed} failed"
    if interrupted:
        left = len(images) - done - skipped - failed
        raise CommandError(
            f"interrupted: {summary}, {left} not finished, of {len(images)} images in {out}; "
            "rerun with --resume to finish",
            130,
        )
    print(f"exifclip: localize: {summary}, of {len(images)} images in {out}", file=sys.stderr)
    return 1 if failed else 0
