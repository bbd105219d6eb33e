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
    log = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["file"], r["status"]) for r in log] == [(str(good), "ok"), (str(bad), "failed"), (str(other), "ok")]
    assert log[1]["error"].startswith(f"{bad}: ")
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


# -- the package: registry, shared options, train flags, a help path without the heavy stack --------


def _subparsers(parser):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return action.choices, helps


def test_every_registered_command_has_help_and_a_run_function():
    from exifclip.cli import COMMANDS

    choices, helps = _subparsers(build_parser())
    assert list(choices) == [command.NAME for command in COMMANDS]
    for command in COMMANDS:
        sub = choices[command.NAME]
        assert helps[command.NAME], command.NAME
        assert sub.get_default("func") is command.run and callable(command.register)
        assert f"usage: exifclip {command.NAME}" in sub.format_help()


@pytest.mark.parametrize(
    "argv",
    [["-m", "exifclip", "--help"], ["-m", "exifclip", "localize", "--help"], ["-m", "exifclip", "train", "--help"],
     ["-m", "exifclip", "localize", "--stride", "x"], ["-m", "exifclip.cli", "train", "--help"]],
)
def test_help_and_usage_errors_import_no_heavy_library(argv):
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == (0 if "--help" in argv else 2), proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = {name for name in imported if name.split(".")[0] in ("torch", "transformers", "sklearn", "scipy")}
    assert not heavy, sorted(heavy)[:10]
    if "--help" in argv:
        assert "usage: exifclip" in proc.stdout


def test_estimator_kwargs_from_the_shared_options():
    import argparse
    import inspect

    from exifclip.cli._options import add_decode_options, add_model_options, estimator_kwargs, make_localizer
    from exifclip.embedder import ExifPatchEmbedder
    from exifclip.io import DEFAULT_MAX_PIXELS
    from exifclip.splice.localizer import SpliceLocalizer

    from exifclip.cli._options import SPLICE_MODEL

    for estimator, default_model in ((ExifPatchEmbedder, None), (SpliceLocalizer, SPLICE_MODEL)):
        # every key is a parameter, with its default (the splice commands default to the splice model)
        options = argparse.ArgumentParser()
        add_model_options(options, **({} if default_model is None else {"default_model": default_model}))
        add_decode_options(options)
        kwargs = estimator_kwargs(options.parse_args([]))
        params = inspect.signature(estimator).parameters
        assert {k: params[k].default for k in kwargs} == kwargs
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_decode_options(parser)
    given = estimator_kwargs(parser.parse_args(
        ["--model", "m", "--revision", "v1", "--patch-size", "64", "--num-per-dim", "7", "--stride", "8",
         "--batch-size", "3", "--device", "cpu", "--dtype", "bfloat16", "--allow-truncated", "--max-pixels", "100",
         "--fast", "--runtime", "onnxruntime"]))
    assert given == dict(model="m", revision="v1", patch_size=64, num_per_dim=7, stride=8, batch_size=3,
                         device="cpu", dtype="bfloat16", mode="fast", runtime="onnxruntime", allow_truncated=True,
                         max_pixels=100)
    assert estimator_kwargs(parser.parse_args(["--max-pixels", "0"]))["max_pixels"] is None
    assert estimator_kwargs(parser.parse_args([]))["max_pixels"] == DEFAULT_MAX_PIXELS
    args = build_parser().parse_args(["localize", "a.png", "--out", "o", "--stride", "8", "--method", "ncut"])
    localizer = make_localizer(args)
    assert localizer.get_params()["stride"] == 8 and localizer.method == "ncut" and localizer.errors == "skip"


def _train_parser():
    choices, _ = _subparsers(build_parser())
    return choices["train"]


def test_every_flag_bearing_training_field_is_a_train_flag():
    import dataclasses

    from exifclip.cli.train import flag_fields, flag_name
    from exifclip.training.config import TrainingConfig

    sub = _train_parser()
    by_dest = {a.dest: a for a in sub._actions}
    fields = flag_fields()
    assert {f.name for f in fields} == {f.name for f in dataclasses.fields(TrainingConfig) if f.metadata}
    assert len(fields) >= 30
    help_text = sub.format_help()
    for f in fields:
        action = by_dest[f.name]
        assert flag_name(f) in action.option_strings and action.help and flag_name(f) in help_text
    assert by_dest["out_dir"].option_strings == ["--out"] and by_dest["progress"].option_strings == ["--no-progress"]
    args = sub.parse_args([])
    assert all(getattr(args, f.name) is None for f in fields), "flags not given keep the config's value"
    with pytest.raises(SystemExit):
        sub.parse_args(["--arch", "small", "--init", "x"])


def test_a_config_field_with_metadata_gets_a_flag():
    import argparse
    from dataclasses import dataclass, field

    from exifclip.cli.train import add_config_flags
    from exifclip.training.config import TrainingConfig

    @dataclass
    class Extended(TrainingConfig):
        label_smoothing: float | None = field(default=0.0, metadata={"help": "smoothing of the targets"})
        note: str = "not a flag"

    parser = argparse.ArgumentParser()
    add_config_flags(parser, Extended)
    assert parser.parse_args(["--label-smoothing", "0.1"]).label_smoothing == 0.1
    assert "smoothing of the targets (default: 0.0)" in parser.format_help()
    assert "--note" not in parser.format_help()


def test_train_flags_become_the_config(tmp_path):
    from exifclip.cli.train import config_from_args
    from exifclip.training.config import TrainingConfig

    base = tmp_path / "run.json"
    TrainingConfig(init="some/model", steps=7, lr=3e-4, clip_grad_norm=2.0).to_json(base)
    args = build_parser().parse_args(
        ["train", "--config", str(base), "--arch", "small", "--out", str(tmp_path / "o"), "--clip-grad-norm", "0",
         "--augment", "--no-progress", "--images", "a.jpg", "b.jpg", "--cache-images", "--resume", "--tags", "all"])
    config = config_from_args(args)
    assert (config.arch, config.init, config.steps, config.lr) == ("small", None, 7, 3e-4)  # --config kept
    assert config.clip_grad_norm is None and config.augment is True and config.progress is False
    assert config.images == ["a.jpg", "b.jpg"] and config.cache_images is True and config.resume is True
    assert config.out_dir == str(tmp_path / "o") and config.tags == "all"
    args = build_parser().parse_args(
        ["train", "--images", "photos/", "--init", "m", "--out", "o", "--augment", '{"jpeg_quality": [70, 95]}',
         "--resume", "o/checkpoints/step-00000002", "--steps", "5", "--lr", "1e-3"])
    config = config_from_args(args)
    assert config.images == "photos/" and config.augment == {"jpeg_quality": [70, 95]} and config.arch is None
    assert config.resume == "o/checkpoints/step-00000002" and config.steps == 5 and config.lr == 1e-3
    assert config_from_args(build_parser().parse_args(["train", "--out", "o"])) == TrainingConfig(out_dir="o")


def test_command_errors_map_to_exit_statuses(photos, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert main(["embed", photos[0], "--out", str(out), "--save-every", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "exifclip: error: --save-every must be a positive number of images, got 0"
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["convert-official", str(tmp_path / "ckpt.pth"), str(full)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["train", "--images", "p", "--arch", "small"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
