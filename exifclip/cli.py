"""The ``exifclip`` command line.

Every result is a file or JSON on stdout; every failure is one line on
stderr naming the file, and the other files are still processed. The exit
status is 0 when every input succeeded, 1 when some failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]


def _error(message: str) -> None:
    print(f"exifclip: error: {message}", file=sys.stderr)


def _atomic_save_npz(path: Path, **arrays) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    import warnings

    import numpy as np

    from .embedder import ExifPatchEmbedder, embed_patches
    from .hub import ModelNotFoundError

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
    )
    try:
        embedder.fit()
    except (ModelNotFoundError, ValueError) as exc:
        _error(str(exc))
        return 2
    failures: dict[int, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are reported below, one line each
        per_image = embed_patches(
            embedder.model_,
            list(args.images),
            patch_size=embedder.patch_size_,
            num_per_dim=args.num_per_dim,
            stride=args.stride,
            batch_size=args.batch_size,
            errors="skip",
            progress=args.progress,
            on_error=lambda i, exc: failures.__setitem__(i, str(exc)),
        )
    for i in sorted(failures):
        _error(failures[i])
    ok = [i for i, item in enumerate(per_image) if item is not None]
    arrays = {
        "files": np.asarray([str(args.images[i]) for i in ok]),
        "embeddings": np.stack([_mean_embedding(per_image[i].embeddings) for i in ok])
        if ok
        else np.empty((0, embedder.embedding_dim_), np.float32),
        "failed_files": np.asarray([str(args.images[i]) for i in sorted(failures)]),
        "model": np.asarray(str(args.model)),
        "patch_size": np.asarray(embedder.patch_size_),
    }
    if args.patches:
        for j, i in enumerate(ok):
            item = per_image[i]
            arrays[f"patches_{j}"] = item.embeddings
            arrays[f"positions_{j}"] = item.grid.positions()
    _atomic_save_npz(Path(args.out), **arrays)
    summary = {"out": str(args.out), "embedded": len(ok), "failed": len(failures),
               "dim": embedder.embedding_dim_, "model": str(args.model)}
    print(json.dumps(summary))
    return 1 if failures else 0


def _mean_embedding(embeddings):
    import numpy as np

    mean = embeddings.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


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
    p.set_defaults(func=_cmd_embed)
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
