"""Read camera EXIF as readable strings and write it as one line of text.

:func:`read_exif` turns the EXIF block of an image into ``{tag name: value}``
strings; :func:`exif_to_text` serialises such a dict to the sentence the text
tower reads, ``"Make: NIKON CORPORATION, Model: NIKON D3200, Exposure Time:
1/500, ..."``.

Tags are named as the metadata-extractor library names them (the names in
the paper's training text: ``F-Number``, ``White Balance Mode`` for 0xA403),
values are formatted as cameras display them, and
``exif_to_text(style="paper")`` reproduces the official code's value rules.
How that code made its text, and what is known of its tag list, is in the
documentation page "Using the paper's weights".
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from . import _exif_tables as T
from ._exif_tables import flash_label as _flash
from ._exif_tables import me_value as _me_value
from ._exif_tables import paper_refine as _paper_refine
from ._exif_tables import trim as _trim
from ._capture import named_warnings
from .io import open_image, source_name

__all__ = ["read_exif", "exif_to_text", "ExifWarning", "DEFAULT_TAGS", "PAPER_TAGS"]


class ExifWarning(UserWarning):
    """Malformed EXIF was found; the readable part was still returned."""


# fmt: off
#: Tags written by ``exif_to_text(style="default")``, in this order: camera
#: and core capture settings first (make, model, exposure, aperture, ISO,
#: focal length, metering, flash, white balance), then other camera-pipeline
#: tags. Dates, names, serial numbers, comments and GPS are
#: left out: they describe the owner or the moment, not the imaging pipeline.
DEFAULT_TAGS: tuple[str, ...] = (
    "Make", "Model", "Exposure Time", "F-Number", "ISO Speed Ratings", "Focal Length",
    "Focal Length 35", "Exposure Program", "Exposure Mode", "Exposure Bias Value",
    "Metering Mode", "Flash", "White Balance Mode", "White Balance", "Scene Capture Type",
    "Color Space", "Contrast", "Saturation", "Sharpness", "Gain Control",
    "Digital Zoom Ratio", "Sensing Method", "Custom Rendered", "Subject Distance Range",
    "Max Aperture Value", "Lens Make", "Lens Model", "Software",
    "Compressed Bits Per Pixel", "Components Configuration", "YCbCr Positioning",
    "Exif Image Width", "Exif Image Height", "Orientation", "X Resolution",
    "Y Resolution", "Resolution Unit", "Exif Version",
)
# fmt: on

# fmt: off
#: Tags kept by ``style="paper"``: a *reconstruction*, not the official list.
#: The official list is every tag found in at least 49 % of the training
#: photos (``all_exif_count.json``, not published). These are the IFD0, Exif
#: and Interoperability tags that nearly every digital camera writes, in
#: metadata-extractor's names; thumbnail (IFD1), maker-note and GPS tags are
#: not included.
PAPER_TAGS: tuple[str, ...] = (
    "Make", "Model", "Orientation", "X Resolution", "Y Resolution", "Resolution Unit",
    "Software", "Date/Time", "YCbCr Positioning", "Exposure Time", "F-Number",
    "Exposure Program", "ISO Speed Ratings", "Exif Version", "Date/Time Original",
    "Date/Time Digitized", "Components Configuration", "Compressed Bits Per Pixel",
    "Shutter Speed Value", "Aperture Value", "Exposure Bias Value", "Max Aperture Value",
    "Metering Mode", "White Balance", "Flash", "Focal Length", "FlashPix Version",
    "Color Space", "Exif Image Width", "Exif Image Height", "Focal Plane X Resolution",
    "Focal Plane Y Resolution", "Focal Plane Resolution Unit", "Sensing Method",
    "File Source", "Scene Type", "Custom Rendered", "Exposure Mode", "White Balance Mode",
    "Digital Zoom Ratio", "Focal Length 35", "Scene Capture Type", "Gain Control",
    "Contrast", "Saturation", "Sharpness", "Subject Distance Range",
    "Interoperability Index", "Interoperability Version",
)
# fmt: on

_MAX_BLOCK_BYTES = 64 * 2**20  # larger "EXIF" is not EXIF
_MAX_VALUE_BYTES = 64 * 2**10  # no camera setting needs more; blobs are skipped
# Value bytes decoded per block, all entries together. Entries may all point at
# the same bytes: without this cap a 56 KB JPEG block of 4000 such entries took
# 3 s and a 208 KB PNG of 16000 took 52 s. Real EXIF decodes a few KiB.
_MAX_DECODE_BYTES = 2**20
_MAX_TEXT_CHARS = 1000
_EXIF_PTR, _GPS_PTR, _INTEROP_PTR = 0x8769, 0x8825, 0xA005
# TIFF value types: struct code, bytes per value.
# fmt: off
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("L", 4), 5: ("L", 8), 6: ("b", 1),
          7: ("s", 1), 8: ("h", 2), 9: ("l", 4), 10: ("l", 8), 11: ("f", 4), 12: ("d", 8),
          13: ("L", 4)}
# fmt: on
_TEXT_KINDS = ("ascii", "comment", "version")


# -- value formatting ------------------------------------------------------------


def _frac(v: Any) -> Fraction:
    if isinstance(v, tuple):
        return Fraction(v[0], v[1])  # ZeroDivisionError for x/0: value dropped
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("not finite")
        return Fraction(v)
    return Fraction(int(v))


def _first(values: Any) -> Fraction:
    if not len(values):
        raise ValueError("no value")
    return _frac(values[0])


def _clean_text(raw: bytes) -> str | None:
    """Decode an EXIF string: NUL-terminated, padded; binary junk gives None."""
    raw = bytes(raw).strip(b"\x00 \t\r\n").split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        if sum(ord(c) > 127 for c in text) * 2 > len(text):
            return None
    text = " ".join(text.split())
    if not text or len(text) > _MAX_TEXT_CHARS or not text.isprintable():
        return None
    return text


def _exposure(t: Any) -> str:
    """Seconds as a camera shows them: ``1/500``, ``1/2``, ``1/3.2``, ``2``, ``1.3``."""
    t = float(t)
    if not t > 0 or not math.isfinite(t):
        raise ValueError("exposure time must be positive")
    if t >= 1:
        return _trim(t, 1)
    n = 1 / t
    return "1/" + (str(round(n)) if n >= 10 else _trim(n, 1))


def _ev(f: Fraction) -> str:
    if f == 0:
        return "0 EV"
    sign = "+" if f > 0 else "-"
    f = abs(f)
    body = str(f) if f.denominator <= 3 else _trim(f, 2)
    return f"{sign}{body} EV"


def _comment(raw: bytes, order: str) -> str | None:
    head, body = bytes(raw[:8]), bytes(raw[8:])
    if head.startswith(b"UNICODE"):
        text = body.decode("utf-16-be" if order == ">" else "utf-16-le", "replace")
        text = " ".join(text.replace("\x00", " ").replace("\ufeff", "").split())
        return text if text and text.isprintable() and len(text) <= _MAX_TEXT_CHARS else None
    if head.startswith(b"JIS"):
        return _clean_text(body.decode("shift_jis", "replace").encode("utf-8"))
    return _clean_text(body if len(raw) >= 8 else raw)


def _version(raw: Any) -> str:
    raw = bytes(raw)
    if len(raw) != 4 or not raw.isdigit():
        raise ValueError("not a version")
    return f"{int(raw[:2])}.{raw[2:].decode()}"


def _lens(values: Any) -> str:
    def part(a: Any, b: Any, fmt: Any) -> str:
        lo, hi = fmt(_frac(a)), fmt(_frac(b))
        return lo if lo == hi else f"{lo}-{hi}"

    text = part(values[0], values[1], lambda f: _trim(f, 1)) + " mm"
    try:
        text += " f/" + part(values[2], values[3], lambda f: _trim(f, 1))
    except (ZeroDivisionError, IndexError):
        pass
    return text


def _gps_coord(values: Any) -> str:
    deg = sum(float(_frac(v)) / 60**i for i, v in enumerate(values[:3]))
    return _trim(deg, 6)


def _gps_time(values: Any) -> str:
    h, m, s = (_frac(v) for v in values[:3])
    return f"{int(h):02d}:{int(m):02d}:{'0' if s < 10 else ''}{_trim(s, 2)}"


_FORMATTERS = {
    "ascii": lambda v, e, o: _clean_text(v) if isinstance(v, (bytes, bytearray)) else None,
    "int": lambda v, e, o: _trim(_first(v), 2),
    "enum": lambda v, e, o: e.get(int(_first(v)), str(int(_first(v)))),
    "decimal": lambda v, e, o: _trim(_first(v), 2),
    "exposure": lambda v, e, o: _exposure(_first(v)),
    "fnumber": lambda v, e, o: f"{float(_first(v)):.1f}",
    "focal": lambda v, e, o: f"{float(_first(v)):.1f} mm",
    "focal35": lambda v, e, o: f"{int(_first(v))} mm" if _first(v) > 0 else None,
    "bias": lambda v, e, o: _ev(_first(v)),
    "apex_shutter": lambda v, e, o: _exposure(2.0 ** -max(-64.0, min(64.0, float(_first(v))))),
    "apex_aperture": lambda v, e, o: f"{2.0 ** (max(-64.0, min(64.0, float(_first(v)))) / 2):.1f}",
    "distance": lambda v, e, o: (
        None if _first(v) <= 0 else "Infinity" if _first(v) >= 0xFFFFFFFF else _trim(_first(v), 2) + " m"
    ),
    "zoom": lambda v, e, o: "Not used" if _first(v) == 0 else _trim(_first(v), 2),
    "version": lambda v, e, o: _version(v),
    "bytes_version": lambda v, e, o: ".".join(str(int(b)) for b in v[:4]),
    "components": lambda v, e, o: (
        "".join({1: "Y", 2: "Cb", 3: "Cr", 4: "R", 5: "G", 6: "B"}.get(int(b), "") for b in v[:4]) or None
    ),
    "flash": lambda v, e, o: _flash(int(_first(v))),
    "comment": lambda v, e, o: _comment(v, o) if isinstance(v, (bytes, bytearray)) else None,
    "lens": lambda v, e, o: _lens(v),
    "gps_coord": lambda v, e, o: _gps_coord(v),
    "gps_time": lambda v, e, o: _gps_time(v),
    "metres": lambda v, e, o: _trim(_first(v), 1) + " m",
}


# -- parsing the TIFF structure ---------------------------------------------------


class _Parser:
    """Walk IFD0 -> Exif -> Interop (-> GPS) of one EXIF block, never raising.

    Structural faults (bad header, offsets or counts outside the block, IFD
    loops) are collected in ``problems``; entries that can still be read are
    kept. Only tags in the tables are decoded, each at most
    ``_MAX_VALUE_BYTES``; values that make no sense for their tag are dropped.

    Work is bounded whatever the block claims: at most four IFDs (each read
    once, so pointer loops end), at most 65535 entries each (the count is a
    16-bit field), no value is copied before its offset and length are checked
    against the block, and at most ``_MAX_DECODE_BYTES`` value bytes are
    decoded in all. ``entries`` and ``decoded`` count the work done.
    """

    def __init__(self, data: memoryview, problems: list[str]) -> None:
        self.data, self.n, self.problems = data, len(data), problems
        self.order = "<"
        self.out: dict[str, str] = {}
        self.seen: set[int] = set()
        self.entries = 0  # IFD entries looked at
        self.decoded = 0  # value bytes decoded

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    def u32(self, raw: Any) -> int:
        return struct.unpack(self.order + "L", raw)[0]

    def parse(self, include_gps: bool) -> dict[str, str]:
        head = bytes(self.data[:8])
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            self.problem("no TIFF header (byte order mark II/MM) at the start of the block")
            return self.out
        self.order = "<" if head[:2] == b"II" else ">"
        if struct.unpack(self.order + "H", head[2:4])[0] != 42:
            self.problem("bad TIFF magic number")
            return self.out
        ptrs = self.read_ifd(self.u32(head[4:8]), T.MAIN_TAGS, "IFD0")
        if _EXIF_PTR in ptrs:
            sub = self.read_ifd(ptrs[_EXIF_PTR], T.MAIN_TAGS, "Exif")
            if _INTEROP_PTR in sub:
                self.read_ifd(sub[_INTEROP_PTR], T.INTEROP_TAGS, "Interoperability")
        if include_gps and _GPS_PTR in ptrs:
            self.read_ifd(ptrs[_GPS_PTR], T.GPS_TAGS, "GPS")
        return self.out

    def read_ifd(self, offset: int, table: dict, label: str) -> dict[int, int]:
        data, n, order = self.data, self.n, self.order
        if offset in self.seen:
            self.problem(f"{label} IFD at offset {offset} was already read (loop)")
            return {}
        self.seen.add(offset)
        if offset < 8 or offset + 2 > n:
            self.problem(f"{label} IFD offset {offset} lies outside the {n}-byte block")
            return {}
        count = struct.unpack(order + "H", data[offset : offset + 2])[0]
        avail = (n - offset - 2) // 12
        if count > avail:
            self.problem(f"{label} IFD is truncated: {count} entries declared, {avail} present")
            count = avail
        pointers: dict[int, int] = {}
        self.entries += count
        for i in range(count):
            pos = offset + 2 + 12 * i
            tag, typ, cnt = struct.unpack(order + "HHL", data[pos : pos + 8])
            field = data[pos + 8 : pos + 12]
            if tag in (_EXIF_PTR, _GPS_PTR, _INTEROP_PTR) and table is T.MAIN_TAGS:
                if typ in (4, 13) and cnt >= 1:
                    pointers.setdefault(tag, self.u32(field))
                continue
            spec = table.get(tag)
            if spec is None or spec[0] in self.out or cnt == 0:
                continue
            name, kind, enum = spec
            if typ not in _TYPES:
                self.problem(f"{label} tag {name!r} has unknown value type {typ}")
                continue
            if typ == 2 and kind not in _TEXT_KINDS:
                continue  # a number written as text: not worth guessing
            code, size = _TYPES[typ]
            nbytes = size * cnt
            if nbytes <= 4:
                raw = field[:nbytes]
            else:
                start = self.u32(field)
                if start + nbytes > n:
                    self.problem(
                        f"{label} tag {name!r}: value at offset {start} ({nbytes} bytes) runs past the end of the block"
                    )
                    continue
                if nbytes > _MAX_VALUE_BYTES:
                    continue  # a blob, not a camera setting
                raw = data[start : start + nbytes]
            if self.decoded + nbytes > _MAX_DECODE_BYTES:
                if self.decoded < _MAX_DECODE_BYTES:
                    self.problem(
                        f"more than {_MAX_DECODE_BYTES} bytes of tag values "
                        f"(entries pointing at the same data?); the rest is skipped"
                    )
                    self.decoded = _MAX_DECODE_BYTES
                continue
            self.decoded += nbytes
            try:
                if typ in (1, 2, 7):
                    values: Any = bytes(raw)
                elif typ in (5, 10):
                    flat = struct.unpack(f"{order}{2 * cnt}{code}", raw)
                    values = list(zip(flat[0::2], flat[1::2]))
                else:
                    values = list(struct.unpack(f"{order}{cnt}{code}", raw))
                text = _FORMATTERS[kind](values, enum, order)
            except (ValueError, TypeError, ZeroDivisionError, IndexError, OverflowError, struct.error, UnicodeError):
                continue
            if text:
                self.out[name] = text
        return pointers


def _exif_block(img: Any, problems: list[str]) -> bytes | None:
    raw = img.info.get("exif")
    if raw:
        return raw if isinstance(raw, (bytes, bytearray)) else None
    if img.format != "TIFF":
        # JPEG, PNG, WebP, HEIF... keep EXIF in info["exif"]; getexif() would
        # also turn XMP tiff:Orientation into a tag, which is not EXIF.
        return None
    # In a TIFF the tags are the file's own IFDs: Pillow reads and re-serialises them.
    # Pillow's own warnings on corrupt tags are named by the caller (read_exif).
    try:
        exif = img.getexif()
        if not len(exif) and not exif.get_ifd(_EXIF_PTR):
            return None
        return exif.tobytes()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt TIFF tags
        problems.append(f"Pillow could not read the EXIF tags ({type(exc).__name__}: {exc})")
        return None


def _parse_block(raw: bytes | bytearray | memoryview, include_gps: bool, problems: list[str]) -> _Parser:
    """Parse one EXIF block (``Exif\\0\\0`` prefix optional); faults go to ``problems``."""
    view = memoryview(raw).cast("B")
    if bytes(view[:4]) == b"Exif":
        view = view[6:]
    parser = _Parser(view[:0], problems)
    if len(view) > _MAX_BLOCK_BYTES:
        problems.append(f"EXIF block of {len(view)} bytes is larger than the {_MAX_BLOCK_BYTES}-byte limit")
    elif len(view):
        parser = _Parser(view, problems)
        try:
            parser.parse(include_gps)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the tags read so far
            problems.append(f"unexpected {type(exc).__name__}: {exc}")
    return parser


def read_exif(source: Any, *, include_gps: bool = False) -> dict[str, str]:
    """Read the EXIF of an image as ``{tag name: value}`` strings.

    Parameters
    ----------
    source : path, bytes, binary file object, PIL.Image.Image or ndarray
        Any image source that :func:`exifclip.io.open_image` accepts; only the
        header is read, never the pixels. An array carries no EXIF: ``{}``.
    include_gps : bool, default False
        Also return the GPS tags (``GPS Latitude`` as unsigned decimal
        degrees with ``GPS Latitude Ref``, ``GPS Altitude`` in metres, ...).
        Off by default: a location is not a camera property.

    Returns
    -------
    dict of str to str
        Tags of IFD0, the Exif sub-IFD and the Interoperability IFD in file
        order, named as metadata-extractor names them (see the module doc).
        Values follow these rules:

        - text: cut at the first NUL, padding and runs of whitespace removed;
        - ``Exposure Time`` (and ``Shutter Speed Value``, converted from
          APEX): below 1 s ``1/N``, ``N`` an integer from 10 up, else with
          one decimal (``1/500``, ``1/2``, ``1/3.2``); from 1 s decimal
          seconds (``2``, ``1.3``);
        - ``F-Number``, ``Aperture Value``, ``Max Aperture Value``: one
          decimal (``2.8``, ``11.0``); ``Focal Length``: ``30.0 mm``;
          ``Focal Length 35``: ``45 mm``;
        - ``Exposure Bias Value``: signed fraction when it is in thirds or
          halves (``+1/3 EV``, ``-2/3 EV``, ``+1 EV``), else two decimals;
          zero is ``0 EV``;
        - other numbers: at most two decimals, trailing zeros removed
          (``X Resolution: 72``); a tag with several numbers gives its first;
        - enumerations: EXIF 2.32 labels (``Metering Mode: Pattern``,
          ``Flash: Flash fired, auto mode``, ``White Balance Mode: Auto``);
          a code without a label gives its number;
        - versions: ``Exif Version: 2.30``.

        Left out: maker notes, PrintIM, padding, the thumbnail IFD (IFD1),
        tags without a name in the tables, values over 64 KiB, binary or
        empty text, values that make no sense for their tag (``x/0``).

    Raises
    ------
    exifclip.io.ImageLoadError
        If the file is missing, empty, not an image or its header is corrupt
        (an input error, not an EXIF error). Malformed EXIF never raises.
    TypeError
        If ``source`` is of an unsupported type.

    Warns
    -----
    ExifWarning
        At most one per call, naming the input and the first problem, when
        the EXIF structure is malformed (bad header, truncated IFD, offsets
        outside the block, loops, absurd counts). What could be read is still
        returned. An image without EXIF gives ``{}`` and no warning.
    UserWarning
        Pillow's own warnings about a corrupt file ("Tag data larger than
        file"), each kind once per call, prefixed with the source's name.

    Notes
    -----
    Work and memory are bounded whatever the block claims: four IFDs at most,
    each read once (pointer loops end), no value copied before its offset and
    length are checked against the block, values over 64 KiB skipped, 1 MiB
    of value bytes decoded per block in all. ``docs/reliability.md`` states the
    contract and how it is fuzzed.

    Examples
    --------
    >>> import io, numpy as np, piexif
    >>> from PIL import Image
    >>> exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"NIKON\\x00"},
    ...                     "Exif": {piexif.ExifIFD.ExposureTime: (1, 500),
    ...                              piexif.ExifIFD.MeteringMode: 5}})
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif)
    >>> read_exif(buf.getvalue())
    {'Make': 'NIKON', 'Exposure Time': '1/500', 'Metering Mode': 'Pattern'}
    >>> read_exif(np.zeros((4, 4, 3), np.uint8))
    {}
    """
    if isinstance(source, np.ndarray):
        return {}
    name = source_name(source)
    problems: list[str] = []
    out: dict[str, str] = {}
    with named_warnings(name):  # Pillow's own warnings on a corrupt file, named and said once per kind
        img = open_image(source)
        try:
            raw = _exif_block(img, problems)
        finally:
            if img is not source:
                img.close()
    if raw is not None:
        out = _parse_block(raw, include_gps, problems).out
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        warnings.warn(
            f"{name}: malformed EXIF: {problems[0]}{more}; returned the {len(out)} tags that could be read",
            ExifWarning,
            stacklevel=2,
        )
    return out


# -- text ----------------------------------------------------------------------------


def exif_to_text(exif: Mapping[str, Any], tags: Iterable[str] | str | None = None, style: str = "default") -> str:
    """Write an EXIF dict as ``"Tag: value, Tag: value, ..."``.

    Parameters
    ----------
    exif : mapping of str to str
        Usually from :func:`read_exif`. Values are turned into ``str`` and
        stripped; empty values and ``None`` are skipped.
    tags : sequence of str, "all" or None
        Which tags, in which order; tags absent from ``exif`` are skipped.
        ``None`` means :data:`DEFAULT_TAGS` (``style="default"``) or every
        tag of ``exif`` in :data:`PAPER_TAGS`, in the dict's order
        (``style="paper"``, as the official code kept each photo's order).
        ``"all"`` means every tag of ``exif``, in the dict's order.
    style : {"default", "paper"}
        ``"default"`` writes the values as they are. ``"paper"`` rewrites
        them as the official training text had them: each value is put into
        metadata-extractor's wording (``Metering Mode: Pattern`` ->
        ``Multi-segment``, ``Exposure Time: 1/500`` -> ``1/500 sec``,
        ``F-Number: 2.8`` -> ``F2.8``, ``X Resolution: 72`` -> ``72 dots per
        inch``), then through the official ``refine_value`` (module doc), so
        ``Make: NIKON CORPORATION`` becomes ``Make: NIKONCORPORATION`` and long
        labels ``Unknown``. Uncertain: metadata-extractor's wording changed
        between versions and the version behind YFCC100M is not recorded
        (older ones wrote ``F2.8``, newer ``f/2.8``); values are rebuilt from
        the formatted strings, so rounding may differ in the last digit.

    Returns
    -------
    str
        The sentence; ``""`` when no listed tag is present.

    Raises
    ------
    TypeError
        If ``exif`` is not a mapping (pass ``read_exif(path)``, not a path),
        or ``tags`` is not a sequence of str.
    ValueError
        If ``style`` is unknown, or ``tags`` is a str other than ``"all"``.

    Examples
    --------
    >>> exif = {"Model": "NIKON D3200", "Make": "NIKON CORPORATION",
    ...         "Exposure Time": "1/500", "Metering Mode": "Pattern"}
    >>> exif_to_text(exif)
    'Make: NIKON CORPORATION, Model: NIKON D3200, Exposure Time: 1/500, Metering Mode: Pattern'
    >>> exif_to_text(exif, tags=["Model", "Flash"])
    'Model: NIKON D3200'
    >>> exif_to_text(exif, tags="all")
    'Model: NIKON D3200, Make: NIKON CORPORATION, Exposure Time: 1/500, Metering Mode: Pattern'
    >>> exif_to_text(exif, style="paper")  # doctest: +NORMALIZE_WHITESPACE
    'Model: NIKOND3200, Make: NIKONCORPORATION, Exposure Time: 1/500sec,
     Metering Mode: Multi-segment'
    """
    if not isinstance(exif, Mapping):
        raise TypeError(
            f"exif must be a dict of tag -> value (e.g. from read_exif), "
            f"got {type(exif).__name__}; call read_exif(source) first"
        )
    if style not in ("default", "paper"):
        raise ValueError(f"style must be 'default' or 'paper', got {style!r}")
    if tags is None:
        names = list(DEFAULT_TAGS) if style == "default" else [k for k in exif if k in PAPER_TAGS]
    elif isinstance(tags, str):
        if tags != "all":
            raise ValueError(f"tags must be a list of tag names, 'all' or None, got the string {tags!r}")
        names = list(exif)
    else:
        try:
            names = list(tags)
        except TypeError:
            raise TypeError(f"tags must be a list of tag names, 'all' or None, got {type(tags).__name__}") from None
        if not all(isinstance(t, str) for t in names):
            raise TypeError("tags must contain only str tag names")
    parts = []
    for tag in dict.fromkeys(names):
        value = exif.get(tag)
        value = "" if value is None else str(value).strip()
        if not value:
            continue
        if style == "paper":
            value = _paper_refine(tag, _me_value(tag, value, exif))
        parts.append(f"{tag}: {value}")
    return ", ".join(parts)
