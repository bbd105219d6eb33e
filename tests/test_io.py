"""Tests for exifclip.io: every source kind decodes to exact uint8 RGB pixels."""

from __future__ import annotations

import gc
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from exifclip.io import (
    ImageDecodeWarning,
    ImageLoadError,
    as_source_list,
    load_image,
    open_image,
    source_name,
)


# --------------------------------------------------------------------------- helpers


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_rgb16(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def assert_rgb(out: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.fixture
def rgb():
    # Non-square and odd-sized, so a transposed or resized decode cannot pass.
    return np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)


@pytest.fixture
def png_path(tmp_path, rgb):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(rgb))
    return path


@pytest.fixture
def jpeg_bytes():
    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    return encode(img, "JPEG", quality=90)


@pytest.fixture(autouse=True)
def _strict_truncation(monkeypatch):
    # Other code may flip this global; these tests rely on Pillow's default.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)


# --------------------------------------------------------------------------- source kinds


def test_path_str(png_path, rgb):
    assert_rgb(load_image(str(png_path)), rgb)


def test_path_pathlib(png_path, rgb):
    assert_rgb(load_image(Path(png_path)), rgb)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like(png_path, rgb, kind):
    assert_rgb(load_image(kind(png_path.read_bytes())), rgb)


def test_bytesio(png_path, rgb):
    assert_rgb(load_image(io.BytesIO(png_path.read_bytes())), rgb)


def test_open_file_is_decoded_and_left_open(png_path, rgb):
    with open(png_path, "rb") as f:
        out = load_image(f)
        assert not f.closed, "load_image must not close a file object it does not own"
    assert_rgb(out, rgb)


def test_pil_image(rgb):
    image = Image.fromarray(rgb)
    assert_rgb(load_image(image), rgb)
    assert image.mode == "RGB" and image.size == (17, 13)  # the caller's image is untouched


def test_array_hw(rgb):
    grey = rgb[:, :, 0].copy()
    assert_rgb(load_image(grey), np.stack([grey] * 3, axis=2))


def test_array_hw1(rgb):
    grey = rgb[:, :, :1].copy()
    assert_rgb(load_image(grey), np.concatenate([grey] * 3, axis=2))


def test_array_hw3(rgb):
    assert_rgb(load_image(rgb.copy()), rgb)


def test_array_hw4_drops_alpha(rgb):
    alpha = np.zeros(rgb.shape[:2] + (1,), np.uint8)  # fully transparent: must not black out
    assert_rgb(load_image(np.concatenate([rgb, alpha], axis=2)), rgb)


def test_non_contiguous_array_becomes_contiguous(rgb):
    flipped = rgb[:, ::-1]
    assert not flipped.flags.c_contiguous
    assert_rgb(load_image(flipped), np.ascontiguousarray(flipped))
    fortran = np.asfortranarray(rgb)
    assert_rgb(load_image(fortran), rgb)


def test_no_resizing_of_large_image():
    big = np.random.default_rng(3).integers(0, 256, (601, 1203, 3), dtype=np.uint8)
    out = load_image(encode(big))
    assert out.shape == (601, 1203, 3)
    np.testing.assert_array_equal(out, big)


# --------------------------------------------------------------------------- PIL modes


def test_mode_L(rgb):
    grey = rgb[:, :, 1].copy()
    data = encode(Image.fromarray(grey, "L"))
    assert Image.open(io.BytesIO(data)).mode == "L"
    assert_rgb(load_image(data), np.stack([grey] * 3, axis=2))


def test_mode_LA_drops_alpha():
    la = np.array([[[10, 0], [200, 255], [77, 128]]], np.uint8)
    data = encode(Image.fromarray(la, "LA"))
    assert Image.open(io.BytesIO(data)).mode == "LA"
    assert_rgb(load_image(data), np.repeat(la[:, :, :1], 3, axis=2))


def test_mode_P_palette_lookup():
    pal = Image.new("P", (3, 2))
    pal.putpalette([10, 20, 30, 200, 100, 50, 1, 2, 3] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 2, 1, 0])
    data = encode(pal)
    assert Image.open(io.BytesIO(data)).mode == "P"
    expected = np.array(
        [[[10, 20, 30], [200, 100, 50], [1, 2, 3]], [[1, 2, 3], [200, 100, 50], [10, 20, 30]]], np.uint8
    )
    assert_rgb(load_image(data), expected)


