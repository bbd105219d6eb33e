"""The classical metadata red flags, each on files that should and should not raise it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from exifclip.report import (
    check_dates,
    check_exif_present,
    check_quantization,
    check_software,
    check_thumbnail,
    embedded_thumbnail,
    gather_camera_tables,
    known_camera_tables,
    metadata_checks,
    read_quantization_tables,
    standard_quality,
)
from exifclip.report.quantization import camera_key, tables_distance

from .report_case import exif_bytes, photo, save_jpeg


def _jpeg(pixels, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("software, status", [
    ("Adobe Photoshop Lightroom Classic 9.1 (Macintosh)", "flag"),
    ("GIMP 2.10.6", "flag"),
    ("darktable 2.5.0", "flag"),
    ("Paint.NET v3.5.10", "flag"),
    ("Snapseed 2.0", "flag"),
    ("Ver.1.00", "pass"),
    ("15.0", "pass"),
    ("E4300v1.5", "pass"),
])
def test_software(software, status):
    check = check_software({"Software": software})
    assert check.status == status and software in check.detail


def test_exif_present():
    assert check_exif_present({}).detail.startswith("no EXIF at all")
    assert "without a camera model" in check_exif_present({"Software": "GIMP"}).detail
    stripped = check_exif_present({"Make": "Canon", "Model": "EOS 70D", "Orientation": "Horizontal (normal)"})
    assert stripped.status == "flag" and "partly stripped" in stripped.detail
    assert check_exif_present({"Make": "Canon", "Model": "EOS 70D", "F-Number": "2.8"}).status == "pass"


def test_dates():
    t0 = "2021:04:08 14:53:27"
    assert check_dates({"Date/Time Original": t0, "Date/Time Digitized": "2021:04:08 14:53:28"}).status == "pass"
    digitized = check_dates({"Date/Time Original": t0, "Date/Time Digitized": "2021:04:09 14:53:27"})
    assert digitized.status == "flag" and "24 hours after" in digitized.detail and "should agree" in digitized.detail
    before = check_dates({"Date/Time Original": t0, "Date/Time": "2021:04:08 14:50:00"})
    assert before.status == "flag" and "before" in before.detail
    assert check_dates({"Date/Time Original": "yesterday"}).detail == "Date/Time Original is not a date: 'yesterday'"
    assert check_dates({}).status == "unknown"


def _with_thumbnail(tmp_path, pixels, thumb_pixels, name="t.jpg"):
    thumb = _jpeg(thumb_pixels, quality=80)
    return save_jpeg(tmp_path / name, pixels, exif_bytes(thumbnail=thumb))


def test_thumbnail_matching_and_not(tmp_path, rng):
    pixels = photo(rng, 240, 320)
    small = np.asarray(Image.fromarray(pixels).resize((160, 120)))
    same = _with_thumbnail(tmp_path, pixels, small, "same.jpg")
    assert embedded_thumbnail(same).size == (160, 120)
    assert check_thumbnail(same).status == "pass"
    letterboxed = np.zeros((120, 200, 3), np.uint8)
    letterboxed[:, 20:180] = small  # black bars, as cameras pad
    assert check_thumbnail(_with_thumbnail(tmp_path, pixels, letterboxed, "bars.jpg")).status == "pass"
    edited = pixels.copy()
    edited[:, 160:] = 255 - edited[:, 160:]  # half the photo changed after the thumbnail was made
    changed = check_thumbnail(_with_thumbnail(tmp_path, edited, small, "edited.jpg"))
    assert changed.status == "flag" and "does not show the image" in changed.detail
    cropped = check_thumbnail(_with_thumbnail(tmp_path, pixels[:, :160], small, "cropped.jpg"))
    assert cropped.status == "flag" and "framing" in cropped.detail
    assert check_thumbnail(save_jpeg(tmp_path / "none.jpg", pixels, exif_bytes())).status == "unknown"


def test_thumbnail_of_a_corrupt_exif_block_is_none(tmp_path, rng):
    raw = bytearray(exif_bytes(thumbnail=_jpeg(photo(rng, 30, 40))))
    raw[-200:] = b"\x00" * 200  # the thumbnail's bytes destroyed
    path = save_jpeg(tmp_path / "corrupt.jpg", photo(rng), bytes(raw))
    assert embedded_thumbnail(path) is None


def test_standard_quality_and_tables(rng):
    for quality in (30, 75, 95):
        assert standard_quality(read_quantization_tables(_jpeg(photo(rng), quality=quality))) == quality
    custom = [list(range(1, 65)), [7] * 64]
    assert standard_quality(read_quantization_tables(_jpeg(photo(rng), qtables=custom))) is None
    buf = io.BytesIO()
    Image.fromarray(photo(rng)).save(buf, "PNG")
    assert read_quantization_tables(buf.getvalue()) is None
    assert tables_distance([[2] * 64, [4] * 64], [[2] * 64, [2] * 64]) == 1.0


def test_quantization_against_the_claimed_camera(tmp_path, rng):
    camera = [list(range(1, 65)), [3] * 64]
    original = save_jpeg(tmp_path / "cam.jpg", photo(rng), exif_bytes(), quality=90)
    Image.fromarray(photo(rng)).save(original, "JPEG", qtables=camera, exif=exif_bytes())
    known = gather_camera_tables([original])
    assert list(known) == ["Acme|Cam One"] and known["Acme|Cam One"]["photos"] == 1
    assert check_quantization(original, camera_tables=known).status == "pass"
    resaved = save_jpeg(tmp_path / "resaved.jpg", photo(rng), exif_bytes(), quality=88)
    flagged = check_quantization(resaved, camera_tables=known)
    assert flagged.status == "flag" and "standard tables at quality 88" in flagged.detail
    other = save_jpeg(tmp_path / "other.jpg", photo(rng), exif_bytes(model="Cam Two"))
    assert check_quantization(other, camera_tables=known).status == "unknown"


def test_camera_key():
    assert camera_key({"Make": " Canon ", "Model": "Canon  EOS 70D"}) == "Canon|Canon EOS 70D"
    assert camera_key({"Make": "Canon"}) is None


def test_packaged_tables_file_and_bad_files(tmp_path):
    tables = known_camera_tables()
    assert len(tables) > 50
    assert all(len(t) == 64 for entry in tables.values() for s in entry["tables"] for t in s)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cameras": {"x": {"tables": 3}}}))
    with pytest.raises(ValueError, match="bad.json: not a quantisation-table file"):
        known_camera_tables(bad)
    with pytest.raises(ValueError, match="cannot read"):
        known_camera_tables(tmp_path / "missing.json")


def test_metadata_checks_in_order(tmp_path, rng):
    edited = save_jpeg(tmp_path / "e.jpg", photo(rng), exif_bytes(software="Adobe Photoshop 25.0"), quality=80)
    checks = metadata_checks(edited, camera_tables={})
    assert [c.name for c in checks] == ["exif", "software", "dates", "thumbnail", "quantization"]
    assert [c.status for c in checks] == ["pass", "flag", "pass", "unknown", "unknown"]
    assert checks[1].to_dict() == {"name": "software", "status": "flag",
                                   "detail": "Software names an editing program: 'Adobe Photoshop 25.0'"}


@pytest.mark.shared
def test_camera_photos_match_their_packaged_tables(shared_data):
    photos = sorted((shared_data / "digicam").glob("*.JPG"))[::10]
    statuses = [check_quantization(p).status for p in photos]
    assert statuses and set(statuses) == {"pass"}, "every training photo's tables are in the packaged file"
