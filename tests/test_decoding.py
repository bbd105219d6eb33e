"""Hostile and awkward image files: bombs, truncation, frames, HEIC, RAW, Pillow faults.

Every refusal is an ``ImageLoadError`` whose message names the input and says
what is wrong (and, where there is one, the way out); nothing changes Pillow's
global settings. ``docs/reliability.md`` has the measured table of these cases.
"""

from __future__ import annotations

import io
import struct
import threading
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from exifclip.exif import read_exif
from exifclip.io import DEFAULT_MAX_PIXELS, ImageDecodeWarning, ImageLoadError, load_image


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` grey pixels (the data is a stub)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def photo():
    # Smooth content so the JPEG keeps it closely; odd size so nothing is resized silently.
    yy, xx = np.mgrid[0:96, 0:72]
    return np.stack([xx * 3, yy * 2, (xx + yy) % 256], axis=2).astype(np.uint8)


@pytest.fixture(autouse=True)
def _pillow_globals_untouched():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    yield
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# -- decompression bombs ---------------------------------------------------------------


def test_max_pixels_refuses_before_decoding(photo):
    data = encode(photo, "PNG")  # 96 x 72 = 6912 pixels
    with pytest.raises(ImageLoadError) as info:
        load_image(data, max_pixels=5000)
    message = str(info.value)
    assert message.startswith(f"<bytes, {len(data)} B>: image is 72x96 = 6912 pixels")
    assert "max_pixels=5000" in message and "max_pixels=None" in message
    np.testing.assert_array_equal(load_image(data, max_pixels=6912), photo)
    np.testing.assert_array_equal(load_image(data, max_pixels=None), photo)


def test_bomb_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(9_000, 9_000))  # 81 megapixels claimed by 100 bytes
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match=r"bomb.png: image is 9000x9000 = 81000000 pixels"):
            load_image(path, max_pixels=10**6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_over_pillows_global_limit_names_the_global_but_never_changes_it(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(20_000, 20_000))  # 400 MP: over Pillow's 2 x 89.5 MP
    assert 20_000 * 20_000 > DEFAULT_MAX_PIXELS
    for limit in (DEFAULT_MAX_PIXELS, None):
        with pytest.raises(ImageLoadError) as info:
            load_image(path, max_pixels=limit)
        assert "huge.png" in str(info.value) and "PIL.Image.MAX_IMAGE_PIXELS" in str(info.value)


def test_limits_are_per_call_across_threads(photo):
    data = encode(photo, "PNG")
    results: dict[int, str] = {}

    def work(i: int) -> None:
        limit = 100 if i % 2 else None
        try:
            load_image(data, max_pixels=limit)
            results[i] = "decoded"
        except ImageLoadError:
            results[i] = "refused"

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: "refused" if i % 2 else "decoded" for i in range(16)}


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_max_pixels_must_be_a_positive_int(bad, photo):
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(photo, max_pixels=bad)


# -- truncation --------------------------------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_refused_by_default_and_decoded_on_request(tmp_path, photo, progressive):
    full = encode(photo, "JPEG", quality=95, progressive=progressive)
    cut = full[: len(full) * 2 // 3]
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    for source, name in [(path, str(path)), (cut, f"<bytes, {len(cut)} B>")]:
        with pytest.raises(ImageLoadError) as info:
            load_image(source)
        message = str(info.value)
        assert message.startswith(f"{name}: truncated JPEG file") and "allow_truncated=True" in message
        with pytest.warns(ImageDecodeWarning, match=rf"{name}: truncated JPEG .*flat fill") as record:
            out = load_image(source, allow_truncated=True)
        assert len(record) == 1
        assert out.shape == photo.shape and out.dtype == np.uint8
    reference = load_image(full)
    if not progressive:  # the rows before the cut are the real ones
        np.testing.assert_array_equal(out[:16], reference[:16])
    with open(path, "rb") as fh, pytest.warns(ImageDecodeWarning):
        assert load_image(fh, allow_truncated=True).shape == photo.shape


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "TIFF", "BMP"])
def test_other_truncated_formats_are_always_refused(fmt, photo):
    full = encode(photo, fmt)
    cut = full[: len(full) * 2 // 3]
    with pytest.raises(ImageLoadError, match=rf"<bytes, {len(cut)} B>: .*(truncated|cannot)"):
        load_image(cut, allow_truncated=True)


def test_truncated_inside_the_header_is_not_an_image(photo):
    head = encode(photo, "JPEG")[:40]
    with pytest.raises(ImageLoadError, match="<bytes, 40 B>"):
        load_image(head, allow_truncated=True)


# -- frames, modes ------------------------------------------------------------------------


def test_animated_webp_and_png_give_first_frame_with_warning(photo):
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    for fmt, kwargs in [("WEBP", {"lossless": True}), ("PNG", {})]:
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kwargs)
        with pytest.warns(ImageDecodeWarning, match=f"{fmt} file has 2 frames"):
            out = load_image(buf.getvalue())
        np.testing.assert_array_equal(out, photo)


def test_mpo_camera_file_is_not_warned_about(photo):
    # Cameras write JPEG + large preview as MPO: the first frame is the photo itself.
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "MPO", save_all=True, append_images=[Image.fromarray(photo)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageDecodeWarning)
        assert load_image(buf.getvalue()).shape == photo.shape


def test_palette_with_transparency_and_float_with_nan():
    pal = Image.new("P", (5, 4))
    pal.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.info["transparency"] = 1
    out = load_image(_save(pal, "PNG"))
    assert tuple(out[1, 1]) == (250, 10, 20)  # the colour, not a composite over white
    values = np.full((3, 4), np.nan, np.float32)
    values[0, 0] = 300.0
    out = load_image(Image.fromarray(values, mode="F"))
    assert out[0, 0, 0] == 255 and out[1, 1, 0] == 0


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


# -- unsupported formats --------------------------------------------------------------------

HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def test_heic_says_how_to_convert(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(HEIC)
    for source, name in [(path, str(path)), (HEIC, f"<bytes, {len(HEIC)} B>")]:
        with pytest.raises(ImageLoadError) as info:
            load_image(source)
        message = str(info.value)
        assert message.startswith(f"{name}: HEIC/HEIF images are not supported")
        assert "heif-convert" in message and "pillow-heif" in message


def _tiff(**tags) -> bytes:
    buf = io.BytesIO()
    info = {int(k[1:], 16): v for k, v in tags.items()}
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buf, "TIFF", tiffinfo=info)
    return buf.getvalue()


@pytest.mark.parametrize("suffix", [".NEF", ".cr2", ".ARW", ".dng", ".orf"])
def test_raw_by_extension_is_refused_but_its_exif_is_read(tmp_path, suffix):
    # Many RAW files are TIFF containers: Pillow would decode a thumbnail, not the photo.
    path = tmp_path / f"DSC_0001{suffix}"
    path.write_bytes(_tiff(x010F="NIKON CORPORATION"))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: camera RAW files ({suffix.lower()}) are not supported")
    assert "darktable-cli" in message and "JPEG" in message
    assert read_exif(path)["Make"] == "NIKON CORPORATION"


@pytest.mark.parametrize(
    "data, kind",
    [
        (_tiff(xC612=b"\x01\x04\x00\x00"), "DNG"),
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\x00" * 64, "Canon CR2"),
        (b"FUJIFILMCCD-RAW 0201FF383501" + b"\x00" * 64, "Fujifilm RAF"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\x00" * 64, "Canon CR3"),
        (b"IIRO\x08\x00\x00\x00" + b"\x00" * 64, "Olympus ORF"),
    ],
)
def test_raw_by_content_is_refused(data, kind):
    with pytest.raises(ImageLoadError, match=rf"^<bytes, {len(data)} B>: .*{kind}.*not supported"):
        load_image(data)


# -- whatever Pillow raises becomes ImageLoadError -------------------------------------------


@pytest.mark.parametrize("exc", [KeyError("tag"), ZeroDivisionError("x"), EOFError(), RecursionError()])
def test_unexpected_pillow_errors_at_open_are_wrapped(monkeypatch, exc, photo):
    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(Image, "open", broken)
    with pytest.raises(ImageLoadError, match=rf"<bytes, \d+ B>: corrupt image header \({type(exc).__name__}"):
        load_image(encode(photo, "PNG"))


@pytest.mark.parametrize("exc", [IndexError("tile"), struct.error("unpack"), KeyError("mode")])
def test_unexpected_pillow_errors_at_decode_are_wrapped(monkeypatch, exc, photo):
    def broken(self):
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(ImageLoadError, match=rf"<bytes, \d+ B>: corrupt image data \({type(exc).__name__}"):
        load_image(encode(photo, "PNG"))


# -- mutated files: only ImageLoadError ------------------------------------------------------

SEED_FILES = {
    fmt: _save(Image.fromarray(np.random.default_rng(3).integers(0, 256, (10, 14, 3), dtype=np.uint8)), fmt, **kw)
    for fmt, kw in [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("BMP", {})]
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SEED_FILES)), st.data())
def test_mutated_files_raise_only_image_load_error(fmt, data):
    raw = bytearray(SEED_FILES[fmt])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    raw = bytes(raw[: data.draw(st.integers(1, len(raw)))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = load_image(raw, max_pixels=1 << 16, allow_truncated=data.draw(st.booleans()))
        except ImageLoadError as exc:
            assert str(exc).startswith(f"<bytes, {len(raw)} B>: ")
            return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_heic_opened_by_a_registered_plugin_is_not_refused(monkeypatch, photo):
    # With pillow-heif registered, Pillow opens HEIC itself: exifclip must not stand in the way.
    png = encode(photo, "PNG")
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: real_open(io.BytesIO(png)))
    np.testing.assert_array_equal(load_image(HEIC), photo)


def test_images_already_in_memory_are_not_refused(photo):
    big = Image.fromarray(photo)  # not a file: nothing left to decode
    np.testing.assert_array_equal(load_image(big, max_pixels=100), photo)
    opened = Image.open(io.BytesIO(encode(photo, "PNG")))
    with pytest.raises(ImageLoadError, match="max_pixels=100"):
        load_image(opened, max_pixels=100)  # opened lazily: still guarded
    opened.load()
    np.testing.assert_array_equal(load_image(opened, max_pixels=100), photo)


def test_gif_cut_inside_a_later_frame_still_gives_the_first(photo):
    first = np.zeros((10, 12, 3), np.uint8)
    first[:, :6] = 255
    frames = [Image.fromarray(255 - first), Image.fromarray(first[::-1].copy())]
    data = _save(Image.fromarray(first), "GIF", save_all=True, append_images=frames)
    cut = data[: len(data) * 3 // 4]
    with pytest.warns(ImageDecodeWarning, match="frames; only the first is used"):
        out = load_image(cut)
    np.testing.assert_array_equal(out, first)
