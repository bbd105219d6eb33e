"""Property and fuzz tests of the EXIF reader on hostile blocks.

The contract checked here (``docs/reliability.md``): ``read_exif`` raises
nothing but ``ImageLoadError`` (for sources that are not readable images),
warns at most one ``ExifWarning`` per call, returns non-empty printable
``str`` values, keeps the tags it could read, and does bounded work whatever
a block claims (counted in IFD entries and decoded value bytes, not timed);
``exif_to_text`` accepts whatever ``read_exif`` returns. The longer,
coverage-guided run of the same checks is ``fuzz/fuzz_exif.py``.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings

import piexif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from exifclip import exif as exif_mod
from exifclip.exif import ExifWarning, exif_to_text, read_exif
from exifclip.io import ImageLoadError

I, E, G = piexif.ImageIFD, piexif.ExifIFD, piexif.GPSIFD  # noqa: E741
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
U32 = (0, 1, 7, 8, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
CAMERA = {
    "0th": {
        I.Make: b"NIKON CORPORATION\x00",
        I.Model: b"NIKON D3200\x00",
        I.XResolution: (300, 1),
        I.Software: b"Ver.1.00\x00",
        I.Orientation: 1,
    },
    "Exif": {
        E.ExposureTime: (1, 500),
        E.FNumber: (28, 10),
        E.ISOSpeedRatings: 100,
        E.MeteringMode: 5,
        E.Flash: 16,
        E.UserComment: b"ASCII\x00\x00\x00hi there",
        E.LensSpecification: ((18, 1), (55, 1), (35, 10), (56, 10)),
    },
    "GPS": {G.GPSLatitudeRef: b"N", G.GPSLatitude: ((37, 1), (46, 1), (30, 1))},
    "Interop": {piexif.InteropIFD.InteroperabilityIndex: b"R98"},
}


def camera_tiff() -> bytes:
    return piexif.dump(CAMERA)[6:]  # big-endian TIFF structure, no "Exif\0\0"


def parse(raw: bytes):
    """Parse a block directly; return (parser, problems) after checking the invariants."""
    problems: list[str] = []
    parser = exif_mod._parse_block(raw, True, problems)
    assert parser.entries <= 4 * 65535
    assert parser.decoded <= exif_mod._MAX_DECODE_BYTES
    assert_tags(parser.out)
    return parser, problems


def assert_tags(tags) -> None:
    assert isinstance(tags, dict)
    for key, value in tags.items():
        assert isinstance(key, str) and isinstance(value, str) and value, (key, value)
        assert len(value) <= 1000 and value.isprintable(), (key, value)
    for style in ("default", "paper"):
        assert isinstance(exif_to_text(tags, tags="all", style=style), str)


def read_block(raw: bytes) -> tuple[dict, int]:
    """``read_exif`` on a block attached to a PIL image: (tags, number of ExifWarnings)."""
    img = Image.new("RGB", (2, 2))
    img.info["exif"] = b"Exif\x00\x00" + raw
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tags = read_exif(img, include_gps=True)
    assert_tags(tags)
    return tags, sum(issubclass(w.category, ExifWarning) for w in caught)


def entries(tiff: bytes) -> dict[int, int]:
    """Tag -> byte position of its entry, over IFD0, Exif, GPS and Interop (big-endian)."""
    out, todo = {}, [struct.unpack(">L", tiff[4:8])[0]]
    while todo:
        off = todo.pop()
        (count,) = struct.unpack(">H", tiff[off : off + 2])
        for i in range(count):
            pos = off + 2 + 12 * i
            (tag,) = struct.unpack(">H", tiff[pos : pos + 2])
            out.setdefault(tag, pos)
            if tag in (0x8769, 0x8825, 0xA005):
                todo.append(struct.unpack(">L", tiff[pos + 8 : pos + 12])[0])
    return out


def put_u32(tiff: bytes, pos: int, value: int) -> bytes:
    return tiff[:pos] + struct.pack(">L", value) + tiff[pos + 4 :]


# -- random and mutated blocks ---------------------------------------------------------


@FUZZ
@given(st.sampled_from([b"II*\x00", b"MM\x00*", b""]), st.binary(max_size=600))
def test_random_blocks(head, body):
    parse(head + body)
    _, n_warnings = read_block(head + body)
    assert n_warnings <= 1


TAG_VALUES = st.one_of(
    st.tuples(st.just(I.Make), st.binary(max_size=40)),
    st.tuples(st.just(I.Model), st.binary(max_size=40)),
    st.tuples(st.just(I.Orientation), st.integers(0, 0xFFFF)),
    st.tuples(st.just(I.XResolution), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))),
    st.tuples(st.just(E.ExposureTime), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))),
    st.tuples(
        st.just(E.ExposureBiasValue), st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1))
    ),
    st.tuples(
        st.just(E.ShutterSpeedValue), st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1))
    ),
    st.tuples(st.just(E.Flash), st.integers(0, 0xFFFF)),
    st.tuples(st.just(E.ExifVersion), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(E.UserComment), st.binary(max_size=60)),
    st.tuples(st.just(E.ComponentsConfiguration), st.binary(min_size=4, max_size=4)),
)


@FUZZ
@given(st.lists(TAG_VALUES, max_size=8), st.data())
def test_piexif_built_blocks_with_bit_flips_and_truncation(tags, data):
    ifds = {"0th": {}, "Exif": {}}
    for tag, value in tags:
        ifds["0th" if tag in (I.Make, I.Model, I.Orientation, I.XResolution) else "Exif"][tag] = value
    tiff = bytearray(piexif.dump(ifds)[6:])
    parser, problems = parse(bytes(tiff))
    assert not problems  # a well-formed block reads without complaint
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(tiff) - 1))
        tiff[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(tiff)))
    parse(bytes(tiff[:cut]))
    _, n_warnings = read_block(bytes(tiff[:cut]))
    assert n_warnings <= 1


@FUZZ
@given(st.data())
def test_absurd_counts_and_offsets_keep_the_other_tags(data):
    tiff = camera_tiff()
    where = entries(tiff)
    tag = data.draw(st.sampled_from(sorted(set(where) - {I.Make})))
    field = data.draw(st.sampled_from([4, 8]))  # the count, or the value / offset
    value = data.draw(st.sampled_from(U32 + (len(tiff), len(tiff) - 1, 8, where[tag] - 2)))
    bad = put_u32(tiff, where[tag] + field, value)
    parser, _ = parse(bad)
    tags, n_warnings = read_block(bad)
    assert n_warnings <= 1
    # Every entry is read on its own: breaking one never loses IFD0's Make.
    assert tags["Make"] == "NIKON CORPORATION"


# -- the faults one by one -------------------------------------------------------------


def test_recursive_ifd_pointers_are_read_once():
    tiff = camera_tiff()
    where = entries(tiff)
    ifd0 = struct.unpack(">L", tiff[4:8])[0]
    exif_ifd = struct.unpack(">L", tiff[where[0x8769] + 8 : where[0x8769] + 12])[0]
    looped = put_u32(tiff, where[0xA005] + 8, exif_ifd)  # Interop -> Exif IFD
    looped = put_u32(looped, where[0x8825] + 8, ifd0)  # GPS -> IFD0
    parser, problems = parse(looped)
    assert sum("loop" in p for p in problems) == 2
    assert parser.out["Make"] == "NIKON CORPORATION" and parser.out["Exposure Time"] == "1/500"
    assert parser.entries <= 3 * 10  # each IFD walked once
    self_loop = put_u32(tiff, where[0x8769] + 8, ifd0)  # Exif -> IFD0
    tags, n_warnings = read_block(self_loop)
    assert n_warnings == 1 and tags["Make"] == "NIKON CORPORATION" and "Exposure Time" not in tags


def _ifd0(entries_: list[bytes], tail: bytes) -> bytes:
    """A little-endian block: header, one IFD of the given entries, then ``tail``."""
    return (
        b"II*\x00"
        + struct.pack("<L", 8)
        + struct.pack("<H", len(entries_))
        + b"".join(entries_)
        + b"\x00\x00\x00\x00"
        + tail
    )


def test_many_entries_on_the_same_bytes_do_bounded_work():
    # Regression found while fuzzing: 4000 "Make" entries all pointing at the same 8000
    # bytes of binary junk made the parser decode 32 MB (seconds per 56 KB JPEG block;
    # minutes for a PNG or TIFF block). Work is now capped at _MAX_DECODE_BYTES.
    n, size = 4000, 8000
    data_at = 8 + 2 + 12 * (n + 1) + 4
    make = struct.pack("<HHLL", 0x010F, 2, 6, data_at)  # a valid Make first
    junk = [struct.pack("<HHLL", 0x0110, 2, size, data_at + 6)] * n  # then Model, over and over
    block = _ifd0([make, *junk], b"Canon\x00" + bytes(0x80 | (i % 97) for i in range(size)))
    parser, problems = parse(block)
    assert parser.out == {"Make": "Canon"}
    assert parser.decoded <= exif_mod._MAX_DECODE_BYTES < n * size
    assert any("bytes of tag values" in p for p in problems)
    assert read_block(block)[1] == 1


@pytest.mark.parametrize("typ, count", [(12, 0xFFFFFFFF), (5, 0x7FFFFFFF), (2, 0xFFFFFFF0), (4, 0x40000000)])
def test_gigabyte_claims_are_rejected_not_allocated(typ, count):
    # 34 GB of doubles, 17 GB of rationals, 4 GB of text, 4 GB of LONGs: all claimed by
    # 12-byte entries of a 60-byte block. Nothing of that size may be allocated.
    block = _ifd0(
        [struct.pack("<HHLL", 0x0110, typ, count, 30), struct.pack("<HHLL", 0x010F, 2, 4, 0x0043414E)], b""
    )  # Make "NAC\0" inline
    tracemalloc.start()
    try:
        parser, problems = parse(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert parser.out == {"Make": "NAC"}
    assert any("runs past the end of the block" in p for p in problems)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"Exif\x00\x00",
        b"II",
        b"II*\x00",
        b"II*\x00\x08\x00\x00\x00",
        b"II*\x00\x08\x00\x00\x00\xff\xff",
        b"MM\x00*\xff\xff\xff\xff",
        b"II+\x00\x08\x00\x00\x00" + b"\x00" * 20,
    ],
)
def test_tiny_and_headless_blocks(raw):
    parser, _ = parse(raw)
    assert parser.out == {}


def test_oversized_block_is_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(exif_mod, "_MAX_BLOCK_BYTES", 1000)
    parser, problems = parse(camera_tiff() + bytes(2000))
    assert parser.out == {} and parser.entries == 0
    assert "larger than the 1000-byte limit" in problems[0]


@FUZZ
@given(st.binary(min_size=1, max_size=2000))
def test_jpeg_app1_payloads(payload):
    # The bytes as the APP1 segment of a real JPEG: Pillow's header parser then ours.
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    plain = buf.getvalue()
    seg = b"Exif\x00\x00" + payload
    jpeg = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + plain[2:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tags = read_exif(jpeg)
        except ImageLoadError:
            return
    assert sum(issubclass(w.category, ExifWarning) for w in caught) <= 1
    assert_tags(tags)


@FUZZ
@given(
    st.dictionaries(
        st.text(max_size=20), st.one_of(st.none(), st.text(max_size=40), st.integers(), st.floats()), max_size=10
    )
)
def test_exif_to_text_takes_any_dict(d):
    for style in ("default", "paper"):
        for tags in (None, "all", list(d)):
            text = exif_to_text(d, tags=tags, style=style)
            assert isinstance(text, str)


# -- real awkward files --------------------------------------------------------------------


@pytest.mark.shared
def test_exif_samples_pass(shared_data, monkeypatch):
    """Every file of exif-samples passes: no exception but ImageLoadError, at most one
    ExifWarning, readable values, bounded work; and the camera files keep their Make."""
    files = sorted(
        p
        for p in (shared_data / "exif-samples").rglob("*")
        if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".tif", ".tiff"}
    )
    assert len(files) > 50
    parsers = []
    real = exif_mod._parse_block
    monkeypatch.setattr(exif_mod, "_parse_block", lambda *a: parsers.append(real(*a)) or parsers[-1])
    refused, with_make = [], 0
    for path in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                tags = read_exif(path, include_gps=True)
            except ImageLoadError as exc:
                assert str(path) in str(exc)
                refused.append(path.name)
                continue
        assert sum(issubclass(w.category, ExifWarning) for w in caught) <= 1, path
        assert_tags(tags)
        with_make += "Make" in tags
    assert all(p.entries <= 4 * 65535 and p.decoded <= exif_mod._MAX_DECODE_BYTES for p in parsers)
    assert not refused, refused  # Pillow opens all of them
    assert with_make >= len(files) // 2
