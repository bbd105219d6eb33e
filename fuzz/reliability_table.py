"""Build every bad input of docs/reliability.md, run it, print the markdown tables.

    python fuzz/reliability_table.py                             # print the tables
    python fuzz/reliability_table.py --update docs/reliability.md  # rewrite them in place

The inputs are made here, in a temporary folder (file names are shown
relative to it), so the tables are measured on this machine's Pillow, not
written by hand. Nothing global is changed.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import piexif
import PIL
from PIL import Image

from exifclip.exif import read_exif
from exifclip.io import load_image


START, END = "<!-- table: start -->", "<!-- table: end -->"


def _save(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _photo(h: int = 96, w: int = 72) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([xx * 3, yy * 2, (xx + yy) % 256], axis=2).astype(np.uint8))


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _png16_rgb() -> bytes:
    a = np.arange(4 * 5 * 3, dtype=">u2").reshape(4, 5, 3) * 1000
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(4))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _frames(fmt: str, **kwargs: Any) -> bytes:
    a = _photo()
    others = [a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), a.transpose(Image.Transpose.ROTATE_180)]
    return _save(a, fmt, save_all=True, append_images=others, **kwargs)


def _file(name: str, data: bytes) -> str:
    with open(name, "wb") as fh:
        fh.write(data)
    return name


def _exif_jpeg(tiff: bytes) -> bytes:
    plain = _save(Image.new("RGB", (8, 8)), "JPEG")
    seg = b"Exif\x00\x00" + tiff
    return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + plain[2:]


def _camera_tiff() -> bytes:
    I, E = piexif.ImageIFD, piexif.ExifIFD  # noqa: E741, N806
    return piexif.dump(
        {
            "0th": {I.Make: b"NIKON CORPORATION\x00", I.Model: b"NIKON D3200\x00"},
            "Exif": {E.ExposureTime: (1, 500), E.FNumber: (28, 10)},
        }
    )[6:]


def _patched(tiff: bytes, tag: int, field: int, value: int) -> bytes:
    """Big-endian block with the count (field 4) or value (field 8) of ``tag``'s entry replaced."""
    (count,) = struct.unpack(">H", tiff[8:10])
    for i in range(count):
        pos = 10 + 12 * i
        if struct.unpack(">H", tiff[pos : pos + 2])[0] == tag:
            return tiff[: pos + field] + struct.pack(">L", value) + tiff[pos + field + 4 :]
    raise KeyError(tag)


def _same_bytes_block(n: int = 4000, size: int = 8000) -> bytes:
    data_at = 8 + 2 + 12 * n + 4
    ents = b"".join(struct.pack("<HHLL", 0x0110, 2, size, data_at) for _ in range(n))
    return (
        b"II*\x00\x08\x00\x00\x00"
        + struct.pack("<H", n)
        + ents
        + b"\x00" * 4
        + bytes(0x80 | (i % 97) for i in range(size))
    )


def _corrupt_scan() -> bytes:
    data = bytearray(_save(_photo(), "JPEG", quality=90))
    for i in range(len(data) // 2, len(data) // 2 + 40, 3):
        data[i] ^= 0x5A
    return bytes(data)


def psd_bytes(composite: np.ndarray, layers: tuple[np.ndarray, ...] = ()) -> bytes:
    """A PSD written from Adobe's published layout: header, empty colour mode data and image
    resources, layer records with raw channel data (``layers``), the merged image, raw."""
    planes = composite if composite.ndim == 3 else composite[:, :, None]
    height, width, channels = planes.shape
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, channels, height, width, 8, 1 if channels == 1 else 3)
    section = b""
    if layers:
        records, data = b"", b""
        for i, layer in enumerate(layers):
            lh, lw, lc = layer.shape
            records += struct.pack(">iiiiH", 0, 0, lh, lw, lc)
            for channel_id in (0, 1, 2, 0xFFFF)[:lc]:
                records += struct.pack(">HI", channel_id, 2 + lh * lw)
            name = f"layer {i}".encode()
            pascal = bytes([len(name)]) + name
            pascal += b"\0" * (-len(pascal) % 4)
            extra = struct.pack(">II", 0, 0) + pascal
            records += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", len(extra)) + extra
            for c in range(lc):
                data += struct.pack(">H", 0) + layer[:, :, c].tobytes()
        info = struct.pack(">h", len(layers)) + records + data
        info += b"\0" * (len(info) % 2)
        section = struct.pack(">I", len(info)) + info + struct.pack(">I", 0)
    image_data = struct.pack(">H", 0) + b"".join(planes[:, :, c].tobytes() for c in range(channels))
    return header + struct.pack(">II", 0, 0) + struct.pack(">I", len(section)) + section + image_data


