"""Tests for exifclip.exif: EXIF blocks built by hand with piexif, then read back."""

from __future__ import annotations

import csv
import io
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import piexif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from exifclip import _exif_tables as tables
from exifclip.exif import DEFAULT_TAGS, PAPER_TAGS, ExifWarning, exif_to_text, read_exif
from exifclip.io import ImageLoadError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
I, E, G = piexif.ImageIFD, piexif.ExifIFD, piexif.GPSIFD  # noqa: E741


def _block(zeroth=None, exif=None, gps=None, first=None, thumbnail=None) -> bytes:
    return piexif.dump(
        {"0th": zeroth or {}, "Exif": exif or {}, "GPS": gps or {}, "1st": first or {}, "thumbnail": thumbnail}
    )


def _jpeg(raw_exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": raw_exif} if raw_exif is not None else {}
    Image.new("RGB", (16, 16), (120, 60, 30)).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _read(**ifds) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExifWarning)  # well-formed blocks must not warn
        return read_exif(_jpeg(_block(**ifds)))


def _read_raw(raw: bytes) -> tuple[dict, list]:
    """Read a raw (possibly broken) block through a PIL image; return tags and ExifWarnings."""
    img = Image.new("RGB", (4, 4))
    img.info["exif"] = raw
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_exif(img)
    return out, [w for w in caught if issubclass(w.category, ExifWarning)]


def _entry(tiff: bytes, ifd_offset: int, tag: int) -> int:
    """Byte position of ``tag``'s 12-byte entry in a big-endian IFD (piexif writes MM)."""
    (count,) = struct.unpack(">H", tiff[ifd_offset : ifd_offset + 2])
    for i in range(count):
        pos = ifd_offset + 2 + 12 * i
        if struct.unpack(">H", tiff[pos : pos + 2])[0] == tag:
            return pos
    raise KeyError(hex(tag))


def _patch_u32(tiff: bytes, pos: int, value: int) -> bytes:
    return tiff[:pos] + struct.pack(">L", value) + tiff[pos + 4 :]


CAMERA = dict(
    zeroth={
        I.Make: b"NIKON CORPORATION\x00",
        I.Model: b"NIKON D3200\x00\x00\x00",
        I.XResolution: (300, 1),
        I.YResolution: (300, 1),
        I.ResolutionUnit: 2,
        I.Orientation: 1,
    },
    exif={
        E.ExposureTime: (1, 500),
        E.FNumber: (28, 10),
        E.ISOSpeedRatings: 100,
        E.FocalLength: (300, 10),
        E.MeteringMode: 5,
        E.Flash: 0x10,
        E.ExposureBiasValue: (-1, 3),
        E.DateTimeOriginal: b"2013:05:12 10:11:12",
    },
)


# -- value rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    "rational, text",
    [
        ((1, 500), "1/500"),
        ((10, 5000), "1/500"),
        ((1, 2), "1/2"),
        ((5, 10), "1/2"),
        ((2, 1), "2"),
        ((13, 10), "1.3"),
        ((10, 32), "1/3.2"),
        ((1, 3000), "1/3000"),
        ((30, 1), "30"),
    ],
)
def test_exposure_time(rational, text):
    value = _read(exif={E.ExposureTime: rational})["Exposure Time"]
    assert value == text
    assert re.fullmatch(r"\d+(/\d+)?(\.\d+)?", value)


@pytest.mark.parametrize("rational", [(0, 1), (1, 0)])
def test_meaningless_exposure_is_dropped(rational):
    assert "Exposure Time" not in _read(exif={E.ExposureTime: rational, E.FNumber: (4, 1)})


def test_aperture_focal_iso_and_resolution():
    d = _read(
        zeroth={I.XResolution: (72, 1), I.ResolutionUnit: 3},
        exif={
            E.FNumber: (28, 10),
            E.FocalLength: (30, 1),
            E.ISOSpeedRatings: (400, 800),
            E.FocalLengthIn35mmFilm: 45,
            E.MaxApertureValue: (297, 100),
            E.ShutterSpeedValue: (8966, 1000),
            E.CompressedBitsPerPixel: (16, 5),
        },
    )
    assert d["F-Number"] == "2.8"
    assert d["Focal Length"] == "30.0 mm"
    assert d["Focal Length 35"] == "45 mm"
    assert d["ISO Speed Ratings"] == "400"  # first of several values
    assert d["X Resolution"] == "72" and d["Resolution Unit"] == "cm"
    assert d["Max Aperture Value"] == "2.8"  # APEX 2.97 -> f/2.8
    assert d["Shutter Speed Value"] == "1/500"  # APEX 8.966 -> 1/500 s
    assert d["Compressed Bits Per Pixel"] == "3.2"
    assert _read(exif={E.FNumber: (11, 1)})["F-Number"] == "11.0"


