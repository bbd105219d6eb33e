"""What the commands share: the model, grid and decode options, and how failures are said.

Cheap to import (argparse only): the parser is built without the heavy stack;
the estimators are imported inside the functions that make them.
"""

from __future__ import annotations

import argparse
import sys

__all__ = [
    "CommandError",
    "add_decode_options",
    "add_model_options",
    "add_splice_options",
    "decode_kwargs",
    "error",
    "error_for",
    "estimator_kwargs",
    "make_localizer",
]


class CommandError(Exception):
    """A failure that ends the command: ``main`` prints it as one line and exits with ``status``.

    Examples
    --------
    >>> CommandError("--save-every must be positive").status
    2
    """

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def error(message: str) -> None:
    """Print ``exifclip: error: MESSAGE`` on stderr."""
    print(f"exifclip: error: {message}", file=sys.stderr)


def error_for(source: object, problem: object) -> None:
    """One line for a failed input, naming it once (messages that name the file are kept as they are)."""
    message = str(problem)
    error(message if str(source) in message else f"{source}: {message}")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model, its patch grid and where it runs: ``--model`` ... ``--device``, ``--dtype``."""
    parser.add_argument("--model", default="exifclip-small", help="packaged name, directory or Hub id")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--patch-size", type=int, help="patch side in pixels (default: the model's)")
    parser.add_argument("--num-per-dim", type=int, default=30, help="patches along the longer side")
    parser.add_argument("--stride", type=int, help="explicit patch stride in pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="patches per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", help="weights dtype: float32 (default), bfloat16 or float16")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: the network runs once over the whole photo and each patch's embedding is "
                        "pooled from it, instead of every patch through the network (see the docs for how the "
                        "results differ)")


def add_decode_options(parser: argparse.ArgumentParser) -> None:
    """How images are decoded: ``--allow-truncated``, ``--max-pixels``."""
    parser.add_argument("--allow-truncated", action="store_true",
                        help="decode truncated JPEGs (missing rows filled flat, with a warning) instead of failing "
                        "them")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images with more pixels, before decoding (default: about 179 megapixels; "
                        "0: no exifclip limit, Pillow's own still applies)")


def add_splice_options(parser: argparse.ArgumentParser) -> None:
    """How the localiser turns patch embeddings into a mask and a score."""
    from ..splice.postprocessing import DETECTION_SCORES, MASK_METHODS  # numpy only

    parser.add_argument("--method", choices=list(MASK_METHODS), default="meanshift", help="how the mask is made")
    parser.add_argument("--threshold", type=float, help="heatmap threshold for the mask (default: per image)")
    parser.add_argument("--score-method", choices=sorted(DETECTION_SCORES), default="mean",
                        help="detection score ('mean' is the paper's)")


def decode_kwargs(args: argparse.Namespace) -> dict:
    """``allow_truncated`` and ``max_pixels`` of :func:`exifclip.io.load_image` from the decode options.

    Examples
    --------
    >>> decode_kwargs(argparse.Namespace(allow_truncated=False, max_pixels=0))
    {'allow_truncated': False, 'max_pixels': None}
    """
    from ..io import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS if args.max_pixels is None else (None if args.max_pixels == 0 else args.max_pixels)
    return {"allow_truncated": bool(args.allow_truncated), "max_pixels": limit}


def estimator_kwargs(args: argparse.Namespace) -> dict:
    """The estimators' keyword arguments from the model and decode options.

    ``--max-pixels 0`` is ``max_pixels=None`` (no exifclip limit); not given,
    the package default.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_model_options(parser); add_decode_options(parser)
    >>> kwargs = estimator_kwargs(parser.parse_args(["--stride", "8", "--max-pixels", "0"]))
    >>> kwargs["stride"], kwargs["max_pixels"], kwargs["model"]
    (8, None, 'exifclip-small')
    """
    return {
        "model": args.model,
        "revision": args.revision,
        "patch_size": args.patch_size,
        "num_per_dim": args.num_per_dim,
        "stride": args.stride,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
        "mode": "fast" if args.fast else "exact",
        **decode_kwargs(args),
    }


def make_localizer(args: argparse.Namespace):
    """An unfitted :class:`~exifclip.splice.localizer.SpliceLocalizer` from the options.

    ``errors="skip"``: a failed image is ``None`` with its reason in
    ``failures_``; the commands report it.
    """
    from ..splice.localizer import SpliceLocalizer

    return SpliceLocalizer(
        **estimator_kwargs(args),
        method=args.method,
        threshold=args.threshold,
        score_method=args.score_method,
        errors="skip",
    )