def _psd(kind: str) -> bytes:
    rgb = np.asarray(_photo(6, 7))
    alpha = np.dstack([rgb, rgb[:, :, :1]])
    return {"grey": lambda: psd_bytes(rgb[:, :, 0]), "rgb": lambda: psd_bytes(rgb),
            "rgba": lambda: psd_bytes(alpha), "layers": lambda: psd_bytes(rgb, (255 - rgb, alpha))}[kind]()


def bad_tags_tiff() -> bytes:
    """An 8x6 grey TIFF whose five ASCII tags claim a million bytes each."""
    width, height = 8, 6
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 3, 1, height), (279, 4, 1, width * height)]
    entries = sorted(entries + [(tag, 2, 1_000_000 + tag, 8) for tag in (270, 271, 272, 305, 315)])
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_at if tag == 273 else value
        ifd += (struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3
                else struct.pack("<HHII", tag, kind, count, value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(4) + bytes(range(width * height))


def damaged_tiff(compression: str) -> bytes:
    """A TIFF whose compressed strip has 60 bytes flipped."""
    image = Image.fromarray(np.random.default_rng(0).random((200, 300)) > 0.5)
    data = bytearray(_save(image if compression.startswith("group") else image.convert("RGB"), "TIFF",
                           compression=compression))
    for i in range(len(data) // 3, len(data) // 3 + 60):
        data[i] ^= 0x55
    return bytes(data)


def _link(name: str, target: str) -> str:
    os.symlink(target, name)
    return name


def _fifo(name: str) -> str:
    os.mkfifo(name)
    return name


_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"


def file_cases() -> list[tuple[str, Callable[[], Any], dict]]:
    """Paths that are not plain image files, formats that need more than Pillow, damaged TIFF data."""
    return [
        ("dangling symbolic link", lambda: _link("dangling.jpg", "gone.jpg"), {}),
        ("symbolic link loop", lambda: _link("loop1.jpg", "loop2.jpg") and _link("loop2.jpg", "loop1.jpg")
         and "loop1.jpg", {}),
        ("named pipe (FIFO)", lambda: _fifo("pipe.jpg"), {}),
        ("`/dev/zero`", lambda: "/dev/zero", {}),
        ("a file name of 300 bytes", lambda: "p" * 296 + ".jpg", {}),
        ("PSD, grey", lambda: _psd("grey"), {}),
        ("PSD, RGB", lambda: _psd("rgb"), {}),
        ("PSD, RGB + alpha", lambda: _psd("rgba"), {}),
        ("PSD with 2 layers", lambda: _file("layers.psd", _psd("layers")), {}),
        ("EPS (Ghostscript not installed here)" if not _has_ghostscript() else "EPS", lambda: _file("fig.eps", _EPS),
         {}),
        ("TIFF (deflate), 60 bytes of strip data flipped", lambda: _file("zip.tif", damaged_tiff("tiff_deflate")), {}),
        ("TIFF (CCITT G4), 60 bytes of strip data flipped", lambda: _file("fax.tif", damaged_tiff("group4")), {}),
        ("TIFF whose 5 text tags claim 1 MB each", lambda: _file("tags.tif", bad_tags_tiff()), {}),
    ]


def _has_ghostscript() -> bool:
    from PIL import EpsImagePlugin

    return bool(EpsImagePlugin.has_ghostscript())


def image_cases() -> list[tuple[str, Callable[[], Any], dict]]:
    photo = _photo()
    jpeg = _save(photo, "JPEG", quality=90)
    cut = jpeg[: len(jpeg) * 2 // 3]
    prog = _save(photo, "JPEG", quality=90, progressive=True)
    png, gif, tif = _save(photo, "PNG"), _save(photo, "GIF"), _save(photo, "TIFF")
    pal = Image.new("P", (5, 4))
    pal.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
    pal.info["transparency"] = 1
    dng = io.BytesIO()
    photo.save(dng, "TIFF", tiffinfo={0xC612: b"\x01\x04\x00\x00"})
    orient = photo.getexif()
    orient[0x0112] = 6
    rgba = Image.fromarray(np.dstack([np.asarray(photo), np.full((96, 72), 7, np.uint8)]))
    return [
        ("missing file `missing.jpg`", lambda: "missing.jpg", {}),
        ("a directory", lambda: os.makedirs("photos", exist_ok=True) or "photos", {}),
        ("empty file", lambda: _file("empty.jpg", b""), {}),
        ("text file named `.jpg`", lambda: _file("notes.jpg", b"shopping list\n" * 10), {}),
        ("500 random bytes", lambda: np.random.default_rng(0).bytes(500), {}),
        ("JPEG cut at 2/3", lambda: _file("cut.jpg", cut), {}),
        ("JPEG cut at 2/3", lambda: _file("cut.jpg", cut), {"allow_truncated": True}),
        ("progressive JPEG cut at 2/3", lambda: prog[: len(prog) * 2 // 3], {"allow_truncated": True}),
        ("JPEG cut inside its header (40 bytes)", lambda: jpeg[:40], {"allow_truncated": True}),
        ("JPEG with 14 bytes of scan data flipped", _corrupt_scan, {}),
        ("PNG cut at 2/3", lambda: _file("cut.png", png[: len(png) * 2 // 3]), {"allow_truncated": True}),
        ("GIF cut at 2/3", lambda: _file("cut.gif", gif[: len(gif) * 2 // 3]), {}),
        ("TIFF cut at 2/3", lambda: _file("cut.tif", tif[: len(tif) * 2 // 3]), {}),
        ("PNG header claiming 20000x20000 (400 MP)", lambda: _file("huge.png", _png_claiming(20000, 20000)), {}),
        (
            "PNG header claiming 20000x20000 (400 MP)",
            lambda: _file("huge.png", _png_claiming(20000, 20000)),
            {"max_pixels": None},
        ),
        (
            "PNG header claiming 9000x9000 (81 MP)",
            lambda: _file("bomb.png", _png_claiming(9000, 9000)),
            {"max_pixels": 10**6},
        ),
        ("CMYK JPEG", lambda: _save(photo.convert("CMYK"), "JPEG"), {}),
        ("CMYK TIFF", lambda: _save(photo.convert("CMYK"), "TIFF"), {}),
        ("palette PNG with a transparent index", lambda: _save(pal, "PNG"), {}),
        ("16-bit grey PNG", lambda: _save(Image.fromarray(np.full((4, 5), 40000, np.uint16)), "PNG"), {}),
        ("16-bit RGB PNG", _png16_rgb, {}),
        ("RGBA PNG (alpha 7)", lambda: _save(rgba, "PNG"), {}),
        ("1-bit PNG", lambda: _save(photo.convert("1"), "PNG"), {}),
        ("32-bit float TIFF", lambda: _save(Image.fromarray(np.full((4, 5), 99.5, np.float32)), "TIFF"), {}),
        ("3-frame GIF", lambda: _file("anim.gif", _frames("GIF")), {}),
        ("3-page TIFF", lambda: _file("pages.tif", _frames("TIFF")), {}),
        ("3-frame animated WebP", lambda: _frames("WEBP", lossless=True), {}),
        ("3-frame APNG", lambda: _frames("PNG"), {}),
        ("MPO (camera JPEG + preview)", lambda: _frames("MPO"), {}),
        ("JPEG with EXIF Orientation 6", lambda: _save(photo, "JPEG", exif=orient), {}),
        (
            "HEIC (ftyp heic)",
            lambda: _file("IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)),
            {},
        ),
        ("NEF (a TIFF container)", lambda: _file("DSC_0001.NEF", tif), {}),
        ("DNG content under a `.tif` name", lambda: _file("scan.tif", dng.getvalue()), {}),
        ("CR2 header", lambda: b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64), {}),
        ("CR3 header", lambda: b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + bytes(64), {}),
        ("RAF header", lambda: _file("DSCF0001.RAF", b"FUJIFILMCCD-RAW 0201FF383501" + bytes(64)), {}),
        ("SVG file", lambda: _file("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'), {}),
        ("float64 array", lambda: np.zeros((4, 5, 3)), {}),
        ("uint8 array of shape (4, 5, 2)", lambda: np.zeros((4, 5, 2), np.uint8), {}),
        ("uint8 array of shape (0, 5, 3)", lambda: np.zeros((0, 5, 3), np.uint8), {}),
        ("the int 42", lambda: 42, {}),
        *file_cases(),
    ]


def exif_cases() -> list[tuple[str, Callable[[], Any]]]:
    tiff = _camera_tiff()
    return [
        ("camera block, well formed", lambda: _exif_jpeg(tiff)),
        ("block cut after IFD0", lambda: _exif_jpeg(tiff[:60])),
        ("Exif sub-IFD pointer back to IFD0 (loop)", lambda: _exif_jpeg(_patched(tiff, 0x8769, 8, 8))),
        ("Exif sub-IFD pointer past the end", lambda: _exif_jpeg(_patched(tiff, 0x8769, 8, 0xFFFF0000))),
        ("Model claiming 2^31 values (2 GB)", lambda: _exif_jpeg(_patched(tiff, 0x0110, 4, 0x7FFFFFFF))),
        ("Model value offset past the end", lambda: _exif_jpeg(_patched(tiff, 0x0110, 8, 0x7FFFFFF0))),
        ("4000 entries on the same 8000 junk bytes", lambda: _exif_jpeg(_same_bytes_block())),
        (
            "PNG eXIf block: 16000 entries on the same 16 KB of junk",
            lambda: _save(Image.new("RGB", (8, 8)), "PNG", exif=b"Exif\x00\x00" + _same_bytes_block(16000, 16000)),
        ),
        ("APP1 of random bytes", lambda: _exif_jpeg(np.random.default_rng(1).bytes(300))),
        ("no EXIF at all", lambda: _save(_photo(), "JPEG")),
        ("text file named `.jpg`", lambda: _file("notes.jpg", b"shopping list\n" * 10)),
        ("TIFF whose 5 text tags claim 1 MB each", lambda: _file("tags2.tif", bad_tags_tiff())),
        ("PSD with 2 layers", lambda: _file("layers2.psd", _psd("layers"))),
        ("named pipe (FIFO)", lambda: _fifo("pipe2.jpg")),
    ]


def cli_cases() -> list[tuple[str, Callable[[], list[str]]]]:
    """Command lines a user gets wrong, or that meet bad files (the packaged model, on the CPU)."""
    jpeg = _save(_photo(256, 384), "JPEG", quality=90)
    model = ["--model", "exifclip-small", "--device", "cpu"]

    def photo() -> str:
        return _file("photo.png", _save(_photo(256, 384), "PNG"))

    return [
        ("`--out` names an existing file", lambda: ["localize", photo(), "--out", _file("results.txt", b"x"), *model]),
        ("`--out` of `embed` names a folder", lambda: ["embed", photo(), "--out", _mkdir("emb"), *model]),
        ("truncated JPEG", lambda: ["localize", _file("cut.jpg", jpeg[: len(jpeg) * 2 // 3]), "--out", "o1", *model]),
        ("truncated JPEG, `--allow-truncated`",
         lambda: ["localize", _file("cut.jpg", jpeg[: len(jpeg) * 2 // 3]), "--out", "o2", "--allow-truncated",
                  *model]),
        ("PNG header claiming 20000x20000 (400 MP)",
         lambda: ["localize", _file("huge.png", _png_claiming(20000, 20000)), "--out", "o3", *model]),
        ("a negative `--max-pixels`", lambda: ["localize", photo(), "--out", "o4", "--max-pixels", "-1"]),
        ("TIFF whose 5 text tags claim 1 MB each, given twice",
         lambda: ["exif", _file("tags.tif", bad_tags_tiff()), "tags.tif"]),
        ("`embed` where every image fails",
         lambda: ["embed", _file("notes.jpg", b"shopping list\n"), "--out", "e.npz", *model]),
        ("`evaluate --dataset folder` without `images/`", lambda: ["evaluate", "--dataset", "folder", "--root",
                                                                   _mkdir("bench")]),
    ]


def _mkdir(name: str) -> str:
    os.makedirs(name, exist_ok=True)
    return name


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from contextlib import redirect_stderr, redirect_stdout

    from exifclip.cli import main as cli

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            status = cli(argv)
        except SystemExit as exc:  # usage errors
            status = exc.code
    return status, err.getvalue()


def _cell(text: str, limit: int = 420) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(text: str, source: Any) -> str:
    """``text`` with a very long file name shortened (the 300-byte name case)."""
    if isinstance(source, str) and len(source) > 60:
        return text.replace(source, f"{source[:6]}…{source[-6:]}")
    return text


def _name(source: Any) -> str:
    if isinstance(source, str) and len(source) > 60:
        return f"`{_short(source, source)}` ({len(source)} bytes)"
    if isinstance(source, str):
        return f"`{source}`"
    if isinstance(source, bytes):
        return f"bytes ({len(source)} B)"
    return type(source).__name__


def _outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
            error = None
        except Exception as exc:  # noqa: BLE001 - the table reports whatever happens
            result, error = None, exc
    notes = [f"{w.category.__name__}: {w.message}" for w in caught]
    if error is not None:
        return f"**{type(error).__name__}**", "; ".join([str(error), *notes])
    if isinstance(result, np.ndarray):
        shown = f"array {result.shape} {result.dtype}"
    else:
        shown = f"{len(result)} tags" + (f": {dict(list(result.items())[:2])}…" if result else "")
    return shown + (" + " + ", ".join(sorted({w.category.__name__ for w in caught})) if caught else ""), "; ".join(
        notes
    ) or "—"


def main() -> int:
    out = [
        f"Measured with Pillow {PIL.__version__}, NumPy {np.__version__}, Python {sys.version.split()[0]}.",
        "",
        "### Decoding (`load_image`)",
        "",
        "| Input | Source | Call | Result | What the user sees |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for label, build, kwargs in image_cases():
                source = build()
                args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
                result, seen = _outcome(lambda s=source, k=kwargs: load_image(s, **k))
                seen = _short(seen, source)
                out.append(f"| {label} | {_name(source)} | `load_image(src{args})` | {result} | {_cell(seen)} |")
            out += ["", "### EXIF (`read_exif`)", "", "| Input | Result | What the user sees |", "|---|---|---|"]
            for label, build in exif_cases():
                source = build()
                result, seen = _outcome(lambda s=source: read_exif(s))
                out.append(f"| {label} | {_cell(result, 160)} | {_cell(seen)} |")
            out += ["", "### Command line", "", "| Case | Command | Exit | What the user sees (stderr) |",
                    "|---|---|---|---|"]
            for label, build in cli_cases():
                argv = build()
                status, err = _run_cli(argv)
                lines = [line for line in err.splitlines() if not line.startswith(("usage:", "  "))]
                shown = " ⏎ ".join(lines)
                out.append(f"| {label} | `exifclip {' '.join(argv)}` | {status} | {_cell(shown, 600)} |")
        finally:
            os.chdir(cwd)
    table = "\n".join(out)
    if len(sys.argv) == 3 and sys.argv[1] == "--update":
        doc = Path(sys.argv[2])
        text = doc.read_text(encoding="utf-8")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
