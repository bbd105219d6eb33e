"""``exifclip localize``: a splice heatmap, mask, overlay and score per image (resumable)."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json
import sys
import time
from pathlib import Path

from ._options import (
    SPLICE_MODEL,
    CommandError,
    add_decode_options,
    add_input_options,
    add_model_options,
    add_splice_options,
    cli_words,
    collect_inputs,
    decode_kwargs,
    error,
    error_for,
    pixel_count,
    make_localizer,
    pillow_limit_lifted,
    estimator_kwargs,
)
from ._output import output_failure, prepare_output_folder
from ._ray_engine import add_engine_options
from .report import add_report_options, write_report

NAME = "localize"

# The pictures a record can name (its keys); STEM.json, written after them, marks them complete.
OUTPUTS = ("heatmap", "mask", "overlay")

#: Longer side of the heatmap and overlay pictures unless ``--max-side`` says otherwise.
DEFAULT_MAX_SIDE = 2048


def _outputs(text: str) -> tuple[str, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(OUTPUTS)} (or none), got {text!r}"
        )
    return tuple(n for n in OUTPUTS if n in names)


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="splice heatmap, mask, overlay and score for each image")
    add_input_options(p)
    p.add_argument(
        "--out",
        required=True,
        help="output folder (created if missing): per image STEM_heatmap.png, STEM_mask.png, "
        "STEM_overlay.png (see --outputs) and STEM.json (written last: the image is done); results.jsonl: "
        "a record for every image given, in order, failed ones with their status and error",
    )
    p.add_argument(
        "--outputs",
        type=_outputs,
        default=OUTPUTS,
        metavar="LIST",
        help="pictures to write, comma-separated: heatmap, mask, overlay (default: all three), or none "
        "(scores and STEM.json only)",
    )
    p.add_argument(
        "--max-side",
        type=pixel_count("full resolution"),
        default=DEFAULT_MAX_SIDE,
        metavar="PX",
        help=f"longer side of the heatmap and overlay pictures, in pixels (default {DEFAULT_MAX_SIDE}: quick to "
        "write and view; 0: full resolution); the mask is always written at full resolution, exactly",
    )
    p.add_argument(
        "--format",
        choices=["jsonl", "parquet"],
        default="jsonl",
        help="parquet: also write OUT/results.parquet, a row per image (source, status, error, every detection "
        "score, mask fraction, grid, timings, picture paths), for pandas, polars or DuckDB (needs pyarrow: pip "
        "install 'exifclip[parquet]'); results.jsonl is always written",
    )
    add_engine_options(p)
    add_model_options(p, default_model=SPLICE_MODEL)
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
    p.add_argument(
        "--report",
        action="store_true",
        help="also write OUT/report.html: the offline triage page of the results (see exifclip report)",
    )
    add_report_options(p)
    p.set_defaults(func=run)
    return p


def _verdict(result, alarm_rate: float) -> str:
    """One line a person can act on; the mask is a finding only when the photo is flagged."""
    if result.flagged is None:
        return "no calibration for these settings: read the score by comparison only"
    if result.flagged:
        return f"flagged: at most {alarm_rate:.0%} of authentic photos of unseen cameras score this high"
    return f"nothing found at a {alarm_rate:.0%} false-alarm rate (the mask is shown for inspection only)"


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
    # only when given: results of earlier versions stay resumable
    if args.dtype is not None:
        settings["dtype"] = args.dtype
    if getattr(args, "max_side", DEFAULT_MAX_SIDE) != DEFAULT_MAX_SIDE:
        settings["max_side"] = args.max_side
    if args.fast:
        settings["mode"] = "fast"
    if getattr(args, "runtime", "torch") != "torch":
        settings["runtime"] = args.runtime
    if args.alarm_rate != 0.05:
        settings["alarm_rate"] = args.alarm_rate
    return settings


def _decode(path: str, args: argparse.Namespace):
    """The image, and what its decoding said (in the record and, once per line, on stderr)."""
    import warnings

    from ..io import TruncatedImageWarning, load_image

    with warnings.catch_warnings(record=True) as caught:
        image = load_image(path, **decode_kwargs(args))
    for w in caught:  # shown by the command's warning printer, one line each
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes = list(dict.fromkeys(" ".join(cli_words(str(w.message)).split()) for w in caught))
    truncated = any(issubclass(w.category, TruncatedImageWarning) for w in caught)
    return image, notes, truncated


def write_pictures(image, result, out: Path, stem: str, args: argparse.Namespace, orientation: int = 1,
                   ) -> dict[str, str]:
    """Write the pictures ``args.outputs`` asks for; returns kind -> path.

    The heatmap and overlay are pictures for people: turned upright as the
    photo's EXIF ``orientation`` says. The mask is data: as stored, pixel for
    pixel with the analysed image.

    Raises
    ------
    CommandError
        A picture could not be written (naming it): the command stops.
    """
    from ..viz import save_heatmap, save_mask, save_overlay

    side = args.max_side or None
    writers = {
        "heatmap": lambda p: save_heatmap(p, result.heatmap, vmax=args.vmax, max_side=side, orientation=orientation),
        "mask": lambda p: save_mask(p, result.mask),
        "overlay": lambda p: save_overlay(p, image, result.heatmap, result.mask, vmax=args.vmax, max_side=side,
                                          orientation=orientation),
    }
    files = {}
    for kind in args.outputs:
        target = out / f"{stem}_{kind}.png"
        try:
            files[kind] = str(writers[kind](target))
        except OSError as exc:
            raise output_failure(target, exc) from None
    return files


def localize_one(localizer, path: str, stem: str, out: Path, args: argparse.Namespace, settings: dict,
                 consistency=None) -> dict:
    """Localise one image and write its pictures, then its marker; returns the record.

    ``consistency``: a fitted ExifConsistencyScorer; its percentiles go into the record.
    """
    from .._atomic import atomic_write
    from ..report.results import provenance
    from ..report.thumbnails import orientation_of
    from ..viz import reduction
    from ._resume import source_key

    start = time.perf_counter()
    image, notes, truncated = _decode(path, args)
    decoded = time.perf_counter()
    result = localizer.localize([image])[0]
    if result is None:
        raise ValueError(localizer.failures_[0].reason)
    analysed = time.perf_counter()
    orientation = orientation_of(path)
    files = write_pictures(image, result, out, stem, args, orientation)
    factor = reduction(result.heatmap.shape, args.max_side or None)
    grid = result.grid
    record = {
        "file": str(path),
        "abspath": source_key(path),
        "status": "ok",
        "score": result.score,
        "score_method": localizer.score_method_,
        "scores": {k: float(v) for k, v in result.scores.items()},
        "false_alarm_rate": result.false_alarm_rate,
        "flagged": result.flagged,
        "verdict": _verdict(result, args.alarm_rate),
        "display_orientation": orientation,
        "spliced_fraction": float(result.mask.mean()),
        "heatmap_max": float(result.heatmap.max()),
        "heatmap_scale": [0.0, args.vmax],
        **files,
        "picture_size": [-(-image.shape[1] // factor), -(-image.shape[0] // factor)],
        "truncated": truncated,
        "warnings": notes,
        "grid": {"patch_size": grid.patch_size, "stride": grid.stride, "rows": grid.n_rows, "cols": grid.n_cols},
        "timings": {
            "decode_s": round(decoded - start, 4),
            **{k: round(v, 4) for k, v in result.timings.items()},
            "write_s": round(time.perf_counter() - analysed, 4),
            "total_s": round(time.perf_counter() - start, 4),  # all but writing this marker
        },
        "model": str(args.model),
        "settings": settings,
        **provenance(path),  # the input's SHA-256 and exifclip's version: the chain of custody
    }
    if consistency is not None:
        from ..report.items import consistency_percentiles

        record["exif_consistency"] = consistency_percentiles(consistency, path)
    marker = out / f"{stem}.json"
    try:
        with atomic_write(marker, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    except OSError as exc:
        raise output_failure(marker, exc) from None
    return record


def _failed_record(path: str, message: str) -> dict:
    from ._resume import source_key

    return {"file": str(path), "abspath": source_key(path), "status": "failed", "error": message}


def _write_log(out: Path, images: list[str], records: list) -> CommandError | None:
    """results.jsonl: a record for every image given (``"not done"`` where the run stopped first)."""
    from .._atomic import atomic_write
    from ._resume import source_key

    target = out / "results.jsonl"
    try:
        with atomic_write(target, "w") as log:
            for path, record in zip(images, records):
                if record is None:
                    record = {"file": str(path), "abspath": source_key(path), "status": "not done"}
                log.write(json.dumps(record) + "\n")
    except OSError as exc:
        return output_failure(target, exc)
    return None


def _require_pyarrow() -> None:
    from ..columnar import require_pyarrow

    try:
        require_pyarrow()
    except ImportError as exc:
        raise CommandError(f"--format parquet: {exc}") from None


def _write_table(out: Path, images: list[str], records: list, args: argparse.Namespace,
                 settings: dict) -> CommandError | None:
    """results.parquet with ``--format parquet``: the rows of results.jsonl as a table."""
    if getattr(args, "format", "jsonl") != "parquet":
        return None
    from ..columnar import localize_table, write_table
    from ..splice.postprocessing import DETECTION_SCORES
    from ._resume import source_key

    rows = [r if r is not None else {"file": str(p), "abspath": source_key(p), "status": "not done"}
            for p, r in zip(images, records)]
    target = out / "results.parquet"
    try:
        write_table(localize_table(rows, sorted(DETECTION_SCORES), settings), target)
    except OSError as exc:
        return output_failure(target, exc)
    return None


def run(args: argparse.Namespace) -> int:
    from .._atomic import remove_stale_parts
    from ._resume import assign_stems

    found = collect_inputs(args)  # before the model is loaded: a mistake there costs nothing
    if getattr(args, "format", "jsonl") == "parquet":
        _require_pyarrow()
    out = prepare_output_folder(args.out)
    if getattr(args, "engine", "local") == "ray":
        from ._ray_engine import run_ray

        with pillow_limit_lifted():
            return run_ray(args, found.paths, out, settings_of(args))
    with pillow_limit_lifted():
        localizer = make_localizer(args).fit()
        consistency = _consistency_scorer(args)
        remove_stale_parts(out)  # temporaries of a killed run
        images = found.paths
        stems = assign_stems(images, out)
        settings = settings_of(args)
        records: list[dict | None] = [None] * len(images)
        counts = {"done": 0, "skipped": 0, "failed": 0}
        interrupted, stop = False, None
        try:
            _localize_all(localizer, images, stems, out, args, settings, records, counts, consistency)
        except KeyboardInterrupt:
            interrupted = True
        except CommandError as exc:  # an output could not be written
            stop = exc
        except BaseException:
            _write_log(out, images, records)
            raise
    log_problem = _write_log(out, images, records) or _write_table(out, images, records, args, settings)
    if stop is not None:
        if log_problem is not None:
            error(str(log_problem))
        raise stop
    if log_problem is not None:
        raise log_problem
    done, skipped, failed = counts["done"], counts["skipped"], counts["failed"]
    summary = f"{done} localized, {skipped} skipped (already done), {failed} failed"
    if found.skipped:
        summary += f" ({len(found.skipped)} files in folders skipped: not images)"
    if interrupted:
        left = len(images) - done - skipped - failed
        raise CommandError(
            f"interrupted: {summary}, {left} not finished, of {len(images)} images in {out}; "
            "rerun with --resume to finish",
            130,
        )
    print(f"exifclip: localize: {summary}, of {len(images)} images in {out}", file=sys.stderr)
    if getattr(args, "report", False):
        write_report(out, None, args)
    return 1 if failed else 0


def _consistency_scorer(args: argparse.Namespace):
    """An ExifConsistencyScorer with the localizer's model and grid when --exif-consistency asks for one."""
    if not getattr(args, "exif_consistency", False):
        return None
    from ..exif_consistency import ExifConsistencyScorer

    return ExifConsistencyScorer(**estimator_kwargs(args), errors="skip").fit()


def _localize_all(localizer, images, stems, out, args, settings, records, counts, consistency=None) -> None:
    """Fill ``records`` in input order; a failed image is reported and recorded, the others go on."""
    from ._resume import completed_record

    for i, (path, stem) in enumerate(zip(images, stems)):
        if args.resume:
            records[i] = completed_record(out, stem, path, settings, args.outputs)
            if records[i] is not None:
                records[i].setdefault("status", "ok")
                counts["skipped"] += 1
                continue
        try:
            records[i] = localize_one(localizer, path, stem, out, args, settings, consistency)
        except (ValueError, OSError) as exc:  # the input's fault (ImageLoadError is a ValueError)
            message = str(exc) if str(exc).startswith(f"{path}:") else f"{path}: {exc}"
            error_for(path, exc)
            records[i] = _failed_record(path, cli_words(message))
            counts["failed"] += 1
            continue
        counts["done"] += 1
        print(json.dumps(records[i]), flush=True)
