"""Pictures of results: coloured heatmaps, mask images and overlays.

No plotting library is needed: a colour map is a 256-entry lookup table
interpolated from a few anchor colours. Heatmaps are drawn on a fixed scale
(``vmin=0, vmax=1`` by default), so the same colour means the same distance
to the majority on every image; pass ``vmax`` to stretch faint maps, and say
so wherever the picture is shown.

Large photos: every picture is computed in bands of rows (a quarter megapixel
at a time) in ``uint8`` and ``float32``, never as a full-resolution float
array. :func:`overlay` and :func:`colorize` cost their output (3 bytes per
pixel) plus one band; the ``save_*`` functions fill a PIL canvas band by band
(4 bytes per pixel) and write it as PNG, optionally at a reduced size
(``max_side``: the photo and the heatmap averaged over blocks of pixels; a
mask is always written at full resolution, exactly).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ._atomic import atomic_write

__all__ = [
    "COLORMAPS",
    "colorize",
    "downscale",
    "heatmap_picture",
    "mask_image",
    "mask_picture",
    "overlay",
    "overlay_picture",
    "png_bytes",
    "reduction",
    "save_heatmap",
    "save_mask",
    "save_overlay",
    "save_png",
    "upright_view",
]

# Anchor colours (position, RGB) of perceptually ordered dark-to-bright maps.
_ANCHORS = {
    "heat": [
        (0.0, (0, 0, 4)),
        (0.25, (87, 16, 110)),
        (0.5, (188, 55, 84)),
        (0.75, (249, 142, 9)),
        (1.0, (252, 255, 164)),
    ],
    "gray": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
}

_BAND_PIXELS = 1 << 18  # pixels drawn at a time (a band costs ~32 bytes each: 8 MB)
_OUTLINE = (0, 255, 255)  # cyan
# zlib level of the save_* pictures: a third of the time of Pillow's default (6), files ~10 % larger.
_PNG_LEVEL = 3


def _lut(name: str) -> np.ndarray:
    positions, colours = zip(*_ANCHORS[name])
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, positions, [c[i] for c in colours]) for i in range(3)], axis=1).astype(np.uint8)


COLORMAPS = {name: _lut(name) for name in _ANCHORS}


def _bands(height: int, width: int, multiple: int = 1) -> Iterator[slice]:
    """Row slices of about ``_BAND_PIXELS`` pixels each (a multiple of ``multiple`` rows)."""
    rows = max(1, _BAND_PIXELS // max(width, 1) // multiple) * multiple
    for top in range(0, height, rows):
        yield slice(top, min(height, top + rows))


def _scaled(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``values`` mapped to [0, 1] as float32 (NaN as 0), a new array."""
    span = max(float(vmax) - float(vmin), 1e-12)
    out = np.nan_to_num(np.asarray(values, np.float32), nan=0.0, copy=True)
    out -= np.float32(vmin)
    out *= np.float32(1.0 / span)
    return np.clip(out, 0, 1, out=out)


def _levels(scaled: np.ndarray) -> np.ndarray:
    return (scaled * 255 + 0.5).astype(np.uint8)