CMYK = np.array([[[255, 0, 0, 0], [0, 0, 0, 255], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0]]], np.uint8)
CMYK_AS_RGB = np.array([[[0, 255, 255], [0, 0, 0], [255, 0, 255], [255, 255, 0], [255, 255, 255]]], np.uint8)


def test_mode_CMYK_tiff():
    data = encode(Image.fromarray(CMYK, "CMYK"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert_rgb(load_image(data), CMYK_AS_RGB)


def test_mode_CMYK_jpeg():
    # 16x16 solid blocks so that JPEG's lossy coding keeps the block colours.
    blocks = np.repeat(np.repeat(CMYK, 16, axis=0), 16, axis=1)
    data = encode(Image.fromarray(blocks, "CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = load_image(data)
    assert out.shape == (16, 80, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    centres = out[8, 8::16].astype(int)
    assert np.abs(centres - CMYK_AS_RGB[0].astype(int)).max() <= 3
    # And exactly what Pillow's own conversion gives.
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_mode_I16_keeps_top_8_bits(fmt):
    grey = np.array([[0x1234, 0xFFFF, 0x00FF], [0x0100, 0x0000, 0xAB00]], np.uint16)
    data = encode(Image.fromarray(grey), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    expected = np.array([[0x12, 0xFF, 0x00], [0x01, 0x00, 0xAB]], np.uint8)
    assert_rgb(load_image(data), np.stack([expected] * 3, axis=2))


def test_mode_I16_pil_image():
    image = Image.fromarray(np.full((3, 4), 0x1234, np.uint16))
    assert image.mode.startswith("I;16")
    assert_rgb(load_image(image), np.full((3, 4, 3), 0x12, np.uint8))


def test_16_bit_rgb_png():
    array = np.array([[[0x1234, 0xABCD, 0x00FF], [0xFF00, 0x0101, 0xFFFF]]], np.uint16)
    out = load_image(png_rgb16(array))
    assert_rgb(out, (array >> 8).astype(np.uint8))


def test_mode_RGBA_drops_alpha_without_compositing():
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 128], [1, 2, 3, 255]]], np.uint8)
    data = encode(Image.fromarray(rgba, "RGBA"))
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    assert_rgb(load_image(data), rgba[:, :, :3])


def test_mode_1_bit():
    bits = np.array([[True, False, True], [False, True, True]])
    data = encode(Image.fromarray(bits))
    assert Image.open(io.BytesIO(data)).mode == "1"
    expected = np.where(bits, 255, 0).astype(np.uint8)
    assert_rgb(load_image(data), np.stack([expected] * 3, axis=2))


# --------------------------------------------------------------------------- no EXIF rotation


def test_exif_orientation_is_not_applied():
    # Smooth, asymmetric content so the JPEG keeps it recognisable.
    yy, xx = np.mgrid[0:24, 0:40]
    pixels = np.stack([xx * 6, yy * 10, (xx + yy) * 4], axis=2).astype(np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    data = encode(image, "JPEG", quality=95, exif=exif)
    opened = Image.open(io.BytesIO(data))
    assert opened.getexif().get(0x0112) == 6, "test setup: the Orientation tag must be in the file"
    rotated = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert rotated.shape[:2] == (40, 24)

    out = load_image(data)
    assert out.shape == (24, 40, 3)  # stored width/height, not the display orientation
    np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.abs(out.astype(int) - pixels.astype(int)).mean() < 4


# --------------------------------------------------------------------------- multi-frame


def frames(n=3, shape=(10, 12)):
    # A few flat colours per frame: exact through the GIF palette too.
    colours = [(255, 0, 0), (0, 128, 255), (10, 200, 30)]
    out = []
    for k in range(n):
        a = np.zeros(shape + (3,), np.uint8)
        a[:, : shape[1] // 2] = colours[k % 3]
        a[:, shape[1] // 2 :] = colours[(k + 1) % 3]
        out.append(a)
    return out


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_gives_first_frame(tmp_path, fmt):
    arrays = frames()
    path = tmp_path / f"anim.{fmt.lower()}"
    images = [Image.fromarray(a) for a in arrays]
    images[0].save(path, fmt, save_all=True, append_images=images[1:])
    with Image.open(path) as check:
        assert check.n_frames == 3
    with pytest.warns(ImageDecodeWarning, match=rf"{path.name}: {fmt} file has 3 frames; only the first"):
        assert_rgb(load_image(path), arrays[0])
    with pytest.warns(ImageDecodeWarning, match="<bytes"):
        assert_rgb(load_image(path.read_bytes()), arrays[0])


def test_multi_frame_pil_image_seeked_elsewhere_gives_first_frame(tmp_path):
    arrays = frames()
    path = tmp_path / "anim.tiff"
    images = [Image.fromarray(a) for a in arrays]
    images[0].save(path, "TIFF", save_all=True, append_images=images[1:])
    with Image.open(path) as image:
        image.seek(2)
        with pytest.warns(ImageDecodeWarning):
            assert_rgb(load_image(image), arrays[0])


def test_multi_frame_path_does_not_leak_the_file(tmp_path):
    # Pillow keeps multi-frame files open after load(); load_image opened it, so it closes it.
    arrays = frames()
    path = tmp_path / "anim.gif"
    images = [Image.fromarray(a) for a in arrays]
    images[0].save(path, "GIF", save_all=True, append_images=images[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_image(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert [w for w in caught if issubclass(w.category, ImageDecodeWarning)]
    assert_rgb(out, arrays[0])


# --------------------------------------------------------------------------- bad input


def assert_load_error(source, *fragments):
    with pytest.raises(ImageLoadError) as info:
        load_image(source)
    message = str(info.value)
    assert source_name(source) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    assert_load_error(path, str(path), "not found")
    assert_load_error(str(path), str(path), "not found")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_load_error(path, str(path), "empty")


def test_directory(tmp_path):
    assert_load_error(tmp_path, str(tmp_path), "directory")


def test_random_bytes_path_and_bytes(tmp_path):
    junk = np.random.default_rng(4).integers(0, 256, 500, dtype=np.uint8).tobytes()
    path = tmp_path / "junk.jpg"
    path.write_bytes(junk)
    assert_load_error(path, str(path))
    assert_load_error(junk, "<bytes, 500 B>")
    assert_load_error(io.BytesIO(junk))


def test_truncated_jpeg(tmp_path, jpeg_bytes):
    half = jpeg_bytes[: len(jpeg_bytes) // 2]
    path = tmp_path / "cut.jpg"
    path.write_bytes(half)
    assert_load_error(path, str(path))
    assert_load_error(half, f"<bytes, {len(half)} B>")


def test_empty_bytes():
    assert_load_error(b"", "<bytes, 0 B>", "empty")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint16, bool])
def test_wrong_dtype(dtype):
    message = assert_load_error(np.zeros((4, 5, 3), dtype), "uint8", str(np.dtype(dtype)))
    assert "dtype" in message


@pytest.mark.parametrize("shape", [(4, 5, 2), (4, 5, 5), (2, 4, 5, 3), (7,), ()])
def test_wrong_shape(shape):
    assert_load_error(np.zeros(shape, np.uint8), str(shape))


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (0, 0, 4)])
def test_zero_size_array(shape):
    assert_load_error(np.zeros(shape, np.uint8), "zero size")


@pytest.mark.parametrize("source", [42, 3.5, None, object()])
def test_unsupported_type(source):
    with pytest.raises(TypeError, match=type(source).__name__):
        load_image(source)
    with pytest.raises(TypeError, match=type(source).__name__):
        open_image(source)


def test_open_image_refuses_arrays():
    with pytest.raises(TypeError, match="array"):
        open_image(np.zeros((4, 4, 3), np.uint8))


def test_image_load_error_is_a_value_error():
    assert issubclass(ImageLoadError, ValueError)


# --------------------------------------------------------------------------- decompression bombs


@pytest.fixture
def bomb_png(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(encode(np.zeros((40, 50, 3), np.uint8)))  # 2000 pixels
    return path


def test_decompression_bomb_over_twice_the_limit_is_refused(monkeypatch, bomb_png):
    # Pillow raises DecompressionBombError at open when pixels > 2 * MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert_load_error(bomb_png, str(bomb_png), "decompression bomb")
    assert_load_error(bomb_png.read_bytes(), "decompression bomb")
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        open_image(bomb_png)


def test_decompression_bomb_between_limit_and_twice_only_warns(monkeypatch, bomb_png):
    # Between the limit and twice it, Pillow only warns and decodes: so does load_image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    with pytest.warns(Image.DecompressionBombWarning):
        out = load_image(bomb_png)
    assert out.shape == (40, 50, 3)


def test_decompression_bomb_warning_as_error_becomes_image_load_error(monkeypatch, bomb_png):
    # With warnings turned into errors the warning must still surface as ImageLoadError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert_load_error(bomb_png, str(bomb_png), "decompression bomb")


# --------------------------------------------------------------------------- open_image / source_name


def test_open_image_is_lazy_and_passes_pil_through(png_path):
    image = Image.fromarray(np.zeros((3, 4, 3), np.uint8))
    assert open_image(image) is image
    with open_image(png_path) as opened:
        assert opened.size == (17, 13) and opened.format == "PNG"
    with open_image(png_path.read_bytes()) as opened:
        assert opened.size == (17, 13)


def test_source_name(tmp_path):
    assert source_name("photos/a.jpg") == "photos/a.jpg"
    assert source_name(Path("photos") / "a.jpg") == str(Path("photos") / "a.jpg")
    assert source_name(b"\xff\xd8") == "<bytes, 2 B>"
    assert source_name(bytearray(5)) == "<bytes, 5 B>"
    assert source_name(Image.new("L", (4, 3))) == "<PIL image 4x3 L>"
    assert source_name(np.zeros((4, 5), np.uint8)) == "<array shape=(4, 5) dtype=uint8>"
    assert source_name(io.BytesIO(b"")) == "<BytesIO>"
    assert source_name(42) == "<int>"
    path = tmp_path / "x.png"
    path.write_bytes(encode(np.zeros((2, 2, 3), np.uint8)))
    with open(path, "rb") as f:
        assert source_name(f) == str(path)
    with Image.open(path) as image:
        assert source_name(image) == str(path)


def test_error_names_open_file_object(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"this is not an image" * 10)
    with open(path, "rb") as f:
        assert_load_error(f, str(path))


# --------------------------------------------------------------------------- as_source_list


@pytest.mark.parametrize(
    "item",
    [
        "a.jpg",
        Path("a.jpg"),
        b"\xff\xd8",
        bytearray(b"ab"),
        io.BytesIO(b"x"),
        Image.new("RGB", (2, 2)),
        np.zeros((4, 5), np.uint8),
        np.zeros((4, 5, 3), np.uint8),
        np.zeros((4, 5, 4), np.uint8),
    ],
    ids=lambda x: type(x).__name__,
)
def test_as_source_list_single(item):
    out = as_source_list(item)
    assert isinstance(out, list) and len(out) == 1 and out[0] is item


def test_as_source_list_sequences():
    items = ["a.jpg", Path("b.jpg"), np.zeros((2, 2, 3), np.uint8)]
    out = as_source_list(items)
    assert isinstance(out, list) and len(out) == 3
    assert all(a is b for a, b in zip(out, items))
    assert as_source_list(tuple(items))[1] is items[1]
    assert as_source_list(x for x in items)[2] is items[2]


def test_as_source_list_4d_batch():
    batch = np.random.default_rng(5).integers(0, 256, (3, 6, 7, 3), dtype=np.uint8)
    out = as_source_list(batch)
    assert isinstance(out, list) and len(out) == 3
    for k in range(3):
        assert out[k].shape == (6, 7, 3)
        np.testing.assert_array_equal(out[k], batch[k])
        assert_rgb(load_image(out[k]), batch[k])


@pytest.mark.parametrize("empty", [[], (), np.zeros((0, 4, 4, 3), np.uint8)], ids=["list", "tuple", "4d"])
def test_as_source_list_empty(empty):
    with pytest.raises(ValueError, match="empty"):
        as_source_list(empty)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 3)])
def test_as_source_list_bad_array_rank(shape):
    with pytest.raises(ValueError, match="shape"):
        as_source_list(np.zeros(shape, np.uint8))


def test_as_source_list_unsupported():
    with pytest.raises(TypeError, match="int"):
        as_source_list(42)
