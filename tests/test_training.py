"""Contrastive training: the dataset, the loop, checkpoints and exact resume, the estimator's fine-tuning."""

from __future__ import annotations

import copy
import csv
import io as stdio
import json
import re
import shutil
import warnings

import joblib
import numpy as np
import piexif
import pytest
import torch
from PIL import Image

from exifclip.modeling.hub import clear_model_cache, load_model
from exifclip.training import (
    GlobalBatchSampler,
    TrainingConfig,
    global_clip_loss,
    latest_checkpoint,
    load_training_state,
    lr_factor,
    train,
)
from exifclip.training.augment import AugmentConfig, augment_patch
from exifclip.training.data import ExifPatchDataset, read_metadata

from .conftest import TINY, make_tiny_model

CAMERAS = {  # make, model, exposure, f-number, iso, and how the "sensor" looks
    0: (b"Canon", b"Canon EOS 5D", (1, 500), (28, 10), 100, 2.0),
    1: (b"NIKON CORPORATION", b"NIKON D3200", (1, 60), (56, 10), 3200, 25.0),
    2: (b"SONY", b"DSC-RX100", (1, 250), (40, 10), 800, 10.0),
    3: (b"Apple", b"iPhone XR", (1, 120), (18, 10), 25, 0.0),
}


def _exif(camera: int) -> bytes:
    make, model, exposure, fnum, iso, _ = CAMERAS[camera]
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: model, piexif.ImageIFD.Software: b"fw 1.0"},
        "Exif": {piexif.ExifIFD.ExposureTime: exposure, piexif.ExifIFD.FNumber: fnum,
                 piexif.ExifIFD.ISOSpeedRatings: iso, piexif.ExifIFD.MeteringMode: 5,
                 piexif.ExifIFD.FocalLength: (50, 1), piexif.ExifIFD.Flash: 16,
                 piexif.ExifIFD.DateTimeOriginal: b"2020:01:02 03:04:05"},  # not in DEFAULT_TAGS
    })