def colorize(heatmap: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "heat") -> np.ndarray:
    """A float map as a uint8 RGB picture.

    Examples
    --------
    >>> colorize(np.array([[0.0, 1.0]])).shape
    (1, 2, 3)
    """
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colour map {cmap!r}; known: {', '.join(COLORMAPS)}")
    lut = COLORMAPS[cmap]
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        return lut[_levels(_scaled(heatmap, vmin, vmax))]
    out = np.empty((*heatmap.shape, 3), np.uint8)
    for rows in _bands(*heatmap.shape):
        out[rows] = lut[_levels(_scaled(heatmap[rows], vmin, vmax))]
    return out


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A bool mask as a uint8 grey picture (255 = spliced)."""
    return np.asarray(mask, bool).astype(np.uint8) * 255


def _thickness(height: int, width: int) -> int:
    """Outline half-width in pixels: thicker on large pictures, so that it shows."""
    return max(1, min(height, width) // 400)


def _outline(mask: np.ndarray, rows: slice, radius: int) -> np.ndarray:
    """The pixels of ``mask[rows]`` within ``radius`` pixels of the other label (one pass, no loop).

    A pixel is on the outline when the ``(2 radius + 1)``-square around it
    holds both labels: a line ``2 radius`` pixels wide, half on each side.
    """
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    top, bottom = max(0, rows.start - radius), min(mask.shape[0], rows.stop + radius)
    m = np.asarray(mask[top:bottom], bool).view(np.uint8)
    size = 2 * radius + 1
    hi = maximum_filter1d(maximum_filter1d(m, size, axis=0), size, axis=1)
    lo = minimum_filter1d(minimum_filter1d(m, size, axis=0), size, axis=1)
    return (hi != lo)[rows.start - top : rows.stop - top]


def _overlay_rows(image, heatmap, mask, rows: slice, alpha: float, vmin: float, vmax: float, radius: int):
    """Rows ``rows`` of the overlay, as uint8."""
    scaled = _scaled(heatmap[rows], vmin, vmax)
    colour = COLORMAPS["heat"][_levels(scaled)].astype(np.float32)
    scaled *= np.float32(alpha)  # now the heatmap's opacity
    out = np.asarray(image[rows], np.float32)
    colour -= out
    colour *= scaled[..., None]
    out += colour
    out += np.float32(0.5)
    band = out.astype(np.uint8)
    if mask is not None:
        band[_outline(mask, rows, radius)] = _OUTLINE
    return band


def _check_overlay_inputs(image, heatmap, mask):
    image, heatmap = np.asarray(image), np.asarray(heatmap)
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"image {image.shape[:2]} and heatmap {heatmap.shape} differ in size")
    if mask is not None and np.shape(mask) != heatmap.shape:
        raise ValueError(f"mask {np.shape(mask)} and heatmap {heatmap.shape} differ in size")
    return image, heatmap, None if mask is None else np.asarray(mask, bool)


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    mask: np.ndarray | None = None,
    alpha: float = 0.55,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> np.ndarray:
    """The photo with the coloured heatmap blended on and the mask outlined.

    Parameters
    ----------
    image : ndarray (H, W, 3) uint8
    heatmap : ndarray (H, W)
    mask : ndarray (H, W) bool, optional
        Outlined in cyan, on both sides of its border; the line is wider on
        large photos (``2 * max(1, min(H, W) // 400)`` pixels).
    alpha : float, default=0.55
        Heatmap opacity where the heatmap is at ``vmax`` (fades to 0 at ``vmin``).

    Returns
    -------
    ndarray (H, W, 3) uint8
        Computed in bands of rows: the cost beyond the inputs is this output
        and one band.

    Examples
    --------
    >>> mask = np.zeros((8, 8), bool); mask[2:6, 2:6] = True
    >>> out = overlay(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8)), mask)
    >>> out[1, 4].tolist(), out[4, 4].tolist()  # on the outline; inside: 55 % of the brightest colour
    ([0, 255, 255], [139, 140, 90])
    """
    image, heatmap, mask = _check_overlay_inputs(image, heatmap, mask)
    radius = _thickness(*heatmap.shape)
    out = np.empty((*heatmap.shape, 3), np.uint8)
    for rows in _bands(*heatmap.shape):
        out[rows] = _overlay_rows(image, heatmap, mask, rows, alpha, vmin, vmax, radius)
    return out


def reduction(shape: tuple[int, ...], max_side: int | None) -> int:
    """The block size that brings the longer side of ``shape`` to at most ``max_side`` pixels.

    ``max_side`` None or 0: full resolution, 1.

    Examples
    --------
    >>> reduction((5773, 8660), 2048), reduction((1500, 2000), 2048), reduction((5773, 8660), None)
    (5, 1, 1)
    """
    longest = max(shape[:2])
    if not max_side or longest <= max_side:
        return 1
    return math.ceil(longest / max_side)


def downscale(array: np.ndarray, factor: int) -> np.ndarray:
    """Average ``array`` over ``factor`` x ``factor`` blocks of pixels (the last ones may be smaller).

    Parameters
    ----------
    array : ndarray (H, W) or (H, W, C)
    factor : int

    Returns
    -------
    ndarray (ceil(H / factor), ceil(W / factor), ...)
        ``uint8`` for a ``uint8`` input (rounded), else ``float32`` (a bool
        mask gives the fraction of each block that is set). Computed in bands
        of rows with Pillow's :meth:`PIL.Image.Image.reduce`.

    Examples
    --------
    >>> downscale(np.arange(16, dtype=np.uint8).reshape(4, 4), 2).tolist()
    [[3, 5], [11, 13]]
    """
    array = np.asarray(array)
    if factor == 1:
        return array
    height, width = array.shape[:2]
    dtype = np.uint8 if array.dtype == np.uint8 else np.float32
    out = np.empty((-(-height // factor), -(-width // factor), *array.shape[2:]), dtype)
    for rows in _bands(height, width, multiple=factor):
        band = array[rows] if array.dtype == dtype else np.asarray(array[rows], dtype)
        top = rows.start // factor
        reduced = np.asarray(Image.fromarray(band).reduce(factor))  # Pillow's box average, in C
        out[top : top + reduced.shape[0]] = reduced
    return out


def _canvas(mode: str, height: int, width: int, rows_of: Callable[[slice], np.ndarray]) -> Image.Image:
    """A ``mode`` picture filled band by band with ``rows_of(rows)``."""
    canvas = Image.new(mode, (width, height))
    for rows in _bands(height, width):
        canvas.paste(Image.fromarray(rows_of(rows)), (0, rows.start))
    return canvas


def _write(path: str | os.PathLike, picture: Image.Image) -> Path:
    """Write ``picture`` as PNG, atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        picture.save(f, format="PNG", compress_level=_PNG_LEVEL)
    return path


