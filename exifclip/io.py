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
concurrent callers cannot affect one another. ``docs/reliability.md`` lists
every bad input tried and what the user sees.
"""

from __future__ import annotations

import io as _stdio
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageDecodeWarning",
    "ImageLoadError",
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

# Camera RAW extensions: Pillow opens several of them (TIFF containers) but
# decodes only an embedded thumbnail or preview, never the sensor data.
_RAW_SUFFIXES = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw "
    ".nef .nrw .orf .pef .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_DNG_VERSION_TAG = 0xC612


class ImageLoadError(ValueError):
    """An image source could not be decoded; the message names the source."""


class ImageDecodeWarning(UserWarning):
    """An image was decoded only in part: its first frame, or the data a truncated file holds."""


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


def _head(source: Any, n: int = 64) -> bytes:
    """The first ``n`` bytes of a path, bytes or seekable file source (for messages only)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return fh.read(n)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source[:n])
        if _is_file_object(source) and hasattr(source, "seek"):
            pos = source.tell()
            try:
                source.seek(0)
                return source.read(n)
            finally:
                source.seek(pos)
    except (OSError, ValueError):
        pass
    return b""


def _suffix(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower()
    name = getattr(source, "filename", None) or getattr(source, "name", None)
    return Path(name).suffix.lower() if isinstance(name, str) else ""


_RAW_HINT = (
    "exifclip reads the processed image a camera writes, not sensor data: use the camera's own "
    "JPEG of the shot, or develop the RAW file first (e.g. `darktable-cli photo.nef photo.tif`, "
    "`dcraw -T photo.nef`, or rawpy: `imageio.imwrite('photo.tif', rawpy.imread(path).postprocess())`)"
)


def _unsupported_reason(head: bytes, suffix: str, *, raw_only: bool = False) -> str | None:
    """A format Pillow does not decode (or decodes misleadingly), named from the first bytes.

    ``raw_only`` leaves HEIC out: that is asked of files Pillow did open, and a
    HEIC file Pillow opens has a plugin (pillow-heif) registered for it.
    """
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if not raw_only and (brand in _HEIF_BRANDS or suffix in (".heic", ".heif", ".hif")):
            return (
                "HEIC/HEIF images are not supported by Pillow; convert to JPEG or PNG first "
                "(e.g. `heif-convert photo.heic photo.jpg`, `magick photo.heic photo.png`, or macOS "
                "`sips -s format jpeg photo.heic --out photo.jpg`), or `pip install pillow-heif` and "
                "call `pillow_heif.register_heif_opener()` before using exifclip"
            )
        if brand == b"crx ":
            return f"Canon CR3 camera RAW files are not supported; {_RAW_HINT}"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return f"Fujifilm RAF camera RAW files are not supported; {_RAW_HINT}"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00"):
        return f"camera RAW files (Olympus ORF / Panasonic RW2) are not supported; {_RAW_HINT}"
    if head[:4] == b"II*\x00" and head[8:10] == b"CR":
        return f"Canon CR2 camera RAW files are not supported; {_RAW_HINT}"
    if suffix in _RAW_SUFFIXES:
        return f"camera RAW files ({suffix}) are not supported; {_RAW_HINT}"
    return None


def _raw_reason(source: Any, image: Image.Image) -> str | None:
    """Why ``image`` is a camera RAW file that Pillow would decode only a preview of, or None."""
    reason = _unsupported_reason(_head(source, 16), _suffix(source), raw_only=True)
    if reason is None and image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        if _DNG_VERSION_TAG in tags:
            reason = f"DNG camera RAW files are not supported; {_RAW_HINT}"
    return reason


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
        If the file is missing, empty, not an image format Pillow knows (HEIC
        and some camera RAW formats get a message saying how to convert
        them), or its header is corrupt; also for images over Pillow's own
        global pixel limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``), which
        exifclip never changes.
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
        reason = _unsupported_reason(_head(source), _suffix(source))
        raise ImageLoadError(f"{name}: {reason or 'not a recognised image file'}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is raised only when the caller turned warnings into errors.
        raise ImageLoadError(
            f"{name}: refused as a possible decompression bomb by Pillow's global limit ({exc}); "
            "exifclip never changes that global: if you trust the file, set "
            "PIL.Image.MAX_IMAGE_PIXELS = None (or a larger number) in your program"
        ) from None
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot open image ({exc})") from None
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


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
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
        if _is_file_object(source) and hasattr(source, "seek"):
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
        ImageDecodeWarning,
        stacklevel=3,
    )
    return out


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
            "file, pass max_pixels=None or a larger number"
        )


def _warn_frames(image: Image.Image, name: str) -> None:
    # MPO is how cameras store a JPEG plus its large preview: the first frame is the photo.
    if image.format == "MPO":
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
        frame, with an :class:`ImageDecodeWarning`; CMYK, palette, grey,
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
        When only the first of several frames is used, or a truncated JPEG was
        decoded with ``allow_truncated=True``.

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
        image = open_image(source)
        try:
            reason = _raw_reason(source, image)
            if reason is not None:
                raise ImageLoadError(f"{name}: {reason}")
            _check_pixels(image, name, max_pixels)
            _warn_frames(image, name)
            if image.tell() != 0:
                image.seek(0)
            try:
                image.load()
            except OSError as exc:
                if not _is_truncation(exc):
                    raise
                if allow_truncated and image.format in ("JPEG", "MPO"):
                    return _check_size(_decode_truncated_jpeg(source, name), name)
                hint = (
                    "pass allow_truncated=True to decode the part that is there"
                    if image.format in ("JPEG", "MPO")
                    else "allow_truncated=True recovers truncated JPEG files only"
                )
                raise ImageLoadError(
                    f"{name}: truncated {image.format} file: it ends before the image data does ({exc}); {hint}"
                ) from None
            out = _pil_to_rgb(image, name)
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
    return _check_size(out, name)


def _check_size(out: np.ndarray, name: str) -> np.ndarray:
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
