"""``exifclip embed``: image embeddings by camera traces, into one ``.npz`` (resumable)."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json

from ._options import (
    CommandError,
    add_decode_options,
    add_input_options,
    add_model_options,
    cli_words,
    collect_inputs,
    error,
    estimator_kwargs,
    pillow_limit_lifted,
)
from ._output import check_output_file, output_failure, prepare_output_folder

NAME = "embed"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="embed images by their camera traces into an .npz file")
    add_input_options(p)
    p.add_argument("--out", required=True, help="output .npz: files, embeddings (n, dim), failed_files and "
                   "failed_errors; not written when no image could be embedded. With --format parquet or jsonl: "
                   "a folder of shards part-NNNNN.parquet (one per --save-every images), _settings.json and "
                   "_failures.jsonl")
    p.add_argument("--format", choices=["npz", "parquet", "jsonl"], default="npz",
                   help="npz (default): one file; parquet: shards with the embedding as a fixed-size list "
                   "column, read by pandas, polars or DuckDB (needs pyarrow: pip install 'exifclip[parquet]'); "
                   "jsonl: the same rows as JSON lines")
    add_model_options(p)
    p.add_argument("--patches", action="store_true", help="also store every patch embedding and position")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    add_decode_options(p)
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
    p.set_defaults(func=run)
    return p


def _settings(args: argparse.Namespace, patch_size: int) -> dict:
    """What the embeddings depend on: only parts made with the same are reused."""
    settings = {
        "model": str(args.model),
        "revision": args.revision,
        "patch_size": patch_size,
        "num_per_dim": args.num_per_dim,
        "stride": args.stride,
        "patches": bool(args.patches),
    }
    if args.dtype is not None:  # only when given: runs of earlier versions stay resumable
        settings["dtype"] = args.dtype
    if args.fast:
        settings["mode"] = "fast"
    if getattr(args, "runtime", "torch") != "torch":
        settings["runtime"] = args.runtime
    return settings


def _embed_chunk(embedder, chunk: list[str], failed: dict[str, str], keep_patches: bool) -> dict:
    """Embed some images; returns source key -> item, records (and reports) the failures."""
    from ..batch import BatchErrors
    from ..modeling.embedding import pool_patch_embeddings
    from ._resume import source_key

    report = BatchErrors("skip")
    per_image = embedder.transform_patches(chunk, report=report)
    for failure in report.failures:
        message = cli_words(f"{failure.source}: {failure.reason}")  # the reason no longer names the file
        error(message)
        failed[chunk[failure.index]] = message
    items = {}
    for path, item in zip(chunk, per_image):
        if item is None:
            continue
        entry = {"file": path, "embedding": pool_patch_embeddings(item.embeddings)}
        if keep_patches:
            entry["patches"], entry["positions"], entry["grid"] = item.embeddings, item.grid.positions(), item.grid
        items[source_key(path)] = entry
    return items


def _embed_all(embedder, parts, pending: list[str], failed: dict, args: argparse.Namespace, resumed: int) -> int:
    """Embed ``pending`` in chunks of ``--save-every``, saving each; returns how many were embedded."""
    computed = 0
    try:
        for start in range(0, len(pending), args.save_every):
            items = _embed_chunk(embedder, pending[start : start + args.save_every], failed, args.patches)
            if items:
                try:
                    parts.save_part(items)
                except OSError as exc:
                    raise output_failure(parts.folder, exc) from None
                computed += len(items)
    except KeyboardInterrupt:
        raise CommandError(
            f"interrupted: {computed + resumed} of {len(pending) + resumed} images are saved in "
            f"{parts.folder}; rerun with --resume to go on",
            130,
        ) from None
    return computed


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..embedder import ExifPatchEmbedder
    from ._resume import EmbedParts, EmbedShards, source_key

    if args.save_every < 1:
        raise CommandError(f"--save-every must be a positive number of images, got {args.save_every}")
    found = collect_inputs(args)  # before the model is loaded: a mistake there costs nothing
    sharded = args.format != "npz"
    if sharded:
        _require_pyarrow(args.format)
        out = prepare_output_folder(args.out)
    else:
        out = check_output_file(args.out)
    with pillow_limit_lifted():
        embedder = ExifPatchEmbedder(**estimator_kwargs(args), errors="skip", progress=args.progress).fit()
        settings = _settings(args, embedder.patch_size_)
        if sharded:
            parts = EmbedShards(out, settings, args.resume, args.format, embedder.embedding_dim_)
        else:
            parts = EmbedParts(out, settings, resume=args.resume)
        images = found.paths
        resumed = {source_key(p) for p in images} & set(parts.done)
        pending = list(dict.fromkeys(p for p in images if source_key(p) not in parts.done))  # unique, in order
        failed: dict[str, str] = {}
        computed = _embed_all(embedder, parts, pending, failed, args, len(resumed))
    failed_files = [p for p in images if p in failed]
    if sharded:
        try:
            embedded = parts.finish(images, {p: failed[p] for p in failed_files})
        except OSError as exc:
            raise output_failure(out, exc) from None
        return _summary(out, embedded, computed, len(resumed), found, failed_files, embedder, args)
    if not any(source_key(p) in parts.done for p in images):
        earlier = " (the file there is from an earlier run and was left as it was)" if out.exists() else ""
        raise CommandError(f"{out}: not written: none of the {len(images)} images could be embedded{earlier}", 1)
    extra = {
        "model": np.asarray(str(args.model)),
        "patch_size": np.asarray(embedder.patch_size_),
        "failed_errors": np.asarray([failed[p] for p in failed_files], dtype=str),
    }
    try:
        embedded = parts.finish(images, failed_files, embedder.embedding_dim_, extra)
    except OSError as exc:
        raise output_failure(out, exc) from None
    return _summary(out, embedded, computed, len(resumed), found, failed_files, embedder, args)


def _summary(out, embedded: int, computed: int, resumed: int, found, failed_files: list, embedder, args) -> int:
    """Print the run's summary as one JSON line; the exit status (1 when an image failed)."""
    summary = {
        "out": str(out),
        "embedded": embedded,
        "computed": computed,
        "skipped": resumed,
        "not_images": len(found.skipped),
        "failed": len(failed_files),
        "dim": embedder.embedding_dim_,
        "model": str(args.model),
    }
    print(json.dumps(summary))
    return 1 if failed_files else 0


def _require_pyarrow(format: str) -> None:
    """Stop before any work when the output format needs pyarrow and it is missing."""
    if format != "parquet":
        return
    from ..columnar import require_pyarrow

    try:
        require_pyarrow()
    except ImportError as exc:
        raise CommandError(f"--format parquet: {exc}") from None
