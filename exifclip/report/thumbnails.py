"""Small upright pictures for people: thumbnails, previews and a colour bar.

The analysis runs on the pixels as stored (:mod:`exifclip.io` never rotates);
a person should see the photo the way the camera meant it. The EXIF
``Orientation`` is applied here, for display only, to the photo and to its
heatmap overlay alike, so the two stay aligned.

JPEG photos are decoded at a fraction of their size (libjpeg's DCT scaling,
Pillow's ``draft``): a thumbnail of a 50-megapixel photo costs a few
milliseconds, not a full decode.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..io import open_image

__all__ = [
    "ORIENTATIONS",
    "data_uri",
    "orientation_of",
    "overlay_picture",
    "photo_picture",
    "scale_bar",
    "upright",
]

#: EXIF Orientation code -> the transpose that shows the stored pixels upright.
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation_of(source: Any) -> int:
    """The EXIF ``Orientation`` code (1-8) of ``source``; 1 (as stored) when absent or invalid.

    Examples
    --------
    >>> orientation_of(Image.new("RGB", (4, 4)))
    1
    """
    try:
        image = open_image(source)
    except (ValueError, OSError):
        return 1
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block: show the pixels as stored
        value = 1
    finally:
        if image is not source:
            image.close()
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` turned and flipped as EXIF ``orientation`` says, for display.

    Examples
    --------
    >>> upright(Image.new("RGB", (4, 2)), 6).size
    (2, 4)
    >>> upright(Image.new("RGB", (4, 2)), 1).size
    (4, 2)
    """
    transpose = ORIENTATIONS.get(orientation)
    return image.transpose(transpose) if transpose is not None else image


def data_uri(image: Image.Image, quality: int = 70) -> str:
    """``image`` as a JPEG ``data:`` URI (what the report embeds).

    Examples
    --------
    >>> data_uri(Image.new("RGB", (4, 4)))[:23]
    'data:image/jpeg;base64,'
    """
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def photo_picture(source: Any, max_side: int, orientation: int | None = None) -> Image.Image:
    """The photo ``source``, upright, at most ``max_side`` pixels on its longer side.

    Raises
    ------
    exifclip.io.ImageLoadError
        If ``source`` is not an image (naming it).

    Examples
    --------
    >>> photo_picture(Image.new("RGB", (400, 200)), 100).size
    (100, 50)
    """
    image = open_image(source)
    try:
        if orientation is None:
            orientation = orientation_of(image)
        image.draft("RGB", (max_side, max_side))
        small = ImageOps.contain(image.convert("RGB"), (max_side, max_side), Image.Resampling.BILINEAR)
    finally:
        if image is not source:
            image.close()
    return upright(small, orientation)


def overlay_picture(overlay: str | os.PathLike | None, heatmap: str | os.PathLike | None, photo: Image.Image | None,
                    orientation: int, max_side: int, alpha: float = 0.55) -> Image.Image | None:
    """The heatmap over the photo, upright, at most ``max_side`` pixels: from the overlay picture if there
    is one, else the heatmap picture blended over the (already upright) ``photo``; None without either.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> heat = pathlib.Path(tempfile.mkdtemp()) / "h.png"; Image.new("RGB", (40, 20), (255, 0, 0)).save(heat)
    >>> photo = Image.new("RGB", (20, 40))   # upright already (orientation 6)
    >>> overlay_picture(None, heat, photo, 6, 10).size
    (5, 10)
    """
    for path, blend in ((overlay, False), (heatmap, True)):
        if path is None:
            continue
        try:
            with Image.open(path) as picture:
                picture.draft("RGB", (max_side, max_side))
                small = ImageOps.contain(picture.convert("RGB"), (max_side, max_side), Image.Resampling.BILINEAR)
        except (OSError, ValueError):
            continue
        small = upright(small, orientation)
        if not blend:
            return small
        if photo is None:
            return small
        base = photo.resize(small.size, Image.Resampling.BILINEAR)
        return Image.blend(base, small, alpha)
    return None


def scale_bar(vmin: float = 0.0, vmax: float = 1.0, width: int = 256) -> str:
    """The heatmap colour scale from ``vmin`` (left) to ``vmax`` (right) as a PNG ``data:`` URI.

    Examples
    --------
    >>> scale_bar()[:22]
    'data:image/png;base64,'
    """
    from ..viz import colorize

    colours = colorize(np.linspace(vmin, vmax, width, dtype=np.float32)[None, :], vmin, vmax)
    buf = io.BytesIO()
    Image.fromarray(np.repeat(colours, 8, axis=0)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
