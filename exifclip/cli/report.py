"""``exifclip report``: one offline HTML page for a folder of ``exifclip localize`` results."""

from __future__ import annotations

__all__ = ["NAME", "add_report_options", "register", "run", "write_report"]

import argparse
import sys
from pathlib import Path

from ._options import CommandError, pixel_count
from ._output import check_output_file

NAME = "report"


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The picture sizes of the page: ``--thumb-side``, ``--preview-side`` (shared with ``localize --report``)."""
    parser.add_argument("--thumb-side", type=int, default=160, metavar="PX",
                        help="longer side of the thumbnails embedded in the page, at least 16 (default 160)")
    parser.add_argument("--preview-side", type=pixel_count("no preview files"), default=768, metavar="PX",
                        help="longer side of the detail-view previews, written beside the page in FILE_files/ "
                        "(default 768; 0: none, the detail view shows the thumbnail)")
    parser.add_argument("--exif-consistency", action="store_true",
                        help="also score, per photo with EXIF, whether its pixels match the EXIF it claims (the "
                        "learned check, with the model of the results and its packaged EXIF pool; one embedding "
                        "per photo)")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="an HTML triage report of a localize results folder (works offline)")
    p.add_argument("results", help="the --out folder of exifclip localize (holding results.jsonl)")
    p.add_argument("--out", help="HTML file to write (default: RESULTS/report.html); previews go to FILE_files/ "
                   "beside it, linked relative to the page: zip the folder to share it")
    p.add_argument("--title", help="the page's title (default: the results folder's name)")
    p.add_argument("--device", default="auto", help="where --exif-consistency runs: auto, cpu, cuda, ...")
    add_report_options(p)
    p.set_defaults(func=run)
    return p


def write_report(results: str | Path, out: str | Path | None, args: argparse.Namespace) -> Path:
    """Build the page of ``results`` into ``out``; one progress line on stderr when it is done.

    Raises
    ------
    CommandError
        ``results`` is not a results folder, its records are unreadable, or
        the page cannot be written (naming the file).
    """
    from ..report import build_report

    if args.thumb_side < 16:
        raise CommandError(f"--thumb-side must be at least 16 pixels, got {args.thumb_side}")
    target = check_output_file(out if out is not None else Path(results) / "report.html")
    try:
        scorer = _scorer(results, args) if args.exif_consistency else None
        page = build_report(results, target, title=getattr(args, "title", None), thumb_side=args.thumb_side,
                            preview_side=args.preview_side, consistency=scorer)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{target}: cannot write the report ({exc.strerror or exc})") from None
    size = page.stat().st_size / 2**20
    print(f"exifclip: report: {page} ({size:.1f} MiB)", file=sys.stderr)
    return page


def _scorer(results: str | Path, args: argparse.Namespace):
    """An ExifConsistencyScorer with the model and grid the results were made with (their first record)."""
    from ..exif_consistency import ExifConsistencyScorer
    from ..report import load_records

    settings = next((r.get("settings") for r in load_records(results) if r.get("settings")), None)
    if not settings:
        raise CommandError(f"{results}: no analysed image records its settings; --exif-consistency needs the model")
    return ExifConsistencyScorer(
        model=settings["model"], revision=settings.get("revision"), patch_size=settings.get("patch_size"),
        num_per_dim=settings.get("num_per_dim", 30), stride=settings.get("stride"), dtype=settings.get("dtype"),
        mode=settings.get("mode", "exact"), device=getattr(args, "device", "auto"), errors="skip",
    ).fit()


def run(args: argparse.Namespace) -> int:
    if not Path(args.results).is_dir():
        raise CommandError(f"{args.results}: not a folder; give the --out folder of exifclip localize")
    write_report(args.results, args.out, args)
    return 0