@pytest.mark.parametrize(
    "rational, text",
    [
        ((0, 1), "0 EV"),
        ((-1, 3), "-1/3 EV"),
        ((-2, 6), "-1/3 EV"),
        ((2, 3), "+2/3 EV"),
        ((1, 1), "+1 EV"),
        ((7, 10), "+0.7 EV"),
        ((-3, 2), "-3/2 EV"),
    ],
)
def test_exposure_bias(rational, text):
    assert _read(exif={E.ExposureBiasValue: rational})["Exposure Bias Value"] == text


@pytest.mark.parametrize(
    "code, text",
    [
        (0x00, "Flash did not fire"),
        (0x01, "Flash fired"),
        (0x05, "Flash fired, return light not detected"),
        (0x10, "Flash did not fire, compulsory flash mode"),
        (0x18, "Flash did not fire, auto mode"),
        (0x19, "Flash fired, auto mode"),
        (0x20, "No flash function"),
        (0x5F, "Flash fired, auto mode, return light detected, red-eye reduction mode"),
    ],
)
def test_flash_bits(code, text):
    assert _read(exif={E.Flash: code})["Flash"] == text


@pytest.mark.parametrize(
    "ifd, tag, code, name, label",
    [
        ("exif", E.MeteringMode, 5, "Metering Mode", "Pattern"),
        ("exif", E.MeteringMode, 2, "Metering Mode", "Center-weighted average"),
        ("exif", E.MeteringMode, 77, "Metering Mode", "77"),  # undefined code: its number
        ("exif", E.WhiteBalance, 1, "White Balance Mode", "Manual"),
        ("exif", E.LightSource, 1, "White Balance", "Daylight"),  # metadata-extractor's name
        ("exif", E.ExposureProgram, 3, "Exposure Program", "Aperture priority"),
        ("exif", E.ExposureMode, 2, "Exposure Mode", "Auto bracket"),
        ("exif", E.SceneCaptureType, 3, "Scene Capture Type", "Night scene"),
        ("exif", E.ColorSpace, 0xFFFF, "Color Space", "Uncalibrated"),
        ("exif", E.SensingMethod, 2, "Sensing Method", "One-chip color area"),
        ("exif", E.Contrast, 1, "Contrast", "Soft"),
        ("exif", E.Saturation, 2, "Saturation", "High"),
        ("exif", E.Sharpness, 2, "Sharpness", "Hard"),
        ("exif", E.GainControl, 3, "Gain Control", "Low gain down"),
        ("exif", E.SubjectDistanceRange, 1, "Subject Distance Range", "Macro"),
        ("exif", E.CustomRendered, 1, "Custom Rendered", "Custom process"),
        ("zeroth", I.Orientation, 6, "Orientation", "Rotate 90 CW"),
        ("zeroth", I.YCbCrPositioning, 2, "YCbCr Positioning", "Co-sited"),
        ("zeroth", I.ResolutionUnit, 2, "Resolution Unit", "inches"),
    ],
)
def test_enumerations(ifd, tag, code, name, label):
    assert _read(**{ifd: {tag: code}})[name] == label


def test_undefined_byte_tags():
    d = _read(
        exif={
            E.ComponentsConfiguration: b"\x01\x02\x03\x00",
            E.ExifVersion: b"0230",
            E.FlashpixVersion: b"0100",
            E.FileSource: b"\x03",
            E.SceneType: b"\x01",
        }
    )
    assert d["Components Configuration"] == "YCbCr"
    assert d["Exif Version"] == "2.30" and d["FlashPix Version"] == "1.00"
    assert d["File Source"] == "Digital camera"
    assert d["Scene Type"] == "Directly photographed"


