"""Decode image sources to full-resolution uint8 RGB arrays.

Every exifclip entry point accepts the same sources: a path (``str`` or
:class:`os.PathLike`), encoded ``bytes``, a binary file object, a
:class:`PIL.Image.Image`, or a ``uint8`` array shaped ``HxW``, ``HxWx3`` or
``HxWx4``. They all become a C-contiguous ``uint8`` array ``HxWx3``.

Two things are deliberately *not* done:

* **No resizing.** The camera traces the model learns (demosaicing, noise,
  JPEG grid, lens) live at the pixel scale; any resampling smooths them away.
* **No EXIF orientation.** Rotating by the Orientation tag would move the
  pixels away from the sensor's own layout (the CFA pattern, the 8x8 JPEG
  grid). Pixels are returned as stored in the file.
"""

from __future__ import annotations

import io as _stdio
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ImageLoadError",
    "source_name",
    "open_image",
    "load_image",
    "as_source_list",
]


class ImageLoadError(ValueError):
    """An image source could not be decoded; the message names the source."""


def source_name(source: Any) -> str:
    """Return a short, human-readable name for ``source`` for messages.

    Examples
    --------
    >>> source_name("photos/a.jpg")
    'photos/a.jpg'
    >>> source_name(b"\\xff\\xd8")
    '<bytes, 2 B>'
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes, {len(source)} B>"
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or ""
        return name or f"<PIL image {source.width}x{source.height} {source.mode}>"
    if isinstance(source, np.ndarray):
        return f"<array shape={source.shape} dtype={source.dtype}>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return f"<{type(source).__name__}>"


def _is_file_object(source: Any) -> bool:
    return hasattr(source, "read") and callable(source.read)


def open_image(source: Any) -> Image.Image:
    """Open ``source`` lazily as a PIL image, without decoding its pixels.

    Parameters
    ----------
    source : path, bytes, binary file object or PIL.Image.Image
        Arrays are not accepted here: they carry no file metadata.

    Returns
    -------
    PIL.Image.Image
        For paths, bytes and file objects a freshly opened image; PIL images
        are returned unchanged.

    Raises
    ------
    ImageLoadError
        If the file is missing, empty, or not an image format Pillow knows.
    TypeError
        If ``source`` is of an unsupported type.
    """
    if isinstance(source, Image.Image):
        return source
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"{name}: file not found")
        if path.is_dir():
            raise ImageLoadError(f"{name}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{name}: file is empty (0 bytes)")
        fp: Any = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(f"{name}: empty bytes, not an image")
        fp = _stdio.BytesIO(bytes(source))
    elif _is_file_object(source):
        fp = source
    elif isinstance(source, np.ndarray):
        raise TypeError(f"{name}: arrays carry no file metadata; pass a path, bytes or PIL image")
    else:
        raise TypeError(
            f"{name}: unsupported image source type {type(source).__name__}; expected a path, "
            "bytes, a binary file object, a PIL image or a uint8 array"
        )
    try:
        return Image.open(fp)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not a recognised image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is raised only when the caller turned warnings into errors.
        raise ImageLoadError(
            f"{name}: refused as a possible decompression bomb ({exc}); if you trust the file, raise "
            "the limit with PIL.Image.MAX_IMAGE_PIXELS = N (or None to disable it)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{name}: cannot open image ({exc})") from None


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageLoadError(
            f"{name}: image arrays must have dtype uint8 (0-255), got {array.dtype}; "
            "convert with np.clip(a, 0, 255).astype(np.uint8) if the values are in that range"
        )
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim == 3 and array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.ndim == 3 and array.shape[2] in (3, 4):
        # Alpha is dropped, not composited: blending would alter the camera pixels.
        return np.ascontiguousarray(array[:, :, :3])
    raise ImageLoadError(f"{name}: expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (Pillow opens 16-bit PNG/PGM as "I"): keep the top 8 bits,
        # the same rule for every file whatever its content, rather than clip.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return _array_to_rgb((values >> 8).astype(np.uint8), name)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        return _array_to_rgb(np.clip(values, 0, 255).astype(np.uint8), name)
    if mode != "RGB":
        # L, LA, P, PA, RGBA, CMYK, YCbCr, 1: Pillow's own conversions; alpha dropped.
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def load_image(source: Any) -> np.ndarray:
    """Decode ``source`` to a ``uint8`` RGB array at full resolution.

    Parameters
    ----------
    source : path, bytes, binary file object, PIL.Image.Image or ndarray
        Arrays must be ``uint8`` shaped ``HxW``, ``HxWx1``, ``HxWx3`` or
        ``HxWx4`` (alpha is dropped).

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
        Pixels as stored: no resizing and no EXIF rotation (see module doc).

    Raises
    ------
    ImageLoadError
        If the source is missing, empty, truncated, corrupt or of the wrong
        dtype or shape; the message names the source.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((4, 5), dtype=np.uint8)).shape
    (4, 5, 3)
    """
    name = source_name(source)
    if isinstance(source, np.ndarray):
        out = _array_to_rgb(source, name)
    else:
        image = open_image(source)
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            out = _pil_to_rgb(image, name)
        except ImageLoadError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageLoadError(f"{name}: cannot decode image ({exc})") from None
        finally:
            # Pillow keeps the file of a multi-frame image (GIF, TIFF) open after
            # load(); close what we opened ourselves, never the caller's objects.
            if isinstance(source, (str, os.PathLike)):
                image.close()
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ImageLoadError(f"{name}: image has zero size {out.shape[:2]}")
    return out


def as_source_list(X: Any) -> list:
    """Normalise a single source or a sequence of sources to a list.

    A single path, bytes, PIL image, file object or image array (2-D, or 3-D
    with 1, 3 or 4 channels) becomes a one-item list; a 4-D ``uint8`` array is
    a batch of equally sized images.

    Raises
    ------
    ValueError
        If ``X`` is an empty sequence.

    Examples
    --------
    >>> as_source_list("a.jpg")
    ['a.jpg']
    >>> len(as_source_list(["a.jpg", "b.jpg"]))
    2
    """
    single_types = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)
    if isinstance(X, single_types) or _is_file_object(X):
        return [X]
    if isinstance(X, np.ndarray):
        if X.ndim == 4:
            items = list(X)
        elif X.ndim in (2, 3):
            items = [X]
        else:
            raise ValueError(f"expected an image array (2-D or 3-D) or a batch (4-D), got shape {X.shape}")
    elif isinstance(X, Sequence) or hasattr(X, "__iter__"):
        items = list(X)
    else:
        raise TypeError(f"expected an image source or a list of them, got {type(X).__name__}")
    if not items:
        raise ValueError("no images given: the input list is empty")
    return items
