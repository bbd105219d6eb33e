"""``exifclip shard``: photos and their EXIF into WebDataset tar shards, for training at scale."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json
import os

from ._options import CommandError, add_input_options, collect_inputs, error_for, pillow_limit_lifted

NAME = "shard"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="pack photos and their EXIF into WebDataset tar shards")
    add_input_options(p)
    p.add_argument("--out", required=True,
                   help="a folder (shards photos-000000.tar, ... in it) or a file pattern with one integer field, "
                   "e.g. shards/train-%%06d.tar")
    p.add_argument("--max-count", type=int, default=1000, metavar="N", help="photos per shard at most (default 1000)")
    p.add_argument("--max-size", type=int, default=1024, metavar="MB",
                   help="close a shard once it holds this many megabytes (default 1024)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..shards import write_shards

    if args.max_count < 1 or args.max_size < 1:
        raise CommandError(f"--max-count and --max-size must be positive, got {args.max_count} and {args.max_size}")
    found = collect_inputs(args)
    pattern = args.out if "%" in args.out else os.path.join(args.out, "photos-%06d.tar")
    try:
        pattern % 0
    except TypeError:
        raise CommandError(f"--out {args.out}: a pattern needs one integer field such as %06d") from None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(pattern % 0)), exist_ok=True)
        with pillow_limit_lifted():  # no pixel is decoded
            summary = write_shards(found.paths, pattern, max_count=args.max_count, max_bytes=args.max_size << 20)
    except OSError as exc:
        raise CommandError(f"--out {args.out}: cannot write the shards ({exc.strerror or exc})") from None
    for path, reason in summary.failed:
        error_for(path, reason)
    print(json.dumps({"shards": summary.shards, "photos": summary.written, "failed": len(summary.failed),
                      "not_images": len(found.skipped)}))
    return 1 if summary.failed else 0