def test_text_is_cleaned_and_empty_values_dropped():
    d = _read(
        zeroth={
            I.Make: b"Canon\x00\x00\x00\x00",
            I.Model: b"  Canon  EOS 5D \x00",
            I.Software: b"\x00\x00\x00\x00\x00",
            I.Artist: b"        ",
            I.ImageDescription: b"\x01\x02\xfe\xff\xfe\xff",
        },
        exif={
            E.UserComment: b"ASCII\x00\x00\x00Hello world   \x00",
            E.LensModel: b"EF50mm f/1.8\x00junk after the NUL",
        },
    )
    assert d["Make"] == "Canon"
    assert d["Model"] == "Canon EOS 5D"
    assert d["User Comment"] == "Hello world"
    assert d["Lens Model"] == "EF50mm f/1.8"
    for gone in ("Software", "Artist", "Image Description"):
        assert gone not in d
    assert "User Comment" not in _read(exif={E.UserComment: b"\x00" * 8 + b"\x00" * 40})
    unicode = _read(exif={E.UserComment: b"UNICODE\x00" + "Grüße".encode("utf-16-be")})
    assert unicode["User Comment"] == "Grüße"


def test_makernote_and_thumbnail_are_dropped():
    thumb = _jpeg()
    d = _read(
        zeroth={I.Make: b"NIKON", I.XResolution: (72, 1)},
        exif={E.MakerNote: b"Nikon\x00\x02\x10\x00\x00" + bytes(range(256)) * 8, E.ExposureTime: (1, 60)},
        first={I.XResolution: (96, 1), I.Make: b"THUMB", I.JPEGInterchangeFormat: 0, I.JPEGInterchangeFormatLength: 0},
        thumbnail=thumb,
    )
    assert d == {"Make": "NIKON", "X Resolution": "72", "Exposure Time": "1/60"}


def test_gps_only_on_request():
    gps = {
        G.GPSLatitudeRef: b"N",
        G.GPSLatitude: ((37, 1), (46, 1), (30, 1)),
        G.GPSAltitude: (1234, 10),
        G.GPSAltitudeRef: 0,
        G.GPSTimeStamp: ((14, 1), (27, 1), (724, 100)),
    }
    raw = _jpeg(_block(zeroth={I.Make: b"Apple"}, gps=gps))
    assert read_exif(raw) == {"Make": "Apple"}
    d = read_exif(raw, include_gps=True)
    assert d["GPS Latitude"] == "37.775" and d["GPS Latitude Ref"] == "N"
    assert d["GPS Altitude"] == "123.4 m" and d["GPS Altitude Ref"] == "Above sea level"
    assert d["GPS Time-Stamp"] == "14:27:07.24"


# -- sources ---------------------------------------------------------------------


def test_every_source_kind_gives_the_same_tags(tmp_path):
    data = _jpeg(_block(**CAMERA))
    path = tmp_path / "camera.jpg"
    path.write_bytes(data)
    expected = read_exif(data)
    assert expected["Make"] == "NIKON CORPORATION"
    assert read_exif(path) == expected
    assert read_exif(str(path)) == expected
    with open(path, "rb") as fh:
        assert read_exif(fh) == expected
    with Image.open(path) as img:
        assert read_exif(img) == expected
    assert list(expected)[:2] == ["Make", "Model"]  # file order: IFD0 first


