"""What the commands share: the model, grid and decode options, and how failures are said.

Cheap to import (argparse only): the parser is built without the heavy stack;
the estimators are imported inside the functions that make them.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "CommandError",
    "add_decode_options",
    "add_input_options",
    "add_model_options",
    "add_splice_options",
    "cli_words",
    "collect_inputs",
    "decode_kwargs",
    "error",
    "error_for",
    "estimator_kwargs",
    "make_localizer",
    "pillow_limit_lifted",
    "pixel_count",
    "warnings_as_lines",
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


# The library's messages name its keyword arguments; on the command line the flags are meant.
_CLI_WORDS = (
    (re.compile(r"\bmax_pixels=None \(no limit\)"), "--max-pixels 0 (no limit)"),
    (re.compile(r"\bmax_pixels=None\b"), "--max-pixels 0"),
    (re.compile(r"\bmax_pixels=(\d+)"), r"--max-pixels \1"),
    (re.compile(r"\ballow_truncated=True\b"), "--allow-truncated"),
    (re.compile(r"set PIL\.Image\.MAX_IMAGE_PIXELS = None \(or a larger number\) in your program"),
     "pass --max-pixels 0 (no limit) or a larger number"),
)


def cli_words(message: str) -> str:
    """A library message in the words of the command line: flags, not keyword arguments.

    Examples
    --------
    >>> cli_words("a.jpg: truncated JPEG file; pass allow_truncated=True to decode the part that is there")
    'a.jpg: truncated JPEG file; pass --allow-truncated to decode the part that is there'
    >>> cli_words("over the limit of max_pixels=100; pass max_pixels=None (no limit) or a larger number")
    'over the limit of --max-pixels 100; pass --max-pixels 0 (no limit) or a larger number'
    """
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


def error(message: str) -> None:
    """Print ``exifclip: error: MESSAGE`` on stderr (one line, in the command line's words)."""
    print(f"exifclip: error: {' '.join(cli_words(str(message)).split())}", file=sys.stderr)


def error_for(source: object, problem: object) -> None:
    """One line for a failed input, starting with its name (once).

    Examples
    --------
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     error_for("x/a.jpg", "[Errno 13] Permission denied: 'x/a.jpg'")
    >>> err.getvalue().strip()
    "exifclip: error: x/a.jpg: [Errno 13] Permission denied: 'x/a.jpg'"
    """
    message = str(problem)
    error(message if message.startswith(f"{source}:") else f"{source}: {message}")


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show each warning as one line ``exifclip: warning: MESSAGE`` on stderr, each text once.

    exifclip's warnings name their file (a decoder's complaints included), so
    one line per file and kind of problem is what the user sees, without
    Python's source lines.
    """
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - the hook's signature
        text = " ".join(cli_words(str(message)).split())
        if text not in seen:
            seen.add(text)
            print(f"exifclip: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextmanager
def pillow_limit_lifted() -> Iterator[None]:
    """Lift Pillow's global pixel limit for the length of a command.

    On the command line ``--max-pixels`` is the one limit: exifclip checks it
    on the header before any pixel is decoded (``--max-pixels 0``: no limit),
    so Pillow's own, stricter-worded global (about 179 megapixels) is lifted
    here, and restored after: the process is the command's, not a library
    caller's.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """What to process: files, folders and glob patterns, ``--recursive``, ``--from-list``."""
    parser.add_argument("images", nargs="*", metavar="INPUT",
                        help="image files, folders (their image files; see --recursive) or glob patterns "
                        "('case/*.jpg', 'case/**/*.JPG'); in a folder, files that are not images are skipped and "
                        "counted")
    parser.add_argument("--recursive", "-r", action="store_true", help="also search the subfolders of folders")
    parser.add_argument("--from-list", action="append", default=[], metavar="FILE",
                        help="read more inputs from FILE: one path per line, or a CSV file with a 'path' column; "
                        "relative paths are relative to FILE's folder (may be repeated)")