def png_bytes(picture: Image.Image) -> bytes:
    """``picture`` encoded as the ``save_*`` functions write it (PNG, the same compression).

    Examples
    --------
    >>> png_bytes(mask_picture(np.eye(2, dtype=bool)))[:4]
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def upright_view(array: np.ndarray, orientation: int = 1) -> np.ndarray:
    """A view of ``array`` (H, W, ...) turned and flipped as EXIF ``Orientation`` says, for display.

    Codes 1-8 as in the EXIF standard (1: as stored; 6: the stored pixels
    turned 90 degrees clockwise show the scene upright); any other value
    leaves the array as stored. No pixel is copied.

    Examples
    --------
    >>> a = np.arange(6).reshape(2, 3)
    >>> upright_view(a, 6).tolist()  # the camera was turned: show it turned back
    [[3, 0], [4, 1], [5, 2]]
    >>> upright_view(a, 1) is a
    True
    """
    a = np.asarray(array)
    views = {
        2: lambda: a[:, ::-1],
        3: lambda: a[::-1, ::-1],
        4: lambda: a[::-1],
        5: lambda: a.swapaxes(0, 1),
        6: lambda: a.swapaxes(0, 1)[:, ::-1],
        7: lambda: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda: a.swapaxes(0, 1)[::-1],
    }
    return views[orientation]() if orientation in views else a


def save_heatmap(path: str | os.PathLike, heatmap: np.ndarray, vmin: float = 0.0, vmax: float = 1.0,
                 cmap: str = "heat", max_side: int | None = None, orientation: int = 1) -> Path:
    """Write the coloured heatmap as PNG; ``max_side``: longer side at most this many pixels (None: full size).

    ``orientation`` (EXIF code) turns the picture upright for display
    (:func:`upright_view`); the default writes it as stored.

    Returns
    -------
    Path
        ``path``.
    """
    return _write(path, heatmap_picture(heatmap, vmin, vmax, cmap, max_side, orientation))


def heatmap_picture(heatmap: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "heat",
                    max_side: int | None = None, orientation: int = 1) -> Image.Image:
    """The picture :func:`save_heatmap` writes, as a Pillow image (e.g. for :func:`png_bytes`)."""
    heatmap = upright_view(downscale(heatmap, reduction(np.shape(heatmap), max_side)), orientation)
    return _canvas("RGB", *heatmap.shape[:2], lambda rows: colorize(heatmap[rows], vmin, vmax, cmap))


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask as a grey PNG (255 = spliced), always at full resolution."""
    return _write(path, mask_picture(mask))


def mask_picture(mask: np.ndarray) -> Image.Image:
    """The picture :func:`save_mask` writes: grey, 255 = spliced, full resolution."""
    mask = np.asarray(mask, bool)
    return _canvas("L", *mask.shape, lambda rows: mask[rows].view(np.uint8) * np.uint8(255))


def save_overlay(path: str | os.PathLike, image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None = None,
                 alpha: float = 0.55, vmin: float = 0.0, vmax: float = 1.0, max_side: int | None = None,
                 orientation: int = 1) -> Path:
    """Write :func:`overlay` as PNG, at most ``max_side`` pixels on its longer side (None: full size).

    A reduced overlay averages the photo and the heatmap over blocks of
    pixels and outlines the blocks that are mostly inside the mask.
    ``orientation`` (EXIF code) turns the picture upright for display
    (:func:`upright_view`); the default writes it as stored.
    """
    return _write(path, overlay_picture(image, heatmap, mask, alpha, vmin, vmax, max_side, orientation))


def overlay_picture(image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.55,
                    vmin: float = 0.0, vmax: float = 1.0, max_side: int | None = None,
                    orientation: int = 1) -> Image.Image:
    """The picture :func:`save_overlay` writes, as a Pillow image."""
    image, heatmap, mask = _check_overlay_inputs(image, heatmap, mask)
    factor = reduction(heatmap.shape, max_side)
    if factor > 1:
        image, heatmap = downscale(image, factor), downscale(heatmap, factor)
        mask = None if mask is None else downscale(mask, factor) >= 0.5
    image, heatmap = upright_view(image, orientation), upright_view(heatmap, orientation)
    mask = None if mask is None else upright_view(mask, orientation)
    radius = _thickness(*heatmap.shape)
    return _canvas("RGB", *heatmap.shape,
                   lambda rows: _overlay_rows(image, heatmap, mask, rows, alpha, vmin, vmax, radius))


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` as PNG atomically (see :func:`exifclip._atomic.atomic_write`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(np.asarray(array)).save(f, format="PNG")
    return path
