"""One entry of a report per image: its record, pictures, metadata checks and provenance.

Everything an entry holds that came from the input (file names, EXIF values,
error messages) is plain data: the page writes it with ``textContent``,
never as HTML. Links are relative to the page and start with ``./`` or
``../``, percent-encoded, so a file name can never become a ``javascript:``
or other URL scheme.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePath
from urllib.parse import quote

from ..exif import exif_to_text, read_exif
from .red_flags import metadata_checks
from .results import file_sha256, reproduce_command
from .thumbnails import data_uri, orientation_of, overlay_picture, photo_picture

__all__ = ["relative_link", "report_item"]

_COPIED = ("status", "score", "scores", "score_method", "false_alarm_rate", "flagged", "verdict", "spliced_fraction",
           "heatmap_max", "heatmap_scale", "picture_size", "truncated", "warnings", "grid", "timings", "model",
           "settings", "sha256", "exifclip_version", "error")


_PREVIEW_NAMES = {"preview": "photo", "preview_overlay": "overlay"}


def relative_link(target: str | os.PathLike, page: str | os.PathLike) -> str:
    """A percent-encoded link to ``target`` relative to the folder of the page ``page``.

    Always starts with ``./`` or ``../``: never read as a URL scheme.

    Examples
    --------
    >>> relative_link("/cases/a/out/x y.png", "/cases/a/out/report.html")
    './x%20y.png'
    >>> relative_link("/cases/javascript:alert(1).jpg", "/cases/a/report.html")
    '../javascript%3Aalert%281%29.jpg'
    """
    rel = PurePath(os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(page)))).as_posix()
    link = quote(rel, safe="/")
    return link if link.startswith("../") else f"./{link}"


def _exif(path: str) -> tuple[dict, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tags = read_exif(path)
    return tags, exif_to_text(tags)


def report_item(index: int, record: Mapping, page: Path, files_dir: Path | None, *, out_dir: str,
                thumb_side: int = 160, preview_side: int = 768, camera_tables: Mapping | None = None,
                consistency=None) -> dict:
    """The report's entry for one record of ``results.jsonl``.

    Reads the input file (when it is still there) for its SHA-256 now, its
    orientation, its EXIF text and the metadata red flags; makes the upright
    thumbnails (embedded as ``data:`` URIs) and, when ``files_dir`` is given,
    upright previews written there as JPEG files.

    Parameters
    ----------
    index : int
        The record's position (names the preview files).
    record : mapping
        A record from :func:`~exifclip.report.results.load_records`.
    page : Path
        Where the page will be written (links are relative to it).
    files_dir : Path or None
        Folder for the previews; None: no previews.
    out_dir : str
        The ``--out`` folder to name in the command that reproduces the result.
    thumb_side, preview_side : int
        Longer sides of the thumbnails and previews, in pixels.
    camera_tables : mapping, optional
        Passed to :func:`~exifclip.report.red_flags.metadata_checks`.
    consistency : ExifConsistencyScorer, optional
        A fitted scorer: adds ``exif_consistency``, the percentile of the
        claimed EXIF per tag group (None where it cannot be computed).

    Returns
    -------
    dict
        JSON-ready.

    Examples
    --------
    >>> item = report_item(0, {"file": "/no/such.jpg", "status": "failed", "error": "/no/such.jpg: file not found"},
    ...                    Path("/tmp/report.html"), None, out_dir="out")
    >>> item["name"], item["status"], item["available"], item["thumb"]
    ('such.jpg', 'failed', False, None)
    """
    path = str(record["file"])
    item = {"id": index, "name": PurePath(path).name or path, "file": path}
    item.update({k: record[k] for k in _COPIED if k in record})
    item["command"] = reproduce_command(record, out_dir)
    item["links"] = [[kind, relative_link(record[kind], page)] for kind in ("overlay", "heatmap", "mask")
                     if record.get(kind)]
    item["sha256_now"] = file_sha256(path) if os.path.isfile(path) else None
    item["available"] = item["sha256_now"] is not None
    item.update(thumb=None, thumb_overlay=None, preview=None, preview_overlay=None, checks=[], flags=0)
    if not item["available"]:
        return item
    item["links"].insert(0, ["original", relative_link(path, page)])
    try:
        item["exif_tags"], item["exif_text"] = _exif(path)
        item["checks"] = [c.to_dict() for c in metadata_checks(path, camera_tables)]
        item["orientation"] = orientation_of(path)
        _pictures(item, record, path, index, files_dir, page, thumb_side, preview_side)
        if record.get("exif_consistency") is not None:  # computed by localize --exif-consistency
            item["exif_consistency"] = record["exif_consistency"]
        elif consistency is not None and item["exif_tags"]:
            item["exif_consistency"] = consistency_percentiles(consistency, path, item["exif_tags"])
    except (ValueError, OSError) as exc:  # the input cannot be decoded now: say so, keep the record
        item["problem"] = f"{path}: cannot read for the report ({exc})"
    item["flags"] = sum(c["status"] == "flag" for c in item["checks"])
    return item


def consistency_percentiles(scorer, path: str, exif: dict | None = None) -> dict[str, float | None]:
    """A fitted ExifConsistencyScorer's percentile per tag group for one photo (None where it has no value).

    ``exif``: the photo's tags, read from the file when not given.
    """
    import math

    from ..exif import read_exif

    if exif is None:
        exif = read_exif(path)
    row = scorer.transform([path], exif=[exif])[0]
    return {group: None if math.isnan(v) else round(float(v), 4) for group, v in zip(scorer.groups, row)}


def _pictures(item: dict, record: Mapping, path: str, index: int, files_dir: Path | None, page: Path,
              thumb_side: int, preview_side: int) -> None:
    """Fill the thumbnails (data URIs) and previews (files, relative links) of ``item``."""
    orientation = item["orientation"]
    side = max(thumb_side, preview_side if files_dir is not None else 0)
    photo = photo_picture(path, side, orientation)
    # Pictures written with a display_orientation are upright already (older runs wrote them as stored).
    written_as = 1 if record.get("display_orientation") is not None else orientation
    overlay = overlay_picture(record.get("overlay"), record.get("heatmap"), photo, written_as, side)
    for key, picture in (("thumb", photo), ("thumb_overlay", overlay)):
        if picture is not None:
            small = picture.copy()
            small.thumbnail((thumb_side, thumb_side))
            item[key] = data_uri(small)
            item["thumb_size"] = list(small.size)
    if files_dir is None:
        return
    files_dir.mkdir(parents=True, exist_ok=True)
    for key, picture in (("preview", photo), ("preview_overlay", overlay)):
        if picture is None:
            continue
        target = files_dir / f"{index:05d}_{_PREVIEW_NAMES[key]}.jpg"
        picture.save(target, "JPEG", quality=82)
        item[key] = relative_link(target, page)
        item["preview_size"] = list(picture.size)
