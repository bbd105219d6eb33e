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

Hostile and awkward files (forensic inputs are often both) get a clear
:class:`ImageLoadError` naming the source and what is wrong, never another
exception type: decompression bombs are refused before any pixel is decoded
(``max_pixels``), truncated files are refused unless ``allow_truncated=True``
(JPEG), HEIC and camera RAW files are refused with a hint on how to convert
them. Nothing here changes Pillow's global settings
(``PIL.Image.MAX_IMAGE_PIXELS``, ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``), so
concurrent callers cannot affect one another. A path that is not a readable
regular file (a broken link, a folder the user may not search, a pipe, a
device) is refused before it is opened, in words. Pillow's warnings and
libtiff's lines on stderr are said once per kind, naming the source
(:mod:`exifclip._capture`). ``docs/reliability.md`` lists every bad input
tried and what the user sees.
"""

from __future__ import annotations

import io as _stdio
import os
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ._capture import NamedWarnings, c_stderr, collapse
from ._files import decode_failure, file_problem, head, is_file_object, raw_reason, suffix, unsupported_reason

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageDecodeWarning",
    "ImageLoadError",
    "TruncatedImageWarning",
    "as_source_list",
    "load_image",
    "open_image",
    "source_name",
]

#: File name endings taken as images when a folder is searched (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp")

#: Default ``max_pixels`` of :func:`load_image`: Pillow's own refusal
#: threshold (twice its default ``MAX_IMAGE_PIXELS``), about 179 megapixels,
#: i.e. 537 MB of RGB pixels. Larger camera files exist (200-megapixel phone
#: sensors): pass ``max_pixels=None`` or a larger number for files you trust.
DEFAULT_MAX_PIXELS = 2 * 89_478_485


class ImageLoadError(ValueError):
    """An image source could not be decoded; the message names the source."""


class ImageDecodeWarning(UserWarning):
    """An image was decoded only in part (its first frame, the data a truncated file holds), or its
    decoder complained while decoding it (a libtiff message); the message names the source."""


class TruncatedImageWarning(ImageDecodeWarning):
    """A truncated file was decoded with ``allow_truncated=True``: the rows past the cut are a flat fill."""


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
        If the file is missing (or a broken symbolic link, a link loop), may
        not be read, has a name the file system cannot hold, is not a regular
        file (a directory, a pipe, a device), is empty, not an image format
        Pillow knows (HEIC and some camera RAW formats get a message saying
        how to convert them), or its header is corrupt; also for images over
        Pillow's own global pixel limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``),
        which exifclip never changes.
    TypeError
        If ``source`` is of an unsupported type.
    """
    if isinstance(source, Image.Image):
        return source
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        problem = file_problem(os.fspath(source))
        if problem is not None:
            raise ImageLoadError(f"{name}: {problem}")
        fp: Any = Path(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(f"{name}: empty bytes, not an image")
        fp = _stdio.BytesIO(bytes(source))
    elif is_file_object(source):
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
        reason = unsupported_reason(head(source), suffix(source))
        raise ImageLoadError(f"{name}: {reason or 'not a recognised image file'}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is raised only when the caller turned warnings into errors.
        raise ImageLoadError(
            f"{name}: refused as a possible decompression bomb by Pillow's global limit ({exc}); "
            "exifclip never changes that global: if you trust the file, set "
            "PIL.Image.MAX_IMAGE_PIXELS = None (or a larger number) in your program"
        ) from None
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied: this user may not read the file") from None
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot open image ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - hostile headers make Pillow raise anything
        raise ImageLoadError(f"{name}: corrupt image header ({type(exc).__name__}: {exc})") from None


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


# Decoded pixels are converted to RGB this many at a time: a band of a few
# megapixels, never a second full-size copy in another mode (16-bit RGBA).
_BAND_PIXELS = 1 << 22


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image as a uint8 RGB array, converted in bands of rows.

    The cost beyond the PIL image itself is the output (3 bytes per pixel)
    and one band, whatever the mode.
    """
    width, height = image.size
    rows = max(1, _BAND_PIXELS // max(width, 1))
    if rows >= height:
        return _band_to_rgb(image, name)
    out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = _band_to_rgb(image.crop((0, top, width, bottom)), name)
    return out


def _band_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (Pillow opens 16-bit PNG/PGM as "I"): keep the top 8 bits,
        # the same rule for every file whatever its content, rather than clip.
        values = np.clip(np.asarray(image), 0, 65535)
        return _array_to_rgb((values >> 8).astype(np.uint8), name)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
        return _array_to_rgb(np.clip(values, 0, 255).astype(np.uint8), name)
    if mode != "RGB":
        # L, LA, P, PA, RGBA, CMYK, YCbCr, 1: Pillow's own conversions; alpha dropped.
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "truncated" in text or "premature end" in text


def _encoded_bytes(source: Any) -> bytes | None:
    """The encoded file behind a path, bytes or seekable file source, or None."""
    try:
        if isinstance(source, (str, os.PathLike)):
            return Path(source).read_bytes()
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source)
        if is_file_object(source) and hasattr(source, "seek"):
            source.seek(0)
            return source.read()
    except (OSError, ValueError):
        pass
    return None


def _decode_truncated_jpeg(source: Any, name: str) -> np.ndarray:
    """Decode a truncated JPEG by ending its data with an EOI marker.

    libjpeg then fills the rows it has no data for with a flat colour. This
    is per call: Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays
    untouched.
    """
    data = _encoded_bytes(source)
    if data is None:
        raise ImageLoadError(f"{name}: truncated JPEG; allow_truncated=True needs a path, bytes or a seekable file")
    with Image.open(_stdio.BytesIO(data + b"\xff\xd9")) as image:
        image.load()
        out = _pil_to_rgb(image, name)
    warnings.warn(
        f"{name}: truncated JPEG (file ends before the image data does); decoded with "
        "allow_truncated=True: the rows past the cut are a flat fill, not image content",
        TruncatedImageWarning,
        stacklevel=4,
    )
    return out


def _decode(image: Image.Image, source: Any, name: str, allow_truncated: bool, notes: NamedWarnings) -> np.ndarray:
    """The pixels of an opened image (at its first frame) as RGB; libtiff's stderr lines become a warning.

    A TIFF is decoded with its warnings named (Pillow reads its tags again)
    and libtiff's stderr captured; other formats warn only while opening, and
    decode outside those process-wide hooks, in parallel when threads call.
    """
    failure = None
    tiff = image.format == "TIFF"
    with notes.capture() if tiff else nullcontext(), c_stderr() if tiff else nullcontext([]) as said:
        try:
            image.load()
        except OSError as exc:
            failure = exc
    if failure is not None and _is_truncation(failure):
        if allow_truncated and image.format in ("JPEG", "MPO"):
            return _decode_truncated_jpeg(source, name)
        hint = (
            "pass allow_truncated=True to decode the part that is there"
            if image.format in ("JPEG", "MPO")
            else "allow_truncated=True recovers truncated JPEG files only"
        )
        raise ImageLoadError(
            f"{name}: truncated {image.format} file: it ends before the image data does ({failure}); {hint}"
        )
    if failure is not None:
        raise ImageLoadError(f"{name}: {decode_failure(image, failure, said)}")
    if said:
        warnings.warn(
            f"{name}: libtiff reported problems while decoding; the pixels may be damaged: "
            + "; ".join(collapse(said)),
            ImageDecodeWarning,
            stacklevel=3,
        )
    with notes.capture():  # Pillow warns on some conversions (palette transparency)
        return _pil_to_rgb(image, name)


def _first_frame(image: Image.Image) -> None:
    """Put a multi-frame image on the frame exifclip reads: the first, or a PSD's composite."""
    if image.format == "PSD":
        # Pillow numbers PSD layers from 1; as opened, the image is the merged composite.
        return
    if image.tell() != 0:
        image.seek(0)


def _check_pixels(image: Image.Image, name: str, max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    if not (isinstance(image, ImageFile.ImageFile) and image.tile):
        return  # already in memory (Image.new, a loaded file): nothing left to guard
    width, height = image.size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: image is {width}x{height} = {width * height} pixels, over the limit of "
            f"max_pixels={max_pixels} (a guard against decompression bombs); if you trust the "
            "file, pass max_pixels=None (no limit) or a larger number"
        )


def _warn_frames(image: Image.Image, name: str) -> None:
    # MPO is how cameras store a JPEG plus its large preview: the first frame is the photo.
    # A PSD's frames are its layers, all of them in the composite that is read.
    if image.format in ("MPO", "PSD"):
        return
    try:
        frames = image.n_frames if getattr(image, "is_animated", False) else 1
    except Exception:  # noqa: BLE001 - a corrupt later frame must not cost the first one
        frames = "several"
    if frames == 1:
        return
    warnings.warn(
        f"{name}: {image.format} file has {frames} frames; only the first is used",
        ImageDecodeWarning,
        stacklevel=3,
    )


def load_image(
    source: Any,
    *,
    allow_truncated: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``source`` to a ``uint8`` RGB array at full resolution.

    Parameters
    ----------
    source : path, bytes, binary file object, PIL.Image.Image or ndarray
        Arrays must be ``uint8`` shaped ``HxW``, ``HxWx1``, ``HxWx3`` or
        ``HxWx4`` (alpha is dropped).
    allow_truncated : bool, default False
        Decode a truncated JPEG (one whose file ends inside the image data)
        instead of refusing it: the missing rows become a flat fill and an
        :class:`ImageDecodeWarning` names the file. Only JPEG is recovered;
        other truncated formats are always refused. A flat fill looks
        inconsistent to a splice detector: read its output with care.
    max_pixels : int or None, default DEFAULT_MAX_PIXELS
        Refuse images with more pixels than this before decoding any of them
        (decompression bombs: a small file that claims a huge size). ``None``
        lifts exifclip's limit; Pillow's own global limit
        (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels by default)
        still applies and is never changed by exifclip: raise it in your
        program if you trust larger files. Arrays and already-decoded PIL
        images are not checked.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
        Pixels as stored: no resizing and no EXIF rotation (see module doc).
        Multi-frame files (GIF, TIFF, WebP, PNG animations) give their first
        frame, with an :class:`ImageDecodeWarning`; a PSD gives its merged
        composite (all layers), without a warning; CMYK, palette, grey,
        16-bit (top 8 bits kept) and alpha images (alpha dropped, not
        composited) are converted to RGB.

    Raises
    ------
    ImageLoadError
        If the source is missing, empty, truncated, corrupt, too large, of a
        format that is not supported (HEIC, camera RAW: the message says how
        to convert it) or of the wrong dtype or shape; the message names the
        source.
    TypeError
        If ``source`` is of an unsupported type.

    Warns
    -----
    ImageDecodeWarning
        When only the first of several frames is used, or libtiff reported
        problems while decoding (its lines quoted); a
        :class:`TruncatedImageWarning` when a truncated JPEG was decoded with
        ``allow_truncated=True``.
    UserWarning
        Pillow's own warnings on a damaged file, once per kind, with their
        category, prefixed with the source's name.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((4, 5), dtype=np.uint8)).shape
    (4, 5, 3)
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    name = source_name(source)
    if isinstance(source, np.ndarray):
        out = _array_to_rgb(source, name)
    else:
        notes = NamedWarnings(name)  # Pillow's warnings, said once per kind at the end, naming the source
        try:
            with notes.capture():
                image = open_image(source)
        except BaseException:
            notes.issue(stacklevel=2)
            raise
        try:
            with notes.capture():
                reason = raw_reason(source, image)
                if reason is not None:
                    raise ImageLoadError(f"{name}: {reason}")
                _check_pixels(image, name, max_pixels)
                _warn_frames(image, name)
                _first_frame(image)
            out = _decode(image, source, name, allow_truncated, notes)
        except ImageLoadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(
                f"{name}: refused as a possible decompression bomb by Pillow's global limit ({exc})"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageLoadError(f"{name}: cannot decode image ({exc})") from None
        except MemoryError:
            raise ImageLoadError(f"{name}: not enough memory to decode a {image.width}x{image.height} image") from None
        except Exception as exc:  # noqa: BLE001 - corrupt data makes Pillow raise anything
            raise ImageLoadError(f"{name}: corrupt image data ({type(exc).__name__}: {exc})") from None
        finally:
            # Pillow keeps the file of a multi-frame image (GIF, TIFF) open after
            # load(); close what we opened ourselves, never the caller's objects.
            if isinstance(source, (str, os.PathLike)):
                image.close()
            notes.issue(stacklevel=2)
    return _check_size(out, name)


def _check_size(out: np.ndarray, name: str) -> np.ndarray:
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ImageLoadError(f"{name}: image has zero size {out.shape[:2]}")
    return out


def as_source_list(X: Any) -> list:
    """Normalise a single source or a sequence of sources to a list.

    A single path, bytes, PIL image, file object or image array (2-D, or 3-D
    with 1, 3 or 4 channels) becomes a one-item list; a 4-D ``uint8`` array is
    a batch of equally sized images; a 1-D array of ``str`` or ``object``
    dtype (or an ``(n, 1)`` column of one) holds one source per item, as
    ``np.array(paths)`` and data-frame columns do.

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
    >>> as_source_list(np.array(["a.jpg", "b.jpg"]))
    ['a.jpg', 'b.jpg']
    """
    single_types = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)
    if isinstance(X, single_types) or is_file_object(X):
        return [X]
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "UO" and (X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1)):
            # paths (or other sources) held in an array: a column of a data frame, np.array(paths)
            items = [str(x) if isinstance(x, np.str_) else x for x in X.ravel().tolist()]
        elif X.ndim == 4:
            items = list(X)
        elif X.ndim in (2, 3):
            items = [X]
        else:
            raise ValueError(
                f"expected an image array (2-D or 3-D), a batch (4-D), or a 1-D array of paths (str or object "
                f"dtype), got shape {X.shape} dtype {X.dtype}"
            )
    elif hasattr(X, "columns") and hasattr(X, "iloc"):  # a data frame: its one column of sources
        if len(X.columns) != 1:
            raise TypeError(f"expected one column of image sources, got a data frame with columns {list(X.columns)}; "
                            "pass the column, e.g. df['path']")
        items = list(X.iloc[:, 0])
    elif isinstance(X, Sequence) or hasattr(X, "__iter__"):
        items = list(X)
    else:
        raise TypeError(f"expected an image source or a list of them, got {type(X).__name__}")
    if not items:
        raise ValueError("no images given: the input list is empty")
    return items