def test_tiff_png_and_webp(tmp_path):
    block = _block(zeroth={I.Make: b"Canon"}, exif={E.ExposureTime: (1, 250)})
    for fmt in ("TIFF", "PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, fmt, exif=block)
        d = read_exif(buf.getvalue())
        assert d["Make"] == "Canon" and d["Exposure Time"] == "1/250", fmt


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
    b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def test_no_exif_gives_empty_dict_without_warning():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    xmp_only = io.BytesIO()
    Image.new("RGB", (8, 8)).save(xmp_only, "JPEG", xmp=XMP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_exif(_jpeg()) == {}
        assert read_exif(xmp_only.getvalue()) == {}  # XMP is not EXIF
        assert read_exif(buf.getvalue()) == {}
        assert read_exif(Image.new("L", (4, 4))) == {}
        assert read_exif(np.zeros((4, 4, 3), np.uint8)) == {}


def test_missing_and_non_image_files_raise_naming_them(tmp_path):
    with pytest.raises(ImageLoadError, match="nothere.jpg"):
        read_exif(tmp_path / "nothere.jpg")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image at all")
    with pytest.raises(ImageLoadError, match="notes.txt"):
        read_exif(notes)


# -- malformed EXIF ----------------------------------------------------------------


def _camera_tiff() -> tuple[bytes, int]:
    tiff = _block(**CAMERA)[6:]
    exif_ifd = struct.unpack(">L", tiff[_entry(tiff, 8, 0x8769) + 8 :][:4])[0]
    return tiff, exif_ifd


def test_truncated_block_keeps_ifd0_and_warns_once(tmp_path):
    tiff, exif_ifd = _camera_tiff()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(_jpeg(b"Exif\x00\x00" + tiff[: exif_ifd + 2 + 12 * 2]))
    with pytest.warns(ExifWarning) as record:
        d = read_exif(path)
    assert len(record) == 1
    assert "truncated.jpg" in str(record[0].message) and "truncated" in str(record[0].message)
    assert d["Make"] == "NIKON CORPORATION" and d["Model"] == "NIKON D3200"
    assert "Exposure Time" not in d  # its value lay past the cut


@pytest.mark.parametrize("fault", ["exif_pointer", "value_offset", "loop", "huge_count"])
def test_bad_offsets_give_partial_result_and_one_warning(fault):
    tiff, exif_ifd = _camera_tiff()
    if fault == "exif_pointer":
        tiff = _patch_u32(tiff, _entry(tiff, 8, 0x8769) + 8, 0xFFFF0000)
    elif fault == "value_offset":
        tiff = _patch_u32(tiff, _entry(tiff, 8, I.Model) + 8, 0x7FFFFFF0)
    elif fault == "loop":
        tiff = _patch_u32(tiff, _entry(tiff, 8, 0x8769) + 8, 8)
    else:
        tiff = _patch_u32(tiff, _entry(tiff, 8, I.Model) + 4, 0x7FFFFFFF)
    d, record = _read_raw(b"Exif\x00\x00" + tiff)
    assert len(record) == 1
    assert d["Make"] == "NIKON CORPORATION"
    if fault in ("value_offset", "huge_count"):
        assert "Model" not in d and d["Exposure Time"] == "1/500"
    else:
        assert d["Model"] == "NIKON D3200" and "Exposure Time" not in d


@pytest.mark.parametrize(
    "raw", [b"Exif\x00\x00XX\x00*" + b"\x00" * 20, b"Exif\x00\x00II", b"Exif\x00\x00II*\x00\xff\xff\xff\x00"]
)
def test_garbage_block_warns_once_and_returns_empty(raw):
    d, record = _read_raw(raw)
    assert d == {} and len(record) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_blocks_never_raise(data):
    tiff, _ = _camera_tiff()
    raw = bytearray(tiff)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    d, record = _read_raw(b"Exif\x00\x00" + bytes(raw[:cut]))
    assert len(record) <= 1
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in d.items())


# -- text ---------------------------------------------------------------------------


def test_exif_to_text_default_order_and_overrides():
    d = _read(**CAMERA)
    text = exif_to_text(d)
    assert text.startswith(
        "Make: NIKON CORPORATION, Model: NIKON D3200, Exposure Time: 1/500, "
        "F-Number: 2.8, ISO Speed Ratings: 100, Focal Length: 30.0 mm, "
    )
    assert "Metering Mode: Pattern" in text and "Date/Time" not in text  # not a default tag
    shuffled = dict(reversed(list(d.items())))
    assert exif_to_text(shuffled) == text  # order comes from DEFAULT_TAGS, not the dict
    assert exif_to_text(d, tags=["Flash", "Make", "GPS Latitude"]) == (
        "Flash: Flash did not fire, compulsory flash mode, Make: NIKON CORPORATION"
    )
    every = exif_to_text(shuffled, tags="all")  # the dict's own order, every tag
    assert every.startswith("Focal Length: 30.0 mm, Flash: ")
    assert every.endswith("Make: NIKON CORPORATION")
    assert "Date/Time Original: 2013:05:12 10:11:12" in every
    assert exif_to_text({"Make": "  ", "Model": None, "Flash": ""}) == ""


def test_exif_to_text_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="read_exif"):
        exif_to_text(tmp_path / "a.jpg")
    with pytest.raises(TypeError, match="read_exif"):
        exif_to_text("Make: Canon")
    with pytest.raises(ValueError, match="style"):
        exif_to_text({"Make": "Canon"}, style="fancy")
    with pytest.raises(ValueError, match="'all'"):
        exif_to_text({"Make": "Canon"}, tags="Make")
    with pytest.raises(TypeError):
        exif_to_text({"Make": "Canon"}, tags=[1, 2])


