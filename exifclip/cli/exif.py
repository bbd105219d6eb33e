"""``exifclip exif``: the EXIF of images as the model's text."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json

from ._options import error_for, pillow_limit_lifted

NAME = "exif"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="print the EXIF of images as model text")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--json", action="store_true", help="one JSON object per line: file, exif dict, text")
    p.add_argument("--style", choices=["default", "paper"], default="default", help="value rules of the text")
    p.add_argument("--tags", help="comma-separated tag list and order (default: exifclip.exif.DEFAULT_TAGS)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..exif import exif_to_text, read_exif

    failed = 0
    tags = args.tags.split(",") if args.tags else None
    with pillow_limit_lifted():  # no pixel is decoded: Pillow's pixel limit has nothing to guard
        for path in args.images:
            try:
                exif = read_exif(path)  # its warnings: one line each, naming the file (see cli.main)
                text = exif_to_text(exif, tags=tags, style=args.style)
            except (ValueError, OSError, TypeError) as exc:
                error_for(path, exc)
                failed += 1
                continue
            if args.json:
                print(json.dumps({"file": str(path), "exif": exif, "text": text}, ensure_ascii=False), flush=True)
            else:
                print(f"{path}\t{text}", flush=True)
    return 1 if failed else 0
