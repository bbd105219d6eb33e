"""The command line: results as files or JSON, failures as one line naming the file."""

from __future__ import annotations

import json

import numpy as np
import piexif
import pytest
from PIL import Image

from exifclip.cli import build_parser, main


@pytest.fixture
def photos(tmp_path, rng):
    paths = []
    for i, (h, w) in enumerate([(64, 80), (70, 96)]):
        exif = piexif.dump(
            {
                "0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: f"Cam {i}".encode()},
                "Exif": {piexif.ExifIFD.ExposureTime: (1, 500)},
            }
        )
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, exif=exif, quality=95)
        paths.append(str(path))
    return paths


def test_exif_prints_text_and_json(photos, capsys):
    assert main(["exif", *photos]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(photos[0] + "\t")
    assert "Make: Canon" in lines[0] and "Model: Cam 0" in lines[0] and "Exposure Time: 1/500" in lines[0]
    assert main(["exif", "--json", photos[1]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["file"] == photos[1] and record["exif"]["Model"] == "Cam 1"


def test_exif_reports_bad_file_and_goes_on(photos, tmp_path, capsys):
    missing = str(tmp_path / "gone.jpg")
    assert main(["exif", missing, photos[0]]) == 1
    captured = capsys.readouterr()
    assert "gone.jpg" in captured.err and captured.err.count("error") == 1
    assert photos[0] in captured.out


def test_embed_writes_npz(photos, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    code = main(["embed", *photos, "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu", "--patches"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["embedded"] == 2 and summary["failed"] == 0
    data = np.load(out)
    assert data["embeddings"].shape == (2, summary["dim"])
    assert list(data["files"]) == photos
    assert data["patches_0"].shape[0] == data["positions_0"].shape[0]
    np.testing.assert_allclose(np.linalg.norm(data["embeddings"], axis=1), 1, atol=1e-5)


def test_embed_keeps_good_files_when_some_fail(photos, tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "emb.npz"
    code = main(
        ["embed", photos[0], str(bad), photos[1], "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "bad.jpg" in err and err.count("exifclip: error") == 1
    data = np.load(out)
    assert list(data["files"]) == [photos[0], photos[1]] and list(data["failed_files"]) == [str(bad)]
    assert not list(tmp_path.glob(".emb.npz*")), "no temporary file left behind"


def test_embed_missing_model_is_one_clear_line(photos, tmp_path, capsys):
    code = main(["embed", photos[0], "--out", str(tmp_path / "x.npz"), "--model", "nobody/nothing"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nobody/nothing" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_parser_lists_subcommands():
    help_text = build_parser().format_help()
    assert "exif" in help_text and "embed" in help_text


def _spliced_png(path, rng):
    image = np.full((128, 160, 3), 120, np.uint8) + rng.integers(0, 4, (128, 160, 3), dtype=np.uint8)
    mask = np.zeros((128, 160), bool)
    mask[32:96, 64:144] = True
    image[mask] = (120 + rng.normal(0, 20, (mask.sum(), 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return mask


def test_localize_writes_pictures_and_json_and_reports_bad_files(tiny_model_dir, tmp_path, rng, capsys):
    good = tmp_path / "in" / "photo.png"
    good.parent.mkdir()
    _spliced_png(good, rng)
    other = tmp_path / "other" / "photo.png"  # same stem: outputs must not collide
    other.parent.mkdir()
    _spliced_png(other, rng)
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code = main(
        [
            "localize",
            str(good),
            str(bad),
            str(other),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--stride",
            "8",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and captured.err.count("exifclip: error") == 1
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [r["file"] for r in records] == [str(good), str(other)]
    for stem in ("photo", "photo_2"):
        for kind in ("heatmap", "mask", "overlay"):
            picture = Image.open(out / f"{stem}_{kind}.png")
            assert picture.size == (160, 128)
    assert records[0]["grid"]["stride"] == 8 and 0 < records[0]["spliced_fraction"] < 1
    assert (out / "results.jsonl").read_text().count("\n") == 2
    assert not list(out.glob(".*")), "no temporary files left"


def test_evaluate_prints_headline_and_writes_json(tiny_model_dir, tmp_path, rng, capsys):
    root = tmp_path / "bench"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        mask = _spliced_png(root / "images" / f"s{i}.png", rng)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")
    Image.fromarray(np.full((128, 160, 3), 120, np.uint8)).save(root / "images" / "a0.png")
    report = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--dataset",
            "folder",
            "--root",
            str(root),
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--stride",
            "8",
            "--json",
            str(report),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "p-mAP (spliced images only)" in out and "seconds per image" in out
    data = json.loads(report.read_text())
    assert data["counts"]["n_spliced"] == 2 and data["counts"]["n_authentic"] == 1
    assert data["metrics"]["pmap"] > 0.45  # chance is about the spliced area, 0.25
    assert data["seconds_per_image"] > 0


def test_evaluate_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
