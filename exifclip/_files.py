"""What is wrong with a file, in words, for the messages of :mod:`exifclip.io`.

A path that cannot be read (missing, a broken link or a link loop, a folder
that may not be searched, a name too long, a pipe or a device), a format
Pillow does not decode or decodes misleadingly (HEIC, camera RAW), a decoder
that gave up (EPS without Ghostscript, libtiff's "decoder error -2"). Each
function returns the words, or None when nothing is wrong; :mod:`exifclip.io`
raises them as :class:`~exifclip.io.ImageLoadError` naming the source.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from PIL import Image

from ._capture import collapse

__all__ = ["decode_failure", "file_problem", "head", "is_file_object", "raw_reason", "suffix", "unsupported_reason"]

# Camera RAW extensions: Pillow opens several of them (TIFF containers) but
# decodes only an embedded thumbnail or preview, never the sensor data.
_RAW_SUFFIXES = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw "
    ".nef .nrw .orf .pef .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_DNG_VERSION_TAG = 0xC612


def is_file_object(source: Any) -> bool:
    """Whether ``source`` reads like a binary file object."""
    return hasattr(source, "read") and callable(source.read)


def head(source: Any, n: int = 64) -> bytes:
    """The first ``n`` bytes of a path, bytes or seekable file source (for messages only)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return fh.read(n)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source[:n])
        if is_file_object(source) and hasattr(source, "seek"):
            pos = source.tell()
            try:
                source.seek(0)
                return source.read(n)
            finally:
                source.seek(pos)
    except (OSError, ValueError):
        pass
    return b""


def suffix(source: Any) -> str:
    """The lower-case file name ending of a path or named source, or ``""``."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower()
    name = getattr(source, "filename", None) or getattr(source, "name", None)
    return Path(name).suffix.lower() if isinstance(name, str) else ""


_RAW_HINT = (
    "exifclip reads the processed image a camera writes, not sensor data: use the camera's own "
    "JPEG of the shot, or develop the RAW file first (e.g. `darktable-cli photo.nef photo.tif`, "
    "`dcraw -T photo.nef`, or rawpy: `imageio.imwrite('photo.tif', rawpy.imread(path).postprocess())`)"
)


def unsupported_reason(first_bytes: bytes, extension: str, *, raw_only: bool = False) -> str | None:
    """A format Pillow does not decode (or decodes misleadingly), named from the first bytes.

    ``raw_only`` leaves HEIC out: that is asked of files Pillow did open, and a
    HEIC file Pillow opens has a plugin (pillow-heif) registered for it.
    """
    if first_bytes[4:8] == b"ftyp":
        brand = first_bytes[8:12]
        if not raw_only and (brand in _HEIF_BRANDS or extension in (".heic", ".heif", ".hif")):
            return (
                "HEIC/HEIF images are not supported by Pillow; convert to JPEG or PNG first "
                "(e.g. `heif-convert photo.heic photo.jpg`, `magick photo.heic photo.png`, or macOS "
                "`sips -s format jpeg photo.heic --out photo.jpg`), or `pip install pillow-heif` and "
                "call `pillow_heif.register_heif_opener()` before using exifclip"
            )
        if brand == b"crx ":
            return f"Canon CR3 camera RAW files are not supported; {_RAW_HINT}"
    if first_bytes.startswith(b"FUJIFILMCCD-RAW"):
        return f"Fujifilm RAF camera RAW files are not supported; {_RAW_HINT}"
    if first_bytes[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00"):
        return f"camera RAW files (Olympus ORF / Panasonic RW2) are not supported; {_RAW_HINT}"
    if first_bytes[:4] == b"II*\x00" and first_bytes[8:10] == b"CR":
        return f"Canon CR2 camera RAW files are not supported; {_RAW_HINT}"
    if extension in _RAW_SUFFIXES:
        return f"camera RAW files ({extension}) are not supported; {_RAW_HINT}"
    return None


def raw_reason(source: Any, image: Image.Image) -> str | None:
    """Why ``image`` is a camera RAW file that Pillow would decode only a preview of, or None."""
    reason = unsupported_reason(head(source, 16), suffix(source), raw_only=True)
    if reason is None and image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        if _DNG_VERSION_TAG in tags:
            reason = f"DNG camera RAW files are not supported; {_RAW_HINT}"
    return reason


def _path_problem(path: str, exc: OSError) -> str:
    """What is wrong with a path that cannot be looked up, in words."""
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symbolic link: it points to {target!r}, which does not exist"
    if exc.errno == errno.ENOENT:
        return "file not found"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop: the link leads back to itself, never to a file"
    if exc.errno == errno.ENAMETOOLONG:
        longest = max(len(os.fsencode(part)) for part in Path(path).parts)
        return (f"file name too long for the file system (a name of {longest} bytes; most file systems "
                "allow 255 bytes per name)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: this user may not search a folder on the path"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    return f"cannot look up the file ({exc.strerror or exc})"


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: str) -> str | None:
    """Why ``path`` is not a readable, non-empty regular file, or None.

    Pipes and devices are refused before they are opened: reading one could
    block forever (a FIFO) or never end (``/dev/zero``).

    Examples
    --------
    >>> file_problem("/no/such/photo.jpg")
    'file not found'
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        return _path_problem(path, exc)
    except ValueError:
        return "not a valid file name (it contains a NUL byte)"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not an image file"
    for is_kind, kind in _NOT_REGULAR:
        if is_kind(info.st_mode):
            return f"is {kind}, not an image file; exifclip reads regular files only"
    if info.st_size == 0:
        return "file is empty (0 bytes)"
    return None


def decode_failure(image: Image.Image, exc: OSError, said: list[str]) -> str:
    """Why the pixels of an opened image could not be decoded, in words.

    ``said``: what the decoder wrote on stderr meanwhile (libtiff).
    """
    text = str(exc)
    if image.format == "EPS" and "ghostscript" in text.lower():
        return ("EPS (PostScript) images are drawn by Ghostscript, which is not installed: install it "
                "(the `gs` command: `apt install ghostscript`, `brew install ghostscript`) or convert the "
                "file to PNG or TIFF first")
    details = "; ".join([*(f"libtiff: {line}" for line in collapse(said)), f"Pillow: {text}"])
    if "decoder error" in text:
        return (f"cannot decode the {image.format} image data: it is corrupt, or compressed in a way this "
                f"Pillow build cannot decode ({details})")
    return f"cannot decode image ({details if said else text})"