def test_paper_style_reproduces_official_rules():
    d = _read(**CAMERA)
    d["Artist"] = "someone"  # not among PAPER_TAGS
    assert exif_to_text(d, style="paper") == (
        "Make: NIKONCORPORATION, Model: NIKOND3200, Orientation: Unknown, "
        "X Resolution: 300 dots per inch, Y Resolution: 300 dots per inch, Resolution Unit: Inch, "
        "Exposure Time: 1/500sec, F-Number: F2.8, ISO Speed Ratings: 100, "
        "Date/Time Original: 20130512101112, Exposure Bias Value: -1 EV, "
        "Metering Mode: Multi-segment, Flash: Unknown, Focal Length: 30.0 mm"
    )


@pytest.mark.parametrize(
    "tag, value, paper",
    [
        ("Exposure Time", "1/2", "0.5sec"),  # metadata-extractor writes short decimals
        ("Exposure Time", "1/4", "0.25sec"),
        ("Exposure Time", "1/8", "1/8sec"),
        ("Exposure Time", "2", "2sec"),
        ("F-Number", "4.0", "F4"),
        ("Exposure Bias Value", "+1/3 EV", "0 EV"),  # official floor division
        ("Exposure Bias Value", "-2/3 EV", "-1 EV"),
        ("Exposure Bias Value", "0 EV", "0 EV"),
        ("Flash", "Flash did not fire", "Flashdidnotfire"),
        ("Flash", "Flash fired, auto mode", "Flashfired,auto"),
        ("White Balance Mode", "Auto", "Autowhitebalance"),
        ("Gain Control", "High gain up", "Lowgaindown"),  # metadata-extractor's own order
        ("Focal Length", "4.2 mm", "4.2 mm"),
        ("Exif Image Width", "4000", "4000pixels"),
        ("Focal Plane X Resolution", "4433.33", "0"),
        ("Interoperability Index", "R98", "Unknown"),
    ],
)
def test_paper_values(tag, value, paper):
    assert exif_to_text({tag: value}, tags=[tag], style="paper") == f"{tag}: {paper}"


@pytest.mark.parametrize(
    "tag, value, refined",
    [
        ("ISO Speed Ratings", "100 200", "100"),
        ("Focal Length", "abc mm", "Unknown"),
        ("Model", "x" * 21, "Unknown"),
        ("Make", "A:b c!", "Abc"),
        ("X Resolution", "7/0 dots", "7 dots"),
        ("Focal Length", "", "Unknown"),
    ],
)
def test_official_refine_value(tag, value, refined):
    assert tables.paper_refine(tag, value) == refined


def test_tag_lists_only_name_readable_tags():
    names = {spec[0] for t in (tables.MAIN_TAGS, tables.INTEROP_TAGS) for spec in t.values()}
    assert set(DEFAULT_TAGS) <= names and set(PAPER_TAGS) <= names
    assert len(set(DEFAULT_TAGS)) == len(DEFAULT_TAGS)
    assert DEFAULT_TAGS[:3] == ("Make", "Model", "Exposure Time")


# -- shared real-world files ----------------------------------------------------------


def _shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.shared
def test_digicam_make_model_and_sane_values():
    root = _shared_dir("digicam")
    with open(root / "MANIFEST.csv", newline="") as fh:
        manifest = {row["file"]: row for row in csv.DictReader(fh)}
    assert manifest
    checked = 0
    for name, row in manifest.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", ExifWarning)
            d = read_exif(root / name)
        if not row["make"]:  # a few old cameras wrote no EXIF at all
            assert "Make" not in d
            continue
        checked += 1
        assert d["Make"] == row["make"].strip() and d["Model"] == row["model"].strip(), name
        if "Exposure Time" in d:
            assert re.fullmatch(r"\d+(/\d+)?(\.\d+)?", d["Exposure Time"]), (name, d)
        if "F-Number" in d:
            assert re.fullmatch(r"\d+\.\d", d["F-Number"]), (name, d)
        if "Focal Length" in d:
            assert re.fullmatch(r"\d+\.\d mm", d["Focal Length"]), (name, d)
        if "ISO Speed Ratings" in d:
            assert re.fullmatch(r"\d+", d["ISO Speed Ratings"]), (name, d)
        text = exif_to_text(d)
        assert text.startswith(f"Make: {d['Make']}, Model: {d['Model']}")
    assert checked >= 200
