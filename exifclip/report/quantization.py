"""JPEG quantisation tables: read them, recognise libjpeg's standard ones, and know each camera's.

A camera's JPEG encoder uses its own quantisation tables (often one set per
quality setting); editing software and image libraries mostly use the
Independent JPEG Group's standard tables scaled to a quality from 1 to 100.
A photo whose EXIF names a camera but whose tables are none of that camera's
was, very likely, saved again by something else.

The tables known per camera model are gathered from the project's training
photos by ``scripts/gather_quant_tables.py`` into ``quant_tables.json`` next
to this module (tables only; no photo is stored). Few photos per model were
available, so a camera's list is incomplete: a mismatch is a reason to look,
not proof.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..exif import read_exif
from ..io import open_image

__all__ = [
    "CAMERA_TABLES_FILE",
    "camera_key",
    "gather_camera_tables",
    "known_camera_tables",
    "read_quantization_tables",
    "standard_quality",
    "tables_distance",
]

#: The packaged tables per camera model (see the module doc).
CAMERA_TABLES_FILE = Path(__file__).with_name("quant_tables.json")


def read_quantization_tables(source: Any) -> tuple[tuple[int, ...], ...] | None:
    """The JPEG quantisation tables of ``source``, in table order; None for a non-JPEG.

    Parameters
    ----------
    source : path, bytes, file object or PIL.Image.Image
        Only the header is read.

    Returns
    -------
    tuple of tuple of int or None
        One 64-value tuple per table, in row-major order of the 8 x 8 block, as Pillow reports them.

    Raises
    ------
    exifclip.io.ImageLoadError
        If ``source`` is not an image (naming it).

    Examples
    --------
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=50)
    >>> tables = read_quantization_tables(buf.getvalue())
    >>> len(tables), tables[0][:4]
    (2, (16, 11, 10, 16))
    """
    image = open_image(source)
    try:
        tables = getattr(image, "quantization", None) if image.format in ("JPEG", "MPO") else None
        if not tables:
            return None
        return tuple(tuple(int(v) for v in tables[k]) for k in sorted(tables))
    finally:
        if image is not source:
            image.close()


@lru_cache(maxsize=1)
def _standard_tables() -> dict[tuple[tuple[int, ...], ...], int]:
    """libjpeg's tables at every quality 1..100, as Pillow writes and reads them back."""
    found: dict[tuple[tuple[int, ...], ...], int] = {}
    pixels = Image.new("RGB", (8, 8))
    for quality in range(100, 0, -1):  # several low qualities clip to the same tables: keep the highest
        buf = io.BytesIO()
        pixels.save(buf, "JPEG", quality=quality)
        tables = read_quantization_tables(buf.getvalue())
        found.setdefault(tables, quality)
    return found


def standard_quality(tables: Iterable[Iterable[int]] | None) -> int | None:
    """The libjpeg quality (1-100) whose standard tables are exactly ``tables``, else None.

    Compares the first two tables (luminance, chrominance); a greyscale JPEG
    has one.

    Examples
    --------
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=83)
    >>> standard_quality(read_quantization_tables(buf.getvalue()))
    83
    >>> standard_quality([[1] * 64, [2] * 64]) is None
    True
    """
    if not tables:
        return None
    tables = tuple(tuple(int(v) for v in t) for t in tables)
    for known, quality in _standard_tables().items():
        if tables[:2] == known[: len(tables[:2])] and len(tables) <= len(known):
            return quality
    return None


def camera_key(exif: Mapping[str, str]) -> str | None:
    """``"Make|Model"``, the key of :func:`known_camera_tables`, from an EXIF dict; None without a model.

    Examples
    --------
    >>> camera_key({"Make": "NIKON CORPORATION ", "Model": "NIKON D3200"})
    'NIKON CORPORATION|NIKON D3200'
    >>> camera_key({"Make": "Canon"}) is None
    True
    """
    model = " ".join(str(exif.get("Model", "")).split())
    if not model:
        return None
    return f"{' '.join(str(exif.get('Make', '')).split())}|{model}"


def gather_camera_tables(paths: Iterable[Any]) -> dict[str, dict]:
    """The distinct quantisation tables of each camera model among the JPEG files ``paths``.

    Files without a camera model in their EXIF, non-JPEG files and files that
    cannot be read are skipped.

    Returns
    -------
    dict
        ``{camera_key: {"photos": n, "tables": [[[64 ints], ...], ...]}}``,
        sorted by key, each camera's table sets sorted: the same input gives
        the same JSON.

    Examples
    --------
    >>> import piexif
    >>> from PIL import Image
    >>> exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"One"}})
    >>> buf = io.BytesIO(); Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=90, exif=exif)
    >>> found = gather_camera_tables([buf.getvalue(), buf.getvalue()])
    >>> list(found), found["Acme|One"]["photos"], len(found["Acme|One"]["tables"])
    (['Acme|One'], 2, 1)
    """
    import warnings

    seen: dict[str, dict] = {}
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                key = camera_key(read_exif(path))
                tables = read_quantization_tables(path) if key else None
        except (ValueError, OSError):
            continue
        if key is None or tables is None:
            continue
        entry = seen.setdefault(key, {"photos": 0, "tables": set()})
        entry["photos"] += 1
        entry["tables"].add(tables)
    return {
        key: {"photos": e["photos"], "tables": [[list(t) for t in s] for s in sorted(e["tables"])]}
        for key, e in sorted(seen.items())
    }


def known_camera_tables(path: str | Path | None = None) -> dict[str, dict]:
    """The packaged tables per camera model (or those of the JSON file ``path``).

    Raises
    ------
    ValueError
        If the file is not such a JSON object (naming it).

    Examples
    --------
    >>> tables = known_camera_tables()
    >>> all(set(entry) == {"photos", "tables"} for entry in tables.values())
    True
    """
    path = Path(path) if path is not None else CAMERA_TABLES_FILE
    return _load_tables(str(path))


@lru_cache(maxsize=4)
def _load_tables(path: str) -> dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read quantisation tables ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("tables"), list) for v in data.get("cameras", {}).values()
    ):
        raise ValueError(f"{path}: not a quantisation-table file (expected {{'cameras': {{key: {{'tables': ...}}}}}})")
    return data["cameras"]


def tables_distance(a: Iterable[Iterable[int]], b: Iterable[Iterable[int]]) -> float:
    """Mean absolute difference of the first two tables of ``a`` and ``b`` (inf if their counts differ).

    Examples
    --------
    >>> tables_distance([[2] * 64, [3] * 64], [[1] * 64, [3] * 64])
    0.5
    """
    a, b = [np.asarray(list(t)[:2], float) for t in (a, b)]
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).mean())