def collect_inputs(args: argparse.Namespace):
    """The images the options name, as an :class:`exifclip.sources.Collection`.

    Raises
    ------
    CommandError
        Status 2, before any work: no input at all, a pattern that matches
        nothing, a list file that cannot be read.
    """
    from ..sources import collect_images  # no heavy imports

    if not args.images and not args.from_list:
        raise CommandError("no input: name image files, folders or patterns, or --from-list FILE")
    try:
        found = collect_images(args.images, recursive=args.recursive, lists=args.from_list)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not found.paths:
        raise CommandError(f"no image files found ({len(found.skipped)} other files skipped; images end in "
                           f"{', '.join(_image_extensions())})")
    return found


def _image_extensions() -> tuple[str, ...]:
    from ..io import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


#: The default ``--model`` of the splice commands (``localize``, ``evaluate``), as ``SpliceLocalizer``'s.
SPLICE_MODEL = "exifclip-small-s16"
#: The default ``--model`` of the other commands, as ``ExifPatchEmbedder``'s.
EMBEDDING_MODEL = "exifclip-small"


def add_model_options(parser: argparse.ArgumentParser, default_model: str = EMBEDDING_MODEL) -> None:
    """The model, its patch grid and where it runs: ``--model`` ... ``--device``, ``--dtype``."""
    parser.add_argument("--model", default=default_model, help=f"packaged name, directory or Hub id "
                        f"(default: {default_model})")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--patch-size", type=int, help="patch side in pixels (default: the model's)")
    parser.add_argument("--num-per-dim", type=int, default=30, help="patches along the longer side")
    parser.add_argument("--stride", type=int, help="explicit patch stride in pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="patches per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", help="weights dtype: float32 (default), bfloat16 or float16")
    parser.add_argument("--runtime", choices=["torch", "onnxruntime"], default="torch",
                        help="what runs the image tower: torch (default), or onnxruntime on the CPU (pip install "
                        "'exifclip[onnx]'): the same embeddings to ~1e-6, the tower 1.45-2.5x faster here; graphs "
                        "are exported once per model into ~/.cache/exifclip/onnx")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: the network runs once over the whole photo and each patch's embedding is "
                        "pooled from it, instead of every patch through the network (see the docs for how the "
                        "results differ)")


def add_decode_options(parser: argparse.ArgumentParser) -> None:
    """How images are decoded: ``--allow-truncated``, ``--max-pixels``."""
    parser.add_argument("--allow-truncated", action="store_true",
                        help="decode truncated JPEGs (missing rows filled flat, with a warning) instead of failing "
                        "them")
    parser.add_argument("--max-pixels", type=pixel_count("no limit"), default=None, metavar="N",
                        help="refuse images of more than N pixels, before decoding them (a guard against "
                        "decompression bombs; default: about 179 megapixels; 0: no limit, for files you trust)")


def pixel_count(zero_means: str):
    """An argparse ``type``: a whole number of pixels, 0 meaning ``zero_means``, never negative.

    Examples
    --------
    >>> pixel_count("no limit")("0")
    0
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 ({zero_means}) or a positive number of pixels, got {value}")
        return value

    return parse


def add_splice_options(parser: argparse.ArgumentParser) -> None:
    """How the localiser turns patch embeddings into a mask and a score."""
    from ..splice.postprocessing import DETECTION_SCORES, MASK_METHODS  # numpy only

    parser.add_argument("--method", choices=list(MASK_METHODS), default="meanshift", help="how the mask is made")
    parser.add_argument("--threshold", type=float, help="heatmap threshold for the mask (default: per image)")
    parser.add_argument("--score-method", choices=["auto", *sorted(DETECTION_SCORES)], default="auto",
                        help="detection score ('mean' is the paper's; 'auto': the one the model's score calibration "
                        "was made with, else 'mean')")
    parser.add_argument("--alarm-rate", type=float, default=0.05,
                        help="flag a photo when at most this share of authentic photos of unseen cameras score as "
                        "high (needs the model's score calibration; default 0.05)")


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
        "runtime": getattr(args, "runtime", "torch"),
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
        alarm_rate=args.alarm_rate,
        errors="skip",
    )
