"""A small case for the report tests: photos with EXIF, a hostile one, a broken one, localised for real.

The hostile photo's file name and EXIF hold HTML and script; each payload, if
it ever ran, would set ``window.__xss`` (the browser tests check it stays
undefined).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

# File names cannot hold "/"; these still close attributes, open tags and name a URL scheme.
HOSTILE_NAMES = (
    '"><img src=x onerror=window.__xss=1>.jpg',
    "javascript:window.__xss=3.jpg",
)
HOSTILE_EXIF = {
    "Make": "</script><script>window.__xss=4</script>",
    "Model": '"><img src=x onerror="window.__xss=5">',
    "Software": "javascript:window.__xss=6",
    "Artist": "<a href=\"javascript:window.__xss=7\">click</a>",
    "ImageDescription": "<svg onload=window.__xss=8></svg>{{DATA}}{{SCRIPT}}",
}
BROKEN_NAME = "<svg onload=window.__xss=2>.jpg"


def exif_bytes(make="Acme", model="Cam One", software="Ver.1.00", orientation=1, extra=None, thumbnail=None) -> bytes:
    """An EXIF block with a camera, capture settings and dates (and optionally a thumbnail)."""
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode(),
              piexif.ImageIFD.Software: software.encode(), piexif.ImageIFD.Orientation: orientation,
              piexif.ImageIFD.DateTime: b"2024:05:01 10:00:00"}
    for key, value in (extra or {}).items():
        zeroth[getattr(piexif.ImageIFD, key)] = value.encode()
    exif = {piexif.ExifIFD.ExposureTime: (1, 250), piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.ISOSpeedRatings: 200, piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 10:00:00",
            piexif.ExifIFD.DateTimeDigitized: b"2024:05:01 10:00:00"}
    blocks = {"0th": zeroth, "Exif": exif}
    if thumbnail is not None:
        blocks["1st"] = {piexif.ImageIFD.Compression: 6}
        blocks["thumbnail"] = thumbnail
    return piexif.dump(blocks)


def photo(rng, height=96, width=128) -> np.ndarray:
    """A photo-like image: a smooth gradient with noise and a brighter pasted square."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    image = base + rng.normal(0, 8, base.shape)
    image[height // 4 : height // 2, width // 4 : width // 2] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def save_jpeg(path: Path, pixels: np.ndarray, exif: bytes | None, quality: int = 90) -> Path:
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, **kwargs)
    path.write_bytes(buf.getvalue())
    return path


def make_inputs(folder: Path, rng) -> list[Path]:
    """Five inputs: upright, rotated (Orientation 6), hostile name + EXIF (two), and a broken file."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = save_jpeg(folder / "plain.jpg", photo(rng), exif_bytes())
    rotated = save_jpeg(folder / "rotated.jpg", photo(rng, 96, 160), exif_bytes(orientation=6))
    extra = {"Artist": HOSTILE_EXIF["Artist"], "ImageDescription": HOSTILE_EXIF["ImageDescription"]}
    hostile_exif = exif_bytes(make=HOSTILE_EXIF["Make"], model=HOSTILE_EXIF["Model"],
                              software=HOSTILE_EXIF["Software"], extra=extra)
    hostile = [save_jpeg(folder / name, photo(rng), hostile_exif) for name in HOSTILE_NAMES]
    broken = folder / BROKEN_NAME
    broken.write_bytes(b"not a jpeg at all")
    return [plain, rotated, *hostile, broken]


def localize_case(folder: Path, model_dir: Path, rng, extra_args=()) -> tuple[Path, list[Path]]:
    """Run ``exifclip localize`` (tiny model, CPU) on :func:`make_inputs`; returns (results folder, inputs)."""
    from exifclip.cli import main

    inputs = make_inputs(folder / "in", rng)
    out = folder / "results"
    code = main(["localize", *map(str, inputs), "--out", str(out), "--model", str(model_dir), "--device", "cpu",
                 "--stride", "16", *extra_args])
    assert code == 1, "the broken input fails, the others are localised"
    return out, inputs
