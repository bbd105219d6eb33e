"""The classical metadata red flags an analyst looks at first, as plain functions.

Each check takes a photo's EXIF (from :func:`exifclip.exif.read_exif`) or the
file itself and returns a :class:`MetadataCheck`: ``"flag"`` (a reason to
look closer), ``"pass"`` (nothing found) or ``"unknown"`` (the check could not
be made: no EXIF, no thumbnail, a camera whose tables are not known). None of
them is proof: metadata is written by whoever wrote the file, and every check
can be defeated by someone who knows it. They are cheap and complementary to
the pixel analysis: a photo flagged by both deserves attention first.

Checks:

- :func:`check_exif_present`: missing or stripped EXIF;
- :func:`check_software`: an editing program named in ``Software``;
- :func:`check_dates`: capture, digitisation and modification dates that disagree;
- :func:`check_thumbnail`: the embedded EXIF thumbnail does not show the main image;
- :func:`check_quantization`: JPEG quantisation tables unlike the claimed camera's.

:func:`metadata_checks` runs them all on one file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from ..exif import read_exif
from ..io import open_image, source_name
from .quantization import camera_key, known_camera_tables, read_quantization_tables, standard_quality

__all__ = [
    "EDITING_SOFTWARE",
    "MetadataCheck",
    "check_dates",
    "check_exif_present",
    "check_quantization",
    "check_software",
    "check_thumbnail",
    "embedded_thumbnail",
    "metadata_checks",
]


@dataclass(frozen=True)
class MetadataCheck:
    """The outcome of one red-flag check.

    Attributes
    ----------
    name : str
        Which check (``"software"``, ``"dates"``, ...).
    status : {"flag", "pass", "unknown"}
    detail : str
        What was found, in words, quoting the file's own values.
    """

    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """``{"name": ..., "status": ..., "detail": ...}`` (JSON-ready)."""
        return asdict(self)


#: Lower-case fragments of ``Software`` values written by editing or re-encoding programs.
EDITING_SOFTWARE = (
    "photoshop", "adobe", "lightroom", "gimp", "paint.net", "paintshop", "pixelmator", "affinity",
    "snapseed", "picasa", "acdsee", "corel", "darktable", "rawtherapee", "capture one", "luminar",
    "skylum", "photoscape", "canva", "instagram", "facebook", "vsco", "faststone", "irfanview", "xnview",
    "imagemagick", "graphicsmagick", "digikam", "shotwell", "fotor", "polarr", "meitu", "facetune", "dxo",
    "topaz", "iphoto", "aperture", "windows photo", "photo gallery", "gnu image", "krita", "photopea",
)

_CAPTURE_TAGS = ("Exposure Time", "F-Number", "ISO Speed Ratings", "Focal Length")
_DATE_TAGS = ("Date/Time Original", "Date/Time Digitized", "Date/Time")


def check_exif_present(exif: Mapping[str, str]) -> MetadataCheck:
    """Flag a photo without EXIF, without a camera, or stripped of its capture settings.

    Examples
    --------
    >>> check_exif_present({}).status
    'flag'
    >>> check_exif_present({"Make": "Canon", "Model": "EOS 70D", "Exposure Time": "1/60"}).status
    'pass'
    """
    if not exif:
        return MetadataCheck("exif", "flag", "no EXIF at all: stripped, or not written by a camera")
    if not camera_key(exif):
        return MetadataCheck("exif", "flag", f"EXIF without a camera model ({len(exif)} tags)")
    present = [t for t in _CAPTURE_TAGS if exif.get(t)]
    if not present:
        return MetadataCheck("exif", "flag", "EXIF names a camera but holds no capture settings "
                             "(exposure, aperture, ISO, focal length): partly stripped")
    return MetadataCheck("exif", "pass", f"{len(exif)} tags, camera and {len(present)} capture settings")


def check_software(exif: Mapping[str, str]) -> MetadataCheck:
    """Flag a ``Software`` value naming an editing or re-encoding program (see :data:`EDITING_SOFTWARE`).

    A camera writes its firmware version there (``"Ver.1.00"``, ``"15.0"``);
    an editor writes its own name.

    Examples
    --------
    >>> check_software({"Software": "Adobe Photoshop 24.0 (Windows)"}).status
    'flag'
    >>> check_software({"Software": "Ver.1.00"}).status
    'pass'
    >>> check_software({}).status
    'unknown'
    """
    value = " ".join(str(exif.get("Software", "")).split())
    if not value:
        return MetadataCheck("software", "unknown", "no Software tag")
    lowered = value.lower()
    hit = next((name for name in EDITING_SOFTWARE if name in lowered), None)
    if hit:
        return MetadataCheck("software", "flag", f"Software names an editing program: {value!r}")
    return MetadataCheck("software", "pass", f"Software {value!r} (firmware, not a known editor)")


def _parse_date(value: str) -> datetime | None:
    text = value.strip()[:19]
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def check_dates(exif: Mapping[str, str], tolerance_s: float = 2.0) -> MetadataCheck:
    """Flag dates that disagree: capture vs digitisation, or a file modified after it was taken.

    Parameters
    ----------
    exif : mapping
        Uses ``Date/Time Original`` (capture), ``Date/Time Digitized`` and
        ``Date/Time`` (the file's last change).
    tolerance_s : float, default 2.0
        Differences up to this many seconds are ignored (cameras write the
        three within a second or two of each other).

    Examples
    --------
    >>> same = "2021:04:08 14:53:27"
    >>> check_dates({"Date/Time Original": same, "Date/Time Digitized": same, "Date/Time": same}).status
    'pass'
    >>> check_dates({"Date/Time Original": same, "Date/Time": "2023:01:02 10:00:00"}).detail
    'Date/Time (2023:01:02 10:00:00) is 634 days after Date/Time Original (2021:04:08 14:53:27): changed after capture'
    """
    values = {t: str(exif[t]) for t in _DATE_TAGS if exif.get(t)}
    if not values:
        return MetadataCheck("dates", "unknown", "no dates in the EXIF")
    parsed = {t: _parse_date(v) for t, v in values.items()}
    bad = [t for t, d in parsed.items() if d is None]
    if bad:
        return MetadataCheck("dates", "flag", f"{bad[0]} is not a date: {values[bad[0]]!r}")
    problems = []
    for later, earlier in (("Date/Time Digitized", "Date/Time Original"), ("Date/Time", "Date/Time Original"),
                           ("Date/Time", "Date/Time Digitized")):
        if later in parsed and earlier in parsed:
            gap = (parsed[later] - parsed[earlier]).total_seconds()
            if abs(gap) > tolerance_s:
                problems.append(f"{later} ({values[later]}) is {_span(abs(gap))} "
                                f"{'after' if gap > 0 else 'before'} {earlier} ({values[earlier]})")
    if problems:
        verdict = "changed after capture" if problems[0].startswith("Date/Time (") else "they should agree"
        return MetadataCheck("dates", "flag", f"{problems[0]}: {verdict}")
    return MetadataCheck("dates", "pass", f"{len(values)} dates agree")


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s"


def embedded_thumbnail(source: Any, max_bytes: int = 1 << 20) -> Image.Image | None:
    """The JPEG thumbnail stored in the EXIF (IFD1) of ``source``, decoded; None when there is none.

    Bounded: a thumbnail claiming more than ``max_bytes`` or lying outside the
    EXIF block is ignored, and one that does not decode is None.

    Examples
    --------
    >>> embedded_thumbnail(Image.new("RGB", (8, 8))) is None
    True
    """
    image = open_image(source)
    try:
        raw = image.info.get("exif")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) < 14:
            return None
        exif = image.getexif()
        ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block means: no usable thumbnail
        return None
    finally:
        if image is not source:
            image.close()
    offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
    if not isinstance(offset, int) or not isinstance(length, int) or not 0 < length <= max_bytes:
        return None
    tiff = bytes(raw[6:]) if bytes(raw[:6]) == b"Exif\x00\x00" else bytes(raw)
    data = tiff[offset : offset + length]
    if len(data) != length or not data.startswith(b"\xff\xd8"):
        return None
    try:
        thumb = Image.open(io.BytesIO(data))
        thumb.load()
        return thumb.convert("L")
    except Exception:  # noqa: BLE001 - an undecodable thumbnail is no thumbnail
        return None


def _content_box(gray: np.ndarray, level: float = 12.0) -> tuple[int, int, int, int]:
    """Rows and columns of ``gray`` inside its black letterbox bars (cameras pad thumbnails)."""
    rows = np.flatnonzero(gray.max(axis=1) > level)
    cols = np.flatnonzero(gray.max(axis=0) > level)
    if rows.size == 0 or cols.size == 0:
        return 0, gray.shape[0], 0, gray.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _small_gray(image: Image.Image, size: int = 24) -> np.ndarray:
    values = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX), np.float32)
    return (values - values.mean()) / (values.std() + 1e-6)


def check_thumbnail(source: Any, min_correlation: float = 0.75) -> MetadataCheck:
    """Flag an EXIF thumbnail that does not show the main image (different framing or content).

    An editor that changes the pixels often leaves the camera's thumbnail as
    it was. The thumbnail (its black letterbox bars removed) and the main
    image are compared by aspect ratio and by the correlation of their
    24 x 24 grey versions.

    Parameters
    ----------
    source : path, bytes, file object or PIL.Image.Image
    min_correlation : float, default 0.75
        Below this correlation the content is said to differ.

    Examples
    --------
    >>> check_thumbnail(Image.new("RGB", (64, 48))).status
    'unknown'
    """
    thumb = embedded_thumbnail(source)
    if thumb is None:
        return MetadataCheck("thumbnail", "unknown", "no embedded EXIF thumbnail")
    top, bottom, left, right = _content_box(np.asarray(thumb, np.float32))
    thumb = thumb.crop((left, top, right, bottom))
    image = open_image(source)
    try:
        image.draft("L", (thumb.width * 4, thumb.height * 4))  # JPEG: decode at a fraction of the size
        main = image.convert("L")
    finally:
        if image is not source:
            image.close()
    ratio_main, ratio_thumb = main.width / main.height, thumb.width / thumb.height
    if abs(np.log(ratio_main / ratio_thumb)) > 0.06 and abs(np.log(ratio_main * ratio_thumb)) > 0.06:
        return MetadataCheck("thumbnail", "flag", f"the thumbnail's framing ({thumb.width}x{thumb.height}) is not "
                             f"the image's ({main.width}x{main.height}): cropped or replaced after capture")
    if abs(np.log(ratio_main / ratio_thumb)) > 0.06:  # a quarter turn: compare upright
        thumb = thumb.transpose(Image.Transpose.ROTATE_90)
    corr = float((_small_gray(main) * _small_gray(thumb)).mean())
    if corr < min_correlation:
        return MetadataCheck("thumbnail", "flag",
                             f"the thumbnail does not show the image (correlation {corr:.2f}): edited after capture")
    return MetadataCheck("thumbnail", "pass", f"the thumbnail shows the image (correlation {corr:.2f})")


def check_quantization(source: Any, exif: Mapping[str, str] | None = None,
                       camera_tables: Mapping[str, dict] | None = None) -> MetadataCheck:
    """Flag JPEG quantisation tables that are none of the claimed camera model's known tables.

    Parameters
    ----------
    source : path, bytes, file object or PIL.Image.Image
    exif : mapping, optional
        The photo's EXIF (read from ``source`` when not given).
    camera_tables : mapping, optional
        ``{camera_key: {"tables": [...], "photos": n}}``; default: the
        packaged tables (:func:`~exifclip.report.quantization.known_camera_tables`).

    Examples
    --------
    >>> import piexif
    >>> exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"One"}})
    >>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=75, exif=exif)
    >>> known = {"Acme|One": {"photos": 3, "tables": [[[1] * 64, [1] * 64]]}}
    >>> check_quantization(buf.getvalue(), camera_tables=known).detail
    "tables are none of the 1 known for 'Acme|One' (from 3 photos); they are libjpeg's standard tables at quality 75"
    """
    tables = read_quantization_tables(source)
    if tables is None:
        return MetadataCheck("quantization", "unknown", "not a JPEG: no quantisation tables")
    quality = standard_quality(tables)
    standard = f"libjpeg's standard tables at quality {quality}" if quality else "not libjpeg's standard tables"
    if exif is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = read_exif(source)
    key = camera_key(exif)
    known = (camera_tables if camera_tables is not None else known_camera_tables()).get(key) if key else None
    if not known:
        who = f"camera {key!r}" if key else "no camera model in the EXIF"
        return MetadataCheck("quantization", "unknown", f"{who}: its tables are not known; the file has {standard}")
    sets = [tuple(tuple(t) for t in s) for s in known["tables"]]
    if any(tables[: len(s)] == s for s in sets):
        return MetadataCheck("quantization", "pass", f"tables are among those seen for {key!r}")
    return MetadataCheck("quantization", "flag", f"tables are none of the {len(sets)} known for {key!r} (from "
                         f"{known.get('photos', '?')} photos); they are {standard}")


def metadata_checks(source: Any, camera_tables: Mapping[str, dict] | None = None) -> list[MetadataCheck]:
    """Run every red-flag check on one photo.

    Parameters
    ----------
    source : path, bytes, file object or PIL.Image.Image
    camera_tables : mapping, optional
        Passed to :func:`check_quantization`.

    Returns
    -------
    list of MetadataCheck
        In the order: exif, software, dates, thumbnail, quantization.

    Raises
    ------
    exifclip.io.ImageLoadError
        If ``source`` cannot be opened as an image (naming it).

    Examples
    --------
    >>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "PNG")
    >>> [(c.name, c.status) for c in metadata_checks(buf.getvalue())]  # doctest: +NORMALIZE_WHITESPACE
    [('exif', 'flag'), ('software', 'unknown'), ('dates', 'unknown'), ('thumbnail', 'unknown'),
     ('quantization', 'unknown')]
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = bytes(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a malformed block still gives its readable tags; read_exif says so elsewhere
        exif = read_exif(source)
    checks = [check_exif_present(exif), check_software(exif), check_dates(exif)]
    try:
        checks.append(check_thumbnail(source))
    except (ValueError, OSError) as exc:
        checks.append(MetadataCheck("thumbnail", "unknown", f"{source_name(source)}: cannot compare ({exc})"))
    checks.append(check_quantization(source, exif, camera_tables))
    return checks
