"""Reliability, round two (issue 15): what a large unseen corpus and a real user found.

One section per point of the issue. Inputs are made here (a PSD written from
Adobe's published layout, TIFFs with broken tags or damaged strips, pipes,
links); cases that need another user run a subprocess under ``setpriv`` (or
as the current user when that is not root) and skip where neither can be had.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from exifclip.cli import build_parser, main
from exifclip.exif import read_exif
from exifclip.io import ImageDecodeWarning, ImageLoadError, load_image

from .conftest import make_tiny_model

REPO = Path(__file__).resolve().parents[1]


# -- inputs ---------------------------------------------------------------------------------------------


def psd_bytes(composite: np.ndarray, layers: tuple[np.ndarray, ...] = ()) -> bytes:
    """A PSD file (Adobe Photoshop File Format Specification: header, colour mode data, image
    resources, layer and mask information, image data), raw (uncompressed) channels.

    ``composite``: HxW (grey) or HxWxC (3: RGB, 4: RGB + alpha) uint8, the merged image;
    ``layers``: HxWxC arrays (3 or 4 channels), each a layer record with its channel data.
    """
    planes = composite if composite.ndim == 3 else composite[:, :, None]
    height, width, channels = planes.shape
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, channels, height, width, 8, 1 if channels == 1 else 3)
    section = b""
    if layers:
        records, data = b"", b""
        for i, layer in enumerate(layers):
            lh, lw, lc = layer.shape
            records += struct.pack(">iiiiH", 0, 0, lh, lw, lc)  # top, left, bottom, right, channels
            for channel_id in (0, 1, 2, 0xFFFF)[:lc]:  # R, G, B, transparency (-1)
                records += struct.pack(">HI", channel_id, 2 + lh * lw)
            name = f"layer {i}".encode()
            pascal = bytes([len(name)]) + name
            pascal += b"\0" * (-len(pascal) % 4)
            extra = struct.pack(">II", 0, 0) + pascal  # no layer mask, no blending ranges, the name
            records += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", len(extra)) + extra
            for c in range(lc):
                data += struct.pack(">H", 0) + layer[:, :, c].tobytes()
        info = struct.pack(">h", len(layers)) + records + data
        info += b"\0" * (len(info) % 2)
        section = struct.pack(">I", len(info)) + info + struct.pack(">I", 0)  # + empty global mask info
    image_data = struct.pack(">H", 0) + b"".join(planes[:, :, c].tobytes() for c in range(channels))
    return header + struct.pack(">II", 0, 0) + struct.pack(">I", len(section)) + section + image_data


def bad_tags_tiff(n_bad: int = 5) -> bytes:
    """An 8x6 grey TIFF whose ASCII tags claim a million bytes each: Pillow warns once per tag."""
    width, height = 8, 6
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 3, 1, height), (279, 4, 1, width * height)]
    entries += [(tag, 2, 1_000_000 + tag, 8) for tag in (270, 271, 272, 305, 315)[:n_bad]]
    entries.sort()
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_at if tag == 273 else value
        ifd += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind,
                                                                                             count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(4) + bytes(range(width * height))


def damaged_tiff(compression: str) -> bytes:
    """A TIFF whose compressed strip has 60 bytes flipped (libtiff complains on stderr, or gives up)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.random((200, 300)) > 0.5)
    if not compression.startswith("group"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression=compression)
    data = bytearray(buffer.getvalue())
    for i in range(len(data) // 3, len(data) // 3 + 60):
        data[i] ^= 0x55
    return bytes(data)


def _truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    return path


def _photo(path: Path, shape=(128, 160)) -> Path:
    rng = np.random.default_rng(3)
    image = np.full((*shape, 3), 120, np.uint8) + rng.integers(0, 4, (*shape, 3), dtype=np.uint8)
    image[32:96, 64:144] = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def _localize(images, out, model, *extra) -> list[str]:
    return ["localize", *map(str, images), "--out", str(out), "--model", str(model), "--device", "cpu",
            "--stride", "8", *extra]


needs_libtiff = pytest.mark.skipif(not features.check("libtiff"), reason="Pillow built without libtiff")


# -- another user: permissions that root would ignore -------------------------------------------------


@pytest.fixture
def other_user():
    """(command prefix, a scratch folder that user can read) for running as an unprivileged user."""
    if os.name != "posix":
        pytest.skip("POSIX permissions only")
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no unprivileged user to test with")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    scratch = Path(tempfile.mkdtemp(prefix="exifclip-perm-"))
    scratch.chmod(0o755)
    probe = subprocess.run([*prefix, sys.executable, "-c", "import exifclip.io"], cwd=REPO, capture_output=True)
    if probe.returncode != 0:
        shutil.rmtree(scratch)
        pytest.skip(f"the unprivileged user cannot run this Python: {probe.stderr.decode()[-200:]}")
    yield prefix, scratch
    for path in scratch.rglob("*"):  # give back what a test locked
        with contextlib.suppress(OSError):
            path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(scratch, ignore_errors=True)


def _run_as(prefix: list[str], scratch: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(scratch), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*prefix, sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600)


# -- 3. --out mistakes: checked up front, one line naming it, exit status 2 ----------------------------


def test_out_naming_an_existing_file_is_one_line_and_status_2(tiny_model_dir, tmp_path, capsys):
    photo = _photo(tmp_path / "in" / "a.png")
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    assert main(_localize([photo], taken, tiny_model_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"exifclip: error: --out {taken}: is an existing file"), err
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["embed", str(photo), "--out", str(folder), "--model", str(tiny_model_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"exifclip: error: --out {folder}: is a folder; name the file to write"
    root = tmp_path / "bench"
    assert main(["evaluate", "--dataset", "folder", "--root", str(root), "--json", str(folder)]) == 2
    assert f"--json {folder}: is a folder" in capsys.readouterr().err
    assert main(["convert-official", str(tmp_path / "ckpt.pth"), str(taken)]) == 2
    assert f"OUT_DIR {taken}: is an existing file" in capsys.readouterr().err
    assert main(["train", "--images", str(tmp_path / "in"), "--arch", "small", "--out", str(taken)]) == 2
    assert f"--out {taken}: is an existing file" in capsys.readouterr().err


def test_unwritable_out_is_one_line_naming_it_before_any_image(other_user, tmp_path):
    prefix, scratch = other_user
    photo = _photo(scratch / "in" / "a.png")
    model = scratch / "model"
    make_tiny_model().save_pretrained(model)
    for path in model.iterdir():  # safetensors writes its file 0600
        path.chmod(0o644)
    locked = scratch / "locked"  # the unprivileged user may read it, not write in it
    locked.mkdir()
    for out in (locked / "new-folder", locked):
        proc = _run_as(prefix, scratch, ["-m", "exifclip", *_localize([photo], out, model)])
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith(f"exifclip: error: --out {out}: cannot "), lines
        assert "permission denied" in lines[0] and "Traceback" not in proc.stderr


def test_a_write_that_fails_mid_run_stops_with_one_line_naming_the_file(tiny_model_dir, tmp_path, capsys,
                                                                       monkeypatch):
    import errno

    import exifclip.viz

    photos = [_photo(tmp_path / "in" / f"p{i}.png") for i in range(2)]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exifclip.viz, "save_mask", full)
    assert main(_localize(photos, tmp_path / "out", tiny_model_dir)) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'p0_mask.png'}: cannot write (no space left on the device); stopped" in err
    assert "p1" not in err and "Traceback" not in err, "the input is not blamed; the run stops"


# -- 2. OSError never escapes read_exif / load_image ---------------------------------------------------


def test_a_name_too_long_is_an_image_load_error(tmp_path, capsys):
    name = str(tmp_path / ("a" * 300 + ".jpg"))
    for read in (load_image, read_exif):
        with pytest.raises(ImageLoadError, match="file name too long") as info:
            read(name)
        assert str(info.value).startswith(f"{name}: ")
    assert main(["exif", name]) == 1
    assert capsys.readouterr().err.startswith(f"exifclip: error: {name}: file name too long")


_PERMISSION_PROBE = """
import json, sys
from exifclip.io import load_image
from exifclip.exif import read_exif
out = {}
for path in sys.argv[1:]:
    for read in (load_image, read_exif):
        try:
            read(path)
            out[f"{read.__name__} {path}"] = "ok"
        except Exception as exc:
            out[f"{read.__name__} {path}"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_folders_and_files_the_user_may_not_read(other_user):
    prefix, scratch = other_user
    hidden = scratch / "private"
    hidden.mkdir()
    inside = _photo(hidden / "a.png")
    hidden.chmod(0o700)  # its owner's only: the unprivileged user may not search it
    unreadable = _photo(scratch / "b.png")
    unreadable.chmod(0o600)
    proc = _run_as(prefix, scratch, ["-c", _PERMISSION_PROBE, str(inside), str(unreadable)])
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    for read in ("load_image", "read_exif"):
        assert seen[f"{read} {inside}"] == (f"ImageLoadError: {inside}: permission denied: this user may not "
                                            "search a folder on the path")
        assert seen[f"{read} {unreadable}"] == (f"ImageLoadError: {unreadable}: permission denied: this user may "
                                                "not read the file")
    proc = _run_as(prefix, scratch, ["-m", "exifclip", "exif", str(inside)])
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"exifclip: error: {inside}: permission denied"), proc.stderr


# -- 4. output files get the mode a plainly created file gets ------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_files_get_the_umask_mode(tmp_path, umask):
    from exifclip._atomic import atomic_write

    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "r.json", "w") as f:
            f.write("{}")
        with open(tmp_path / "plain.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    mode = (tmp_path / "r.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask == (tmp_path / "plain.json").stat().st_mode & 0o777


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_localize_outputs_are_readable_by_colleagues(tiny_model_dir, tmp_path, capsys):
    photo = _photo(tmp_path / "in" / "a.png")
    old = os.umask(0o022)
    try:
        assert main(_localize([photo], tmp_path / "out", tiny_model_dir)) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert set(modes) == {"a.json", "a_heatmap.png", "a_mask.png", "a_overlay.png", "results.jsonl"}
    assert set(modes.values()) == {0o644}, modes


# -- 8. a record for every input -------------------------------------------------------------------------


def test_results_jsonl_has_a_record_for_every_image_and_flags_truncation(tiny_model_dir, tmp_path, capsys):
    good = _photo(tmp_path / "in" / "good.png")
    bad = tmp_path / "in" / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    cut = _truncated_jpeg(tmp_path / "in" / "cut.jpg")
    out = tmp_path / "out"
    assert main(_localize([good, bad, cut], out, tiny_model_dir, "--allow-truncated")) == 1
    capsys.readouterr()
    log = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["file"], r["status"]) for r in log] == [(str(good), "ok"), (str(bad), "failed"), (str(cut), "ok")]
    assert log[1]["error"] == f"{bad}: not a recognised image file"
    assert (log[0]["truncated"], log[2]["truncated"]) == (False, True)
    assert "truncated JPEG" in log[2]["warnings"][0] and "--allow-truncated" in log[2]["warnings"][0]
    assert json.loads((out / "cut.json").read_text())["truncated"] is True


def test_embed_where_every_image_failed_writes_no_npz(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "emb.npz"
    assert main(["embed", str(bad), "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu"]) == 1
    assert not out.exists(), "a 0-row .npz would look like a result"
    err = capsys.readouterr().err
    assert f"{out}: not written: none of the 1 images could be embedded" in err
    good = _photo(tmp_path / "good.png")
    argv = ["embed", str(good), str(bad), "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu"]
    assert main(argv) == 1
    with np.load(out) as data:
        assert list(data["failed_files"]) == [str(bad)]
        assert list(data["failed_errors"]) == [f"{bad}: not a recognised image file"]


# -- 1. PSD ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba", "layers"])
def test_every_psd_pillow_decodes_loads(kind, tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    composite, layers = {
        "grey": (rgb[:, :, 0], ()),
        "rgb": (rgb, ()),
        "rgba": (np.dstack([rgb, rgb[:, :, :1]]), ()),
        "layers": (rgb, (255 - rgb, np.dstack([rgb, rgb[:, :, :1]]))),
    }[kind]
    data = psd_bytes(composite, layers)
    with Image.open(io.BytesIO(data)) as plain:
        assert plain.format == "PSD"
        want = np.asarray(plain.convert("RGB"))
    path = tmp_path / "layered.psd"
    path.write_bytes(data)
    for source in (data, path):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "only the first frame" warning: the composite holds every layer
            got = load_image(source)
        np.testing.assert_array_equal(got, want)
    assert read_exif(path) == {}


# -- 7. messages in the user's words --------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX files")
def test_links_pipes_and_devices_are_named_for_what_they_are(tmp_path):
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop1.jpg").symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(tmp_path / "loop1.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    cases = {
        tmp_path / "dangling.jpg": f"broken symbolic link: it points to {str(tmp_path / 'gone.jpg')!r}",
        tmp_path / "loop1.jpg": "symbolic link loop",
        tmp_path / "pipe.jpg": "is a named pipe (FIFO), not an image file",  # and never opened: no hang
        Path("/dev/zero"): "is a character device, not an image file",
    }
    for path, words in cases.items():
        if not os.path.exists(path) and path.name == "zero":
            continue
        for read in (load_image, read_exif):
            with pytest.raises(ImageLoadError) as info:
                read(path)
            assert str(info.value).startswith(f"{path}: {words}"), str(info.value)


def test_eps_without_ghostscript_says_what_to_install(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", False)  # as on a machine without Ghostscript
    eps = tmp_path / "figure.eps"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n")
    with pytest.raises(ImageLoadError, match="EPS .* Ghostscript, which is not installed: install it"):
        load_image(eps)


@needs_libtiff
def test_libtiff_decoder_error_is_explained(tmp_path):
    path = tmp_path / "scan.tif"
    path.write_bytes(damaged_tiff("tiff_deflate"))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot decode the TIFF image data: it is corrupt, or compressed in a way")
    assert "libtiff: ZIPDecode" in message and "Pillow: decoder error -2" in message


def test_cli_names_its_flags_not_keyword_arguments(tiny_model_dir, tmp_path, capsys):
    cut = _truncated_jpeg(tmp_path / "cut.jpg")
    huge = tmp_path / "huge.png"  # a header claiming 20000 x 20000 pixels: Pillow's own global refuses it
    huge.write_bytes(_png_claiming(20000, 20000))
    photo = _photo(tmp_path / "p.png")
    assert main(_localize([cut, huge], tmp_path / "o1", tiny_model_dir)) == 1
    assert main(_localize([photo], tmp_path / "o2", tiny_model_dir, "--max-pixels", "100")) == 1
    err = capsys.readouterr().err
    assert f"{cut}: truncated JPEG file" in err and "pass --allow-truncated to decode" in err
    assert f"{huge}: image is 20000x20000 = 400000000 pixels, over the limit of --max-pixels 178956970" in err
    assert "pass --max-pixels 0 (no limit) or a larger number" in err
    assert "--max-pixels 100" in err
    for api_words in ("max_pixels", "allow_truncated", "MAX_IMAGE_PIXELS"):
        assert api_words not in err
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(_localize([photo], tmp_path / "o3", tiny_model_dir, "--max-pixels", "-1"))
    assert info.value.code == 2
    assert "must be 0 (no limit) or a positive number of pixels" in capsys.readouterr().err
    assert "0: no limit" in build_parser()._subparsers._group_actions[0].choices["localize"].format_help()


def _png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


# -- 6. warnings that say which file, once per kind ----------------------------------------------------------


def test_pillow_warnings_name_the_file_once_per_kind(tmp_path):
    path = tmp_path / "tags.tif"
    path.write_bytes(bad_tags_tiff())
    for read in (load_image, read_exif):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read(path)
        pillow = [str(w.message) for w in caught if w.category is UserWarning]
        assert len(pillow) == 1, pillow
        assert pillow[0].startswith(f"{path}: Tag data larger than file. Skipping tag 270 (and ")


@needs_libtiff
def test_libtiff_stderr_becomes_one_warning_naming_the_file(tmp_path, capfd):
    path = tmp_path / "fax.tif"
    path.write_bytes(damaged_tiff("group4"))
    with pytest.warns(ImageDecodeWarning) as caught:
        load_image(path)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"{path}: libtiff reported problems while decoding")
    assert "Fax4Decode: Bad code word" in str(caught[0].message)
    assert "Fax4Decode" not in capfd.readouterr().err, "nothing reaches the process's stderr unnamed"


@needs_libtiff
def test_cli_warnings_are_one_line_per_file_and_kind(tiny_model_dir, tmp_path, capfd):
    tags = [tmp_path / f"tags{i}.tif" for i in range(2)]
    for path in tags:
        path.write_bytes(bad_tags_tiff())
    fax = tmp_path / "fax.tif"
    fax.write_bytes(damaged_tiff("group4"))
    assert main(["exif", *map(str, tags), str(tags[0])]) == 0
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 2, err
    for line, path in zip(err, tags):  # how many are counted depends on the warning filters
        assert re.fullmatch(rf"exifclip: warning: {re.escape(str(path))}: Tag data larger than file\. Skipping "
                            r"tag 270 \(and \d+ more like it\)", line), line
    assert main(_localize([fax], tmp_path / "out", tiny_model_dir)) == 0
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "Fax4Decode" in line]
    assert len(lines) == 1 and lines[0].startswith(f"exifclip: warning: {fax}: libtiff reported problems"), err
    assert "warnings.warn" not in err and "UserWarning" not in err, "no raw Python warning format"
    record = json.loads((tmp_path / "out" / "fax.json").read_text())
    assert any("Fax4Decode" in note for note in record["warnings"])


# -- 9. selectable, sized pictures; timings that include writing; the folder layout -------------------------


def test_outputs_are_selectable_and_sized(tiny_model_dir, tmp_path, capsys):
    photo = _photo(tmp_path / "in" / "a.png")  # 160 x 128
    assert build_parser().parse_args(_localize([photo], tmp_path / "o", tiny_model_dir)).max_side == 2048
    assert main(_localize([photo], tmp_path / "mask-only", tiny_model_dir, "--outputs", "mask")) == 0
    assert sorted(p.name for p in (tmp_path / "mask-only").iterdir()) == ["a.json", "a_mask.png", "results.jsonl"]
    assert main(_localize([photo], tmp_path / "none", tiny_model_dir, "--outputs", "none")) == 0
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["a.json", "results.jsonl"]
    assert main(_localize([photo], tmp_path / "small", tiny_model_dir, "--max-side", "64")) == 0
    capsys.readouterr()
    sizes = {kind: Image.open(tmp_path / "small" / f"a_{kind}.png").size for kind in ("heatmap", "mask", "overlay")}
    assert sizes == {"heatmap": (54, 43), "overlay": (54, 43), "mask": (160, 128)}, "the mask is always exact"
    record = json.loads((tmp_path / "small" / "a.json").read_text())
    assert record["picture_size"] == [54, 43]
    timings = record["timings"]
    assert {"decode_s", "embed_s", "postprocess_s", "write_s", "total_s"} <= set(timings)
    assert timings["total_s"] >= timings["write_s"] + timings["decode_s"] > 0
    mask = np.asarray(Image.open(tmp_path / "small" / "a_mask.png")) > 0
    assert mask.shape == (128, 160) and 0 < record["spliced_fraction"] == pytest.approx(mask.mean())
    with pytest.raises(SystemExit):
        build_parser().parse_args(_localize([photo], tmp_path / "o", tiny_model_dir, "--outputs", "mask,score"))


def test_resume_redoes_an_image_whose_requested_pictures_are_missing(tiny_model_dir, tmp_path, capsys):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(_localize([photo], out, tiny_model_dir, "--outputs", "mask")) == 0
    assert main([*_localize([photo], out, tiny_model_dir, "--outputs", "mask"), "--resume"]) == 0
    assert "0 localized, 1 skipped" in capsys.readouterr().err
    assert main([*_localize([photo], out, tiny_model_dir), "--resume"]) == 0
    assert "1 localized, 0 skipped" in capsys.readouterr().err
    assert (out / "a_overlay.png").is_file()


def test_evaluate_folder_says_the_layout_it_expects(tmp_path, capsys):
    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "ROOT/images/STEM" in " ".join(help_text.split()) and "ROOT/masks/STEM.png" in " ".join(help_text.split())
    (tmp_path / "photos").mkdir()
    assert main(["evaluate", "--dataset", "folder", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exifclip: error: ") and "--dataset folder expects ROOT/images/STEM" in err
    assert "ROOT/masks/STEM.png (optional, matched by file stem" in err


# -- 5. memory: pictures in bands, never a full-resolution float64 --------------------------------------


def test_overlay_and_heatmap_cost_at_most_12_bytes_per_pixel():
    from exifclip.viz import colorize, overlay

    rng = np.random.default_rng(0)
    height, width = 1500, 2000
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    heatmap = rng.random((height, width), dtype=np.float32)
    mask = np.zeros((height, width), bool)
    mask[300:900, 400:1500] = True
    for draw in (lambda: overlay(image, heatmap, mask), lambda: colorize(heatmap)):
        tracemalloc.start()
        try:
            out = draw()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert out.shape == (height, width, 3)
        assert peak / (height * width) <= 12, f"{peak / (height * width):.1f} bytes per pixel"


_WRITE_RSS = """
import resource, sys, tempfile, numpy as np
from exifclip import viz
h, w = 3000, 4000
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
heatmap = rng.random((h, w), dtype=np.float32)
mask = np.zeros((h, w), bool); mask[500:2000, 800:3000] = True
viz.save_mask(tempfile.mktemp(suffix=".png"), mask[:8, :8])  # imports and first-use costs out of the way
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
folder = tempfile.mkdtemp()
viz.save_overlay(folder + "/o.png", image, heatmap, mask, max_side=None)
viz.save_heatmap(folder + "/h.png", heatmap, max_side=None)
viz.save_mask(folder + "/m.png", mask)
viz.save_overlay(folder + "/o2.png", image, heatmap, mask, max_side=2048)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / (h * w))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB")
def test_writing_full_resolution_pictures_costs_at_most_12_bytes_per_pixel():
    proc = subprocess.run([sys.executable, "-c", _WRITE_RSS], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) <= 12, f"{float(proc.stdout):.1f} bytes per pixel"


def test_naming_warnings_from_many_threads_leaves_the_warning_machinery_as_it_was(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"tags{i}.tif")
        paths[-1].write_bytes(bad_tags_tiff())
    before = (warnings.showwarning, list(warnings.filters))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda p: (load_image(p), read_exif(p)), paths * 5))
    assert (warnings.showwarning, list(warnings.filters)) == before
    named = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(named) == 40 and all(m.split(": ")[0] in map(str, paths) for m in named)