def _pixels(rng, camera: int, h: int, w: int) -> np.ndarray:
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8))
                      .resize((w, h), Image.BILINEAR), dtype=np.float32)
    noise = CAMERAS[camera][5]
    if camera == 3:  # a blocky pipeline
        base[::4, :] = 0
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def write_photos(directory, n, size=(72, 88), seed=0, quality=95):
    """``n`` JPEGs cycling through the cameras; their pixels and EXIF both depend on the camera."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        camera = i % len(CAMERAS)
        path = directory / f"photo{i:03d}.jpg"
        Image.fromarray(_pixels(rng, camera, *size)).save(path, exif=_exif(camera), quality=quality)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    write_photos(d, 12)
    return d


def _config(photo_dir, **kw):
    values = dict(images=str(photo_dir), min_tags=5, steps=4, batch_size=4, lr=1e-3, device="cpu",
                  progress=False, seed=0)
    values.update(kw)
    return TrainingConfig(**values)


_MODELS: dict = {}


def tiny(dropout=True):
    """A fresh copy of one tiny model (per test session). Copies, because
    ``build_exif_tokenizer`` is not deterministic: two ``make_tiny_model(0)``
    calls can differ in their vocabulary. Without dropout for comparing runs
    that split batches differently."""
    if dropout not in _MODELS:
        text = {**TINY["text_config"], **({} if dropout else {"dropout": 0.0, "attention_dropout": 0.0})}
        _MODELS[dropout] = make_tiny_model(0, text_config=text)
    return copy.deepcopy(_MODELS[dropout])


# -- data ---------------------------------------------------------------------------------------

def test_dataset_reads_exif_text_and_skips_bad_photos_without_crashing(tmp_path, rng):
    write_photos(tmp_path, 4)
    Image.fromarray(_pixels(rng, 0, 20, 90)).save(tmp_path / "tiny.jpg", exif=_exif(0))  # too small
    Image.fromarray(_pixels(rng, 0, 64, 64)).save(tmp_path / "bare.jpg")  # no EXIF
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "readme.txt").write_text("ignored: not an image name")
    ds = ExifPatchDataset(tmp_path, patch_size=32, min_tags=5)
    assert len(ds) == 4
    assert dict(ds.skipped) == {"too_small": 1, "too_few_tags": 1, "unreadable": 1}
    assert {name.split("/")[-1]: reason for name, reason, _ in ds.skipped_files} == {
        "tiny.jpg": "too_small", "bare.jpg": "too_few_tags", "notes.jpg": "unreadable"}
    text = ds.records[0].text
    assert text.startswith("Make: Canon, Model: Canon EOS 5D, Exposure Time: 1/500, F-Number: 2.8")
    assert ds.records[0].n_tags == 9  # the nine tags written, all in DEFAULT_TAGS
    assert ds.summary() == {"images": 4, "skipped": {"too_few_tags": 1, "too_small": 1, "unreadable": 1},
                            "skipped_total": 3}
    assert len(ExifPatchDataset(tmp_path, patch_size=32, min_tags=10)) == 0  # the threshold is honoured
    assert len(ExifPatchDataset(tmp_path, patch_size=32, min_tags=10, tags="all")) == 4  # "all" counts more


def test_patches_are_full_resolution_crops_and_deterministic(photo_dir):
    ds = ExifPatchDataset(photo_dir, patch_size=32, min_tags=5, seed=3)
    image = ds.image(5)
    patch = ds.sample(5, epoch=0).patch
    assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
    windows = np.lib.stride_tricks.sliding_window_view(image, (32, 32, 3))[..., 0, :, :, :]
    assert (windows == patch).all(axis=(-1, -2, -3)).any(), "the patch is a crop of the decoded photo, not resized"
    assert np.array_equal(ds[(0, 5)].patch, patch) and np.array_equal(ds[5].patch, patch)
    assert not np.array_equal(ds.sample(5, epoch=1).patch, patch)
    assert not np.array_equal(ds.with_settings(seed=4).sample(5).patch, patch)


def test_metadata_csv_and_jsonl_keep_exif_apart_from_pixels(tmp_path, rng):
    pix = tmp_path / "pixels"
    pix.mkdir()
    for i in range(3):
        Image.fromarray(_pixels(rng, i, 64, 64)).save(pix / f"p{i}.png")  # PNG: no EXIF in the file
    with open(tmp_path / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "Make", "Model", "ISO Speed Ratings"])
        w.writerow(["p0.png", "Canon", "EOS 5D", "100"])
        w.writerow(["p1.png", "NIKON", "D3200", ""])
        w.writerow(["missing.png", "SONY", "RX100", "200"])
    ds = ExifPatchDataset(pix, metadata=tmp_path / "meta.csv", patch_size=32, min_tags=3)
    assert ds.texts == ["Make: Canon, Model: EOS 5D, ISO Speed Ratings: 100"]
    assert dict(ds.skipped) == {"too_few_tags": 1, "unreadable": 1}

    lines = [{"file": "pixels/p0.png", "exif": {"Make": "Canon", "Model": "EOS 5D"}},
             {"path": "pixels/p2.png", "text": "Make: Apple, Model: iPhone XR, Flash: Off, did not fire"}]
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = ExifPatchDataset(metadata=tmp_path / "meta.jsonl", patch_size=32, min_tags=2)
    assert ds.texts == ["Make: Canon, Model: EOS 5D", lines[1]["text"]]
    assert [r.n_tags for r in ds.records] == [2, 3]
    assert ds.sample(1).patch.shape == (32, 32, 3)
    (tmp_path / "bad.jsonl").write_text('{"exif": {}}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: no file name"):
        read_metadata(tmp_path / "bad.jsonl")


def test_augmentations_are_off_by_default_and_say_what_they_did(photo_dir):
    ds = ExifPatchDataset(photo_dir, patch_size=32, min_tags=5)
    assert ds.augment is None and all("Processing" not in ds.sample(i).text for i in range(len(ds)))
    image = ds.image(0)
    expected = {"jpeg": r", Processing: JPEG \d+$", "resample": r", Processing: Resample \d\.\d\d$",
                "blur": r", Processing: Blur \d\.\d$", "noise": r", Processing: Noise \d+\.\d$",
                "gamma": r", Processing: Gamma \d\.\d\d$", "sharpen": r", Processing: Sharpen \d\.\d$"}
    for op, pattern in expected.items():
        cfg = AugmentConfig(p=1.0, ops=[op])
        patch, suffix = augment_patch(image, 32, np.random.default_rng(1), cfg)
        assert re.search(pattern, suffix), (op, suffix)
        assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
        again, _ = augment_patch(image, 32, np.random.default_rng(1), cfg)
        assert np.array_equal(patch, again)
    q = augment_patch(image, 32, np.random.default_rng(0), AugmentConfig(ops=["jpeg"], jpeg_quality=(60, 60)))[1]
    assert q == ", Processing: JPEG 60"
    aug = ds.with_settings(augment={"p": 1.0, "ops": ["gamma"], "gamma": (2.0, 2.0)})
    sample = aug.sample(0)
    assert sample.text == ds.records[0].text + ", Processing: Gamma 2.00"
    with pytest.raises(ValueError, match="augment ops"):
        AugmentConfig(ops=["rotate"])


def test_sampler_one_photo_per_batch_and_ranks_partition_the_global_batch():
    one = GlobalBatchSampler(10, batch_size=4, steps=6, seed=1, accum_steps=2)
    batches = list(one)
    assert len(batches) == 12 and all(len(b) == 2 for b in batches)
    for s in range(6):
        keys = one.global_batch(s)
        assert len({i for _, i in keys}) == 4  # distinct photos in a batch
    assert one.position(5) == (2, 1)  # 2 batches per epoch (remainder dropped)
    ranks = [GlobalBatchSampler(10, 4, 6, seed=1, world_size=2, rank=r) for r in range(2)]
    per_rank = [list(r) for r in ranks]
    for s in range(6):  # micro j of one process == rank j of two
        assert per_rank[0][s] + per_rank[1][s] == batches[2 * s] + batches[2 * s + 1]
    resumed = list(GlobalBatchSampler(10, 4, 6, seed=1, accum_steps=2, start_step=3))
    assert resumed == batches[6:]
    with pytest.raises(ValueError, match="only 3 usable photos"):
        GlobalBatchSampler(3, 4, 1)
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, 6, 1, world_size=4)


def test_pure_pieces():
    assert lr_factor(0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(10, 100, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(99, 100, min_lr_ratio=0.1) == pytest.approx(0.1, abs=1e-3)
    e = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    from exifclip.modeling.loss import ClipLoss

    assert torch.allclose(global_clip_loss(e, t, scale), ClipLoss()(e, t, scale))
    valid = torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    assert torch.allclose(global_clip_loss(e, t, scale, valid), ClipLoss()(e[valid], t[valid], scale))
    assert torch.equal(ClipLoss()(e, t, scale, valid), global_clip_loss(e, t, scale, valid))


def test_rank_aware_loss_checks_its_process_group():
    from exifclip.modeling.loss import ClipLoss, scale_grad

    x = torch.tensor(3.0, requires_grad=True)
    y = scale_grad(x, 1 / 3)
    y.backward()
    assert float(y.detach()) == 3.0 and float(x.grad) == pytest.approx(1 / 3)  # the value kept, the gradient scaled
    with pytest.raises(ValueError, match="rank"):
        ClipLoss(rank=2, world_size=2)
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    with pytest.raises(RuntimeError, match="process group"):  # not a silent one-process loss
        ClipLoss(rank=0, world_size=2)(e, e, torch.tensor(10.0))


def test_config_json_round_trip_and_validation(tmp_path):
    cfg = TrainingConfig(images="x", arch="small", augment=True, betas=[0.9, 0.95])
    cfg.to_json(tmp_path / "recipe.json")
    back = TrainingConfig.from_json(tmp_path / "recipe.json")
    assert back.to_dict() == cfg.to_dict() and back.betas == (0.9, 0.95)
    assert json.loads((tmp_path / "recipe.json").read_text())["augment"]["ops"][0] == "jpeg"
    with pytest.raises(ValueError, match="exactly one of arch"):
        TrainingConfig(images="x").validate()
    with pytest.raises(ValueError, match="exactly one of arch"):
        TrainingConfig(images="x", arch="small", init="m").validate()
    with pytest.raises(ValueError, match="batch_size"):
        TrainingConfig(images="x", arch="small", batch_size=0).validate()
    with pytest.raises(ValueError, match="batchnorm"):
        TrainingConfig(images="x", arch="small", batchnorm="ghost").validate()
    (tmp_path / "typo.json").write_text('{"stepss": 3}')
    with pytest.raises(ValueError, match="stepss"):
        TrainingConfig.from_json(tmp_path / "typo.json")


# -- the loop -----------------------------------------------------------------------------------

def test_training_learns_and_logs(photo_dir, tmp_path, capsys):
    calls = []

    def hook(model, step):
        assert not model.training
        calls.append(step)
        return {"probe": float(step)}

    cfg = _config(photo_dir, steps=30, batch_size=8, lr=3e-3, out_dir=str(tmp_path / "run"), eval_every=10,
                  progress=True, clip_grad_norm=1.0)
    result = train(cfg, model=tiny(), eval_hook=hook)
    assert result.step == 30 and len(result.losses) == 30
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) - 0.3, result.losses
    assert calls == [10, 20, 30] and [e["probe"] for e in result.evals] == [10.0, 20.0, 30.0]
    assert not result.model.training and result.patches_per_s > 0
    err = capsys.readouterr().err
    assert "patches/s" in err and "loss" in err  # the progress bar
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["dataset"]["images"] == 12
    steps = [r for r in records if "event" not in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    assert {"loss", "lr", "patches_per_s", "grad_norm", "logit_scale"} <= set(steps[0])
    assert [r["step"] for r in records if r.get("event") == "eval"] == [10, 20, 30]
    assert records[-1]["event"] == "end"
    reloaded = load_model(run, use_cache=False)  # the final model is a loadable model directory
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k
    assert json.loads((run / "training_config.json").read_text())["steps"] == 30
    assert "exifclip" in (run / "README.md").read_text()


def test_accumulation_keeps_the_loss_over_the_global_batch(photo_dir):
    # With frozen BatchNorm and no dropout, splitting the global batch into micro-batches changes nothing.
    runs = [train(_config(photo_dir, steps=3, batch_size=8, accum_steps=k, batchnorm="frozen"),
                  model=tiny(dropout=False)) for k in (1, 2, 4)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.losses, runs[0].losses, rtol=1e-5)
        for key, value in runs[0].model.state_dict().items():
            torch.testing.assert_close(other.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_interrupted_run_resumes_exactly(photo_dir, tmp_path):
    base = dict(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, accum_steps=2)
    full = train(_config(photo_dir, out_dir=str(tmp_path / "full"), **base), model=tiny())

    def interrupt(model, step):
        if step == 4:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(_config(photo_dir, out_dir=str(cut), checkpoint_every=3, eval_every=1, **base),
              model=tiny(), eval_hook=interrupt)
    assert [p.name for p in sorted((cut / "checkpoints").iterdir())] == ["step-00000003", "step-00000004"]
    ckpt = latest_checkpoint(cut)
    assert ckpt.name == "step-00000004"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    state = load_training_state(ckpt)  # plain tensors and dicts: weights_only=True loads it
    assert state["step"] == 4 and state["data"]["epoch"] == 1 and len(state["losses"]) == 4
    assert set(state) >= {"optimizer", "scheduler", "rng", "data", "losses", "config"}

    resumed = train(_config(photo_dir, out_dir=str(cut), resume=True, **base))
    assert resumed.resumed_from == 4 and resumed.step == 6
    assert resumed.losses == full.losses  # bitwise, on CPU
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    logged = [json.loads(x) for x in (cut / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "event" not in r] == [1, 2, 3, 4, 5, 6]
    # Resuming a finished run changes nothing; a missing checkpoint is a clear error.
    again = train(_config(photo_dir, out_dir=str(cut), resume=True, **base))
    assert again.step == 6 and again.losses == full.losses
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train(_config(photo_dir, resume=str(tmp_path / "nothing"), **base))


def test_checkpoints_are_pruned(photo_dir, tmp_path):
    train(_config(photo_dir, steps=4, out_dir=str(tmp_path), checkpoint_every=1, keep_checkpoints=2),
          model=tiny())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000003", "step-00000004"]


def test_undecodable_photo_is_dropped_from_its_batch_and_counted(tmp_path):
    paths = write_photos(tmp_path, 8)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])  # the header parses; the pixels do not decode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(_config(tmp_path, steps=4, batch_size=4), model=tiny())
    assert result.step == 4 and all(np.isfinite(result.losses))
    assert result.dataset["skipped"] == {"decode_failed": 1} and result.dataset["images"] == 7
    assert any("photo002.jpg" in str(w.message) for w in caught)
    assert min(h["patches"] for h in result.history) == 3


def test_from_scratch_builds_the_vocabulary_from_the_corpus(photo_dir):
    result = train(_config(photo_dir, arch="small", steps=1, batch_size=4, patch_size=32, vocab_size=300))
    tok = result.model.tokenizer
    assert result.model.config.text_config.vocab_size == len(tok) <= 300
    assert "iphone" in tok.get_vocab() and "rx100" in "".join(tok.tokenize("DSC-RX100"))
    assert result.model.config.patch_size == 32


def test_init_keeps_the_model_tokenizer(photo_dir, tiny_model_dir):
    result = train(_config(photo_dir, init=str(tiny_model_dir), steps=1))
    base = load_model(tiny_model_dir)
    assert result.model.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    assert result.model is not base
    changed = any(not torch.equal(v, base.state_dict()[k]) for k, v in result.model.state_dict().items())
    assert changed and base.training is False  # the cached model was not touched


def test_too_few_photos_is_a_clear_error(photo_dir):
    with pytest.raises(ValueError, match="only 12 usable photos, but batch_size 16"):
        train(_config(photo_dir, batch_size=16), model=tiny())


# -- the estimator -------------------------------------------------------------------------------

def test_embedder_fine_tune_fit_save_and_pickle(photo_dir, tiny_model_dir, tmp_path):
    from exifclip.embedder import ExifPatchEmbedder

    model_copy = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model_copy)
    photos = sorted(str(p) for p in photo_dir.glob("*.jpg"))
    zero_shot = ExifPatchEmbedder(model=str(model_copy), device="cpu").fit(photos)
    est = ExifPatchEmbedder(model=str(model_copy), device="cpu", fine_tune=True, train_steps=3,
                            train_batch_size=4, learning_rate=1e-3, seed=0)
    assert est.fit(photos, y=np.zeros(len(photos))) is est
    assert est.model_ is not zero_shot.model_ and est.train_losses_.shape == (3,)
    cached = load_model(str(model_copy))
    assert all(torch.equal(v, cached.state_dict()[k]) for k, v in zero_shot.model_.state_dict().items())
    Z = est.transform(photos[:3])
    assert not np.allclose(Z, zero_shot.transform(photos[:3]))

    est.save_pretrained(tmp_path / "tuned")
    again = ExifPatchEmbedder(model=str(tmp_path / "tuned"), device="cpu").fit()
    np.testing.assert_allclose(again.transform(photos[:3]), Z, atol=1e-6)

    buffer = stdio.BytesIO()
    joblib.dump(est, buffer)
    shutil.rmtree(model_copy)  # the weights travel in the pickle, not by name
    clear_model_cache()
    buffer.seek(0)
    restored = joblib.load(buffer)
    assert next(restored.model_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.transform(photos[:3]), Z, atol=1e-6)
    np.testing.assert_allclose(restored.embed_exif(["Make: Canon"]), est.embed_exif(["Make: Canon"]), atol=1e-6)

    from sklearn.base import clone

    assert clone(est).get_params() == est.get_params()
    with pytest.raises(ValueError, match="photos"):
        clone(est).fit()


# -- real photos ---------------------------------------------------------------------------------

@pytest.mark.shared
def test_digicam_scan_and_patches(shared_data):
    root = shared_data / "digicam"
    if not root.is_dir():
        pytest.skip("digicam is absent")
    ds = ExifPatchDataset(root, patch_size=64, min_tags=11)
    assert len(ds) + sum(ds.skipped.values()) == len(list(root.glob("*.[jJ][pP][gG]")))
    assert len(ds) > 200 and set(ds.skipped) <= {"too_few_tags"}
    assert all(r.n_tags > 10 for r in ds.records)
    sample = ds.sample(0)
    assert sample.patch.shape == (64, 64, 3) and sample.text.startswith("Make: ")


# -- the command line ----------------------------------------------------------------------------

def test_cli_train_then_resume(photo_dir, tiny_model_dir, tmp_path, capsys):
    from exifclip.cli import main

    out = tmp_path / "run"
    code = main(["train", "--images", str(photo_dir), "--init", str(tiny_model_dir), "--out", str(out),
                 "--steps", "2", "--batch-size", "4", "--min-tags", "5", "--device", "cpu", "--no-progress",
                 "--checkpoint-every", "1", "--lr", "1e-3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["step"] == 2 and summary["photos"] == 12 and summary["resumed_from"] is None
    assert load_model(out, use_cache=False).config.patch_size == 32
    # --resume reads the run's own config: only what changes is given.
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from"] == 2 and summary["step"] == 3
    assert TrainingConfig.from_json(out / "training_config.json").steps == 3


def test_cli_train_reports_bad_photos_and_usage_errors(tmp_path, capsys):
    from exifclip.cli import main

    write_photos(tmp_path / "photos", 5)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    code = main(["train", "--images", str(tmp_path / "photos"), "--arch", "small", "--patch-size", "32",
                 "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "4", "--min-tags", "5",
                 "--device", "cpu", "--no-progress", "--vocab-size", "200"])
    captured = capsys.readouterr()
    assert code == 1  # trained, but one input failed
    assert captured.err.count("exifclip: error") == 1 and "broken.jpg" in captured.err
    assert json.loads(captured.out)["skipped"] == {"unreadable": 1}
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "broken.jpg" in (tmp_path / "run" / "skipped_files.csv").read_text()

    assert main(["train", "--images", str(tmp_path / "photos"), "--arch", "small", "--steps", "1"]) == 2
    assert "--out" in capsys.readouterr().err
    code = main(["train", "--images", str(tmp_path / "photos"), "--init", "nobody/nothing", "--out",
                 str(tmp_path / "x"), "--min-tags", "5", "--batch-size", "2", "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "nobody/nothing" in err and "Traceback" not in err
    code = main(["train", "--images", str(tmp_path / "photos"), "--arch", "small", "--out", str(tmp_path / "y"),
                 "--min-tags", "5", "--batch-size", "64", "--steps", "1", "--patch-size", "32"])
    assert code == 2 and "only 5 usable photos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--arch", "small", "--init", "x"])


def test_text_attention_dropout_is_checked_built_saved_and_resumed(tmp_path):
    with pytest.raises(ValueError, match="text_attention_dropout must be in"):
        TrainingConfig(images="photos", arch="small", text_attention_dropout=1.0).validate()
    with pytest.raises(ValueError, match="keeps its text tower"):
        TrainingConfig(images="photos", init="exifclip-small", text_attention_dropout=0.0).validate()
    write_photos(tmp_path / "photos", 8)
    values = dict(images=str(tmp_path / "photos"), arch="small", text_attention_dropout=0.0, min_tags=5, steps=2,
                  batch_size=4, patch_size=32, vocab_size=200, device="cpu", progress=False, seed=0,
                  out_dir=str(tmp_path / "run"), checkpoint_every=1)
    result = train(TrainingConfig(**values))
    assert result.model.config.text_config.attention_dropout == 0.0
    assert result.model.config.text_config.dropout == 0.1  # only the attention weights' dropout changes
    assert load_model(tmp_path / "run", use_cache=False).config.text_config.attention_dropout == 0.0
    resumed = train(TrainingConfig(**{**values, "steps": 3, "resume": True}))
    assert resumed.resumed_from is not None and resumed.model.config.text_config.attention_dropout == 0.0
