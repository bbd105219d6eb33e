"""``exifclip localize --engine ray``: the same results, computed by a Ray cluster's actors.

The driver (this process) lists the images, hands the ones not yet done to
:func:`exifclip.ray.localize_dataset`, and writes the rows as they come
back, a shard at a time, into ``OUT/ray-results/part-*.parquet`` (each shard
written whole, atomically). A run that is killed keeps its finished shards;
``--resume`` skips the images whose rows say ``ok`` under the same
settings, and retries failed ones. At the end ``OUT/results.parquet`` and
``OUT/results.jsonl`` hold one row per image given, in input order. The
pictures ``--outputs`` asks for are written by the actors into ``OUT``, as
the local engine draws them (``--max-side``, upright heatmap and overlay).

Cheap to import: Ray and pyarrow are imported when the engine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from ._options import CommandError

__all__ = ["add_engine_options", "run_ray"]

PARTS = "ray-results"


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address``, ``--num-workers``, ``--gpus-per-worker``, ``--images-per-batch``."""
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local (default): this process; ray: the actors of a Ray cluster (pip install "
                        "'exifclip[ray]'), each loading the model once; results in OUT/results.parquet")
    parser.add_argument("--address", help="Ray cluster to join (default: a local Ray instance, or RAY_ADDRESS)")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="Ray actors (default 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F",
                        help="GPUs per Ray actor (default 0: CPU; 0.5: two actors share a GPU)")
    parser.add_argument("--images-per-batch", type=int, default=16, metavar="N",
                        help="images handed to a Ray actor at a time; also the rows per result shard (default 16)")


def _done(parts: Path, settings: dict) -> set[str]:
    """Keys of the images with an ``ok`` row in the shards of ``parts`` made with ``settings``."""
    import pyarrow.parquet as pq

    from ..columnar import read_settings

    done: set[str] = set()
    for shard in sorted(parts.glob("part-*.parquet")):
        if read_settings(shard) != settings:
            continue
        try:
            table = pq.read_table(shard, columns=["key", "status"])
        except (OSError, ValueError):
            continue
        done.update(k for k, s in zip(table.column("key").to_pylist(), table.column("status").to_pylist())
                    if s == "ok")
    return done


def _localizer_params(args: argparse.Namespace) -> dict:
    from ._options import estimator_kwargs

    return {**estimator_kwargs(args), "method": args.method, "threshold": args.threshold,
            "score_method": args.score_method, "alarm_rate": args.alarm_rate}


def _start(args: argparse.Namespace):
    try:
        from ..ray import require_ray

        ray = require_ray()
        import pyarrow  # noqa: F401 - the shards
    except ImportError as exc:
        raise CommandError(f"--engine ray: {exc}") from None
    if args.num_workers < 1 or args.images_per_batch < 1 or args.gpus_per_worker < 0:
        raise CommandError("--num-workers and --images-per-batch must be positive, --gpus-per-worker not negative")
    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    return ray


def _consolidate(out: Path, images: list[str], settings: dict) -> dict[str, int]:
    """results.parquet and results.jsonl: one row per image given, in order; counts by status."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .._atomic import atomic_write
    from ..columnar import read_settings, write_table
    from ..ray import image_key, localize_schema

    latest: dict[str, dict] = {}
    for shard in sorted((out / PARTS).glob("part-*.parquet"), key=os.path.getmtime):
        if read_settings(shard) == settings:
            for row in pq.read_table(shard).to_pylist():
                if row["status"] == "ok" or latest.get(row["key"], {}).get("status") != "ok":
                    latest[row["key"]] = row
    rows = []
    for path in images:
        key = image_key(path, None)
        rows.append(latest.get(key) or {"source": path, "key": key, "status": "not done"})
    schema = localize_schema()
    table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
    write_table(table.replace_schema_metadata({b"exifclip.settings": json.dumps(settings, sort_keys=True)}),
                out / "results.parquet")
    with atomic_write(out / "results.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps({"file": row["source"], **row}) + "\n")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def run_ray(args: argparse.Namespace, images: list[str], out: Path, settings: dict) -> int:
    """Localise ``images`` on Ray into ``out``; the exit status (1 when an image failed)."""
    from .._atomic import atomic_write
    from ..ray import image_key, localize_dataset

    ray = _start(args)
    settings = {**settings, "engine": "ray"}
    parts = out / PARTS
    if not args.resume and parts.is_dir():
        for old in parts.glob("part-*.parquet"):
            old.unlink()
    parts.mkdir(exist_ok=True)
    done = _done(parts, settings) if args.resume else set()
    pending = list(dict.fromkeys(p for p in images if image_key(p, None) not in done))
    pictures = tuple(k for k in ("mask", "heatmap", "overlay") if k in args.outputs)
    try:
        if pending:
            ds = ray.data.from_items([{"path": p} for p in pending])
            rows = localize_dataset(ds, output=str(out), pictures=pictures, num_workers=args.num_workers,
                                    gpus_per_worker=args.gpus_per_worker, images_per_batch=args.images_per_batch,
                                    vmax=args.vmax, max_side=args.max_side or None, **_localizer_params(args))
            _write_shards(rows, parts, settings, args.images_per_batch, atomic_write)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted: the finished rows are in {parts}; rerun with --resume to finish", 130) \
            from None
    counts = _consolidate(out, images, settings)
    failed, skipped = counts.get("failed", 0), len(done & {image_key(p, None) for p in images})
    summary = f"{counts.get('ok', 0) - skipped} localized, {skipped} skipped (already done), {failed} failed"
    print(f"exifclip: localize: {summary}, of {len(images)} images in {out} (engine ray)", file=sys.stderr)
    return 1 if failed else 0


def _write_shards(rows, parts: Path, settings: dict, per_shard: int, atomic_write) -> None:
    """Write the rows as they stream back: a shard per batch, each whole or absent."""
    import pyarrow.parquet as pq

    metadata = {b"exifclip.settings": json.dumps(settings, sort_keys=True)}
    for batch in rows.iter_batches(batch_size=per_shard, batch_format="pyarrow"):
        for row in batch.to_pylist():
            if row["status"] == "failed":
                print(f"exifclip: error: {row['error']}", file=sys.stderr)
        with atomic_write(parts / f"part-{uuid.uuid4().hex}.parquet") as f:
            pq.write_table(batch.replace_schema_metadata(metadata), f)
