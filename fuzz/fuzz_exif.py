"""Fuzz exifclip's EXIF reader (and the image decoder it shares the door with).

What one input is checked for (the contract of ``docs/reliability.md``):

* ``read_exif`` raises nothing but ``ImageLoadError`` (the input is not a
  readable image), emits at most one ``ExifWarning``, and returns a dict of
  non-empty, printable ``str`` values of at most 1000 characters;
* ``exif_to_text`` accepts that dict in both styles;
* the block parser's work stays inside its bounds (at most 4 x 65535 IFD
  entries looked at, at most ``_MAX_DECODE_BYTES`` value bytes decoded),
  whatever counts and offsets the block claims;
* ``load_image`` raises nothing but ``ImageLoadError``.

Three targets, picked by the first byte of the input: the bytes as a bare
EXIF block, as the APP1 payload of a small JPEG, or as a whole image file
(seeds: JPEG, PNG, TIFF, WebP and GIF files with EXIF).

Usage::

    python fuzz/fuzz_exif.py -max_total_time=60 -timeout=10 -rss_limit_mb=2048   # atheris
    python fuzz/fuzz_exif.py --plain --seconds 60                               # no atheris
    python fuzz/fuzz_exif.py --plain --runs 20000 --seed 1

With atheris installed (``pip install atheris``) the arguments are
libFuzzer's; a corpus directory may be given, else the built-in seeds are
written to a temporary one. Without atheris, or with ``--plain``, a plain
random mutation loop runs over the same seeds with the same checks (bit
flips, byte overwrites, truncation, splices, and EXIF-aware mutations that
set IFD counts, value offsets and sub-IFD pointers to absurd or recursive
values); it is reproducible with ``--seed``, saves a failing input to
``--artifact-dir`` and exits 1.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

try:  # atheris is optional: the plain loop below needs nothing but the project
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from exifclip import exif as _exif
        from exifclip.io import ImageLoadError, load_image
else:
    from exifclip import exif as _exif
    from exifclip.io import ImageLoadError, load_image

import numpy as np
import piexif
from PIL import Image

MAX_ENTRIES = 4 * 65535
FUZZ_MAX_PIXELS = 1 << 16  # keep decodes of mutated headers small and fast


class ContractError(AssertionError):
    """An input broke the documented contract."""


# -- seeds ---------------------------------------------------------------------------


def _piexif_block(byte_order_le: bool = False) -> bytes:
    I, E, G = piexif.ImageIFD, piexif.ExifIFD, piexif.GPSIFD  # noqa: E741, N806
    ifds = {
        "0th": {
            I.Make: b"Canon\x00",
            I.Model: b"Canon EOS 40D\x00",
            I.Orientation: 1,
            I.XResolution: (72, 1),
            I.YResolution: (72, 1),
            I.ResolutionUnit: 2,
            I.Software: b"GIMP 2.4.5\x00",
            I.DateTime: b"2008:07:31 10:38:11\x00",
        },
        "Exif": {
            E.ExposureTime: (1, 160),
            E.FNumber: (71, 10),
            E.ExposureProgram: 1,
            E.ISOSpeedRatings: 100,
            E.ExifVersion: b"0221",
            E.ComponentsConfiguration: b"\x01\x02\x03\x00",
            E.ShutterSpeedValue: (483328, 65536),
            E.ApertureValue: (368640, 65536),
            E.ExposureBiasValue: (0, 1),
            E.MeteringMode: 5,
            E.Flash: 9,
            E.FocalLength: (135, 1),
            E.UserComment: b"ASCII\x00\x00\x00hello",
            E.FlashpixVersion: b"0100",
            E.ColorSpace: 1,
            E.PixelXDimension: 100,
            E.PixelYDimension: 68,
            E.LensSpecification: ((24, 1), (70, 1), (28, 10), (28, 10)),
            E.MakerNote: b"\x00\x01" * 40,
        },
        "GPS": {
            G.GPSVersionID: (2, 2, 0, 0),
            G.GPSLatitudeRef: b"N",
            G.GPSLatitude: ((51, 1), (30, 1), (1234, 100)),
            G.GPSAltitude: (100, 1),
            G.GPSTimeStamp: ((10, 1), (38, 1), (11, 1)),
        },
        "Interop": {piexif.InteropIFD.InteroperabilityIndex: b"R98"},
        "1st": {I.Compression: 6},
        "thumbnail": None,
    }
    block = piexif.dump(ifds)
    if not byte_order_le:
        return block
    # The same tags, little-endian, as Pillow writes them.
    exif = Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow notes the thumbnail IFD has no data
        exif.load(block)
    return b"Exif\x00\x00" + exif.tobytes()


def _image_bytes(fmt: str, exif: bytes | None, **kwargs) -> bytes:
    rng = np.random.default_rng(len(fmt))
    image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    buf = io.BytesIO()
    if exif is not None:
        kwargs["exif"] = exif
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def seeds() -> list[bytes]:
    """Inputs the mutations start from; the first byte picks the target."""
    be, le = _piexif_block(), _piexif_block(byte_order_le=True)
    out = [bytes([0]) + be[6:], bytes([0]) + le[6:], bytes([1]) + be[6:]]
    for fmt, kw in [("JPEG", {}), ("PNG", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("GIF", {})]:
        out.append(bytes([2]) + _image_bytes(fmt, be if fmt != "GIF" else None, **kw))
    return out


_JPEG_PLAIN = None


def _jpeg_with_app1(payload: bytes) -> bytes:
    global _JPEG_PLAIN
    if _JPEG_PLAIN is None:
        _JPEG_PLAIN = _image_bytes("JPEG", None)
    payload = b"Exif\x00\x00" + payload[: 65533 - 6]
    return _JPEG_PLAIN[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + _JPEG_PLAIN[2:]


# -- the contract ----------------------------------------------------------------------


def _check_tags(tags: object) -> None:
    if not isinstance(tags, dict):
        raise ContractError(f"read_exif returned {type(tags).__name__}")
    for key, value in tags.items():
        if not (isinstance(key, str) and isinstance(value, str) and value):
            raise ContractError(f"bad item {key!r}: {value!r}")
        if len(value) > 1000 or not value.isprintable():
            raise ContractError(f"unreadable value for {key!r}: {value[:80]!r}")
    for style in ("default", "paper"):
        text = _exif.exif_to_text(tags, tags="all", style=style)
        if not isinstance(text, str):
            raise ContractError("exif_to_text returned a non-str")


def _read(source: object) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tags = _exif.read_exif(source, include_gps=True)
        except ImageLoadError:
            return
    n = sum(issubclass(w.category, _exif.ExifWarning) for w in caught)
    if n > 1:
        raise ContractError(f"{n} ExifWarnings for one call")
    _check_tags(tags)


def _decode(source: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = load_image(source, max_pixels=FUZZ_MAX_PIXELS)
        except ImageLoadError:
            return
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
        raise ContractError(f"load_image returned {out.dtype} {out.shape}")


def check(data: bytes) -> None:
    """Run one input through its target; raise on any breach of the contract."""
    if not data:
        return
    target, body = data[0] % 3, data[1:]
    if target == 0:
        problems: list[str] = []
        parser = _exif._parse_block(body, True, problems)
        if parser.entries > MAX_ENTRIES or parser.decoded > _exif._MAX_DECODE_BYTES:
            raise ContractError(f"unbounded work: {parser.entries} entries, {parser.decoded} bytes")
        _check_tags(parser.out)
        image = Image.new("RGB", (2, 2))
        image.info["exif"] = b"Exif\x00\x00" + body
        _read(image)
    elif target == 1:
        _read(_jpeg_with_app1(body))
    else:
        _read(body)
        _decode(body)


# -- plain random fuzzing (no atheris) ---------------------------------------------------

_INTERESTING_U32 = (0, 1, 2, 7, 8, 0x7F, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _ifd_entry_positions(tiff: bytes) -> list[tuple[int, str]]:
    """Byte positions of the IFD entries of a TIFF block (best effort), with its byte order."""
    if tiff[:2] not in (b"II", b"MM") or len(tiff) < 8:
        return []
    order = "<" if tiff[:2] == b"II" else ">"
    out, todo, seen = [], [struct.unpack(order + "L", tiff[4:8])[0]], set()
    while todo and len(seen) < 8:
        off = todo.pop()
        if off in seen or off + 2 > len(tiff):
            continue
        seen.add(off)
        (count,) = struct.unpack(order + "H", tiff[off : off + 2])
        for i in range(min(count, (len(tiff) - off - 2) // 12)):
            pos = off + 2 + 12 * i
            tag, typ = struct.unpack(order + "HH", tiff[pos : pos + 4])
            out.append((pos, order))
            if tag in (0x8769, 0x8825, 0xA005) and typ in (4, 13):
                todo.append(struct.unpack(order + "L", tiff[pos + 8 : pos + 12])[0])
    return out


def mutate(data: bytes, rnd: random.Random, pool: list[bytes]) -> bytes:
    head, buf = data[:1], bytearray(data[1:])
    for _ in range(rnd.randint(1, 4)):
        if not buf:
            break
        op = rnd.randrange(7)
        if op == 0:  # bit flip
            i = rnd.randrange(len(buf))
            buf[i] ^= 1 << rnd.randrange(8)
        elif op == 1:  # byte overwrite
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
        elif op == 2:  # truncation
            del buf[rnd.randrange(len(buf)) :]
        elif op == 3:  # splice in a piece of another seed
            other = rnd.choice(pool)[1:]
            a = rnd.randrange(len(other))
            piece = other[a : a + rnd.randint(1, 64)]
            i = rnd.randrange(len(buf))
            buf[i : i + len(piece)] = piece
        elif op == 4:  # duplicate or insert a run of bytes
            i = rnd.randrange(len(buf))
            buf[i:i] = bytes(buf[i : i + rnd.randint(1, 32)]) * rnd.randint(1, 4)
        else:  # EXIF-aware: absurd count, offset, or a sub-IFD pointer looping back
            tiff_at = bytes(buf).find(b"II*\x00")
            if tiff_at < 0:
                tiff_at = bytes(buf).find(b"MM\x00*")
            if tiff_at < 0:
                continue
            entries = _ifd_entry_positions(bytes(buf[tiff_at:]))
            if not entries:
                continue
            pos, order = rnd.choice(entries)
            pos += tiff_at
            field = rnd.choice((4, 8))  # the count, or the value/offset
            if op == 5 or field == 4:
                value = rnd.choice(_INTERESTING_U32 + (len(buf) - tiff_at, pos - tiff_at - 2))
            else:  # point at an IFD that is already being read: a loop
                value = rnd.choice([e[0] - tiff_at - 2 for e in entries[:4]] + [8])
            buf[pos + field : pos + field + 4] = struct.pack(order + "L", value & 0xFFFFFFFF)
    return head + bytes(buf)


def plain_loop(seconds: float, runs: int | None, seed: int, artifact_dir: Path, timeout: float) -> int:
    rnd = random.Random(seed)
    pool = seeds()
    start, n, slowest = time.monotonic(), 0, (0.0, b"")
    while (runs is None or n < runs) and time.monotonic() - start < seconds:
        data = mutate(rnd.choice(pool), rnd, pool) if n >= len(pool) else pool[n]
        t0 = time.monotonic()
        try:
            check(data)
        except Exception:  # noqa: BLE001 - any escape is a finding: report and keep it
            artifact_dir.mkdir(parents=True, exist_ok=True)
            path = artifact_dir / f"crash-{seed}-{n}.bin"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"FAILED after {n} runs; input saved to {path} (replay: python fuzz/fuzz_exif.py --replay {path})")
            return 1
        took = time.monotonic() - t0
        if took > slowest[0]:
            slowest = (took, data)
        if took > timeout:
            artifact_dir.mkdir(parents=True, exist_ok=True)
            path = artifact_dir / f"slow-{seed}-{n}.bin"
            path.write_bytes(data)
            print(f"FAILED: one input took {took:.1f} s (> {timeout} s); saved to {path}")
            return 1
        n += 1
        if n % 2000 == 0:
            print(f"#{n} runs, {time.monotonic() - start:.0f} s, slowest input {slowest[0] * 1e3:.0f} ms", flush=True)
    print(f"done: {n} runs in {time.monotonic() - start:.0f} s, no failure; slowest input {slowest[0] * 1e3:.0f} ms")
    return 0


def _atheris_main(argv: list[str]) -> None:
    def test_one_input(data: bytes) -> None:
        check(bytes(data))

    for arg in argv[1:]:  # libFuzzer refuses an artifact prefix whose folder is missing
        if arg.startswith("-artifact_prefix=") and arg.endswith("/"):
            os.makedirs(arg.split("=", 1)[1], exist_ok=True)
    if not any(os.path.isdir(a) for a in argv[1:] if not a.startswith("-")):
        corpus = tempfile.mkdtemp(prefix="exifclip-fuzz-corpus-")
        for i, s in enumerate(seeds()):
            Path(corpus, f"seed-{i}").write_bytes(s)
        argv = [*argv, corpus]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    ap.add_argument("--plain", action="store_true", help="the plain random loop, even with atheris")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take")
    ap.add_argument("--rss-limit-mb", type=int, default=4096, help="address-space limit (plain loop)")
    ap.add_argument("--artifact-dir", type=Path, default=Path("fuzz-artifacts"))
    ap.add_argument("--replay", type=Path, default=None, help="run one saved input and exit")
    ours, rest = ap.parse_known_args(argv[1:])
    if ours.replay is not None:
        check(ours.replay.read_bytes())
        print("input passes")
        return 0
    if atheris is not None and not ours.plain:
        _atheris_main([argv[0], *rest])
        return 0
    seconds, runs = ours.seconds, ours.runs
    for arg in rest:  # the libFuzzer flags that have a plain-loop meaning
        key, _, value = arg.lstrip("-").partition("=")
        if key == "max_total_time" and value.isdigit():
            seconds = float(value)
        elif key == "runs" and value.isdigit():
            runs = int(value)
        elif key == "timeout" and value.isdigit():
            ours.timeout = float(value)
        elif key == "seed" and value.isdigit():
            ours.seed = int(value)
        elif key == "rss_limit_mb" and value.isdigit():
            ours.rss_limit_mb = max(int(value), 1024)
    if atheris is None and rest:
        print("atheris is not installed: running the plain random loop instead", file=sys.stderr)
    limit = ours.rss_limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return plain_loop(seconds, runs, ours.seed, ours.artifact_dir, ours.timeout)


if __name__ == "__main__":
    sys.exit(main())
