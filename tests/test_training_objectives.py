"""Training objectives for small, clustered data: multi-positive targets, the patch-to-patch term,
camera-balanced and hard-negative batches, tag dropout and shuffling, sharpening.

Each option is off by default (the default run is tested in test_training.py, and must not change);
here each is checked on a hand-made case, then in a two-step run on tiny generated photos.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import numpy as np
import piexif
import pytest
import torch
from PIL import Image

from exifclip.modeling.loss import (
    TARGET_MODES,
    ClipLoss,
    concat_labels,
    contrastive_targets,
    global_clip_loss,
    info_nce,
)
from exifclip.training import GlobalBatchSampler, TrainingConfig, train
from exifclip.training.augment import AugmentConfig, augment_patch, augmentation_phrases, process_patch
from exifclip.training.config import TARGET_MODES as CONFIG_TARGET_MODES
from exifclip.training.data import ExifPatchDataset
from exifclip.training.microbatch import collate_samples
from exifclip.training.sampling import CameraBatches
from exifclip.training.text import camera_key, exif_items, text_labels, transform_text

from .conftest import make_tiny_model

# -- photos: three cameras, each with two settings ----------------------------------------------

MODELS = [(b"Canon", b"Canon EOS 5D"), (b"NIKON CORPORATION", b"NIKON D3200"), (b"SONY", b"DSC-RX100")]


def write_varied_photos(directory, n=12, size=(72, 88), seed=0):
    """``n`` JPEGs cycling through three cameras; within a camera, ISO alternates between two values."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        camera, setting = i % 3, (i // 3) % 2
        make, model = MODELS[camera]
        exif = piexif.dump({
            "0th": {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: model},
            "Exif": {piexif.ExifIFD.ExposureTime: (1, 100 * (camera + 1)), piexif.ExifIFD.FNumber: (28, 10),
                     piexif.ExifIFD.ISOSpeedRatings: (100, 1600)[setting], piexif.ExifIFD.MeteringMode: 5,
                     piexif.ExifIFD.FocalLength: (50, 1), piexif.ExifIFD.Flash: 16},
        })
        base = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(base).resize(size[::-1], Image.BILINEAR), dtype=np.float32)
        pixels = np.clip(pixels + rng.normal(0, 4.0 * (camera + 1), pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"photo{i:03d}.jpg", exif=exif, quality=95)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("varied")
    write_varied_photos(d, 12)
    return d


_MODEL = {}


def tiny():
    """A fresh copy of one tiny model without dropout (runs are compared with each other)."""
    if "m" not in _MODEL:
        from .conftest import TINY

        _MODEL["m"] = make_tiny_model(0, text_config={**TINY["text_config"], "dropout": 0.0,
                                                      "attention_dropout": 0.0})
    return copy.deepcopy(_MODEL["m"])


def _config(photos, **kw):
    values = dict(images=str(photos), min_tags=5, steps=2, batch_size=8, lr=1e-3, device="cpu", progress=False,
                  seed=0)
    return TrainingConfig(**{**values, **kw})


# -- the loss, by hand --------------------------------------------------------------------------

L3 = math.log(math.exp(2) + 2)  # log-sum-exp of a row (2, 0, 0)


def _eye_problem():
    e = torch.eye(3, dtype=torch.float64)
    return e, e.clone(), torch.tensor(2.0, dtype=torch.float64)


def test_multi_positive_targets_by_hand():
    img, txt, scale = _eye_problem()  # logits 2 * I
    assert float(global_clip_loss(img, txt, scale)) == pytest.approx(L3 - 2)
    # Rows 0 and 1 share a camera: each row's target is (1/2, 1/2, 0), so rows 0 and 1 lose L - 1 each,
    # row 2 loses L - 2; the same in the other direction.
    labels = torch.tensor([[7, 1, 2], [7, 1, 3], [8, 4, -1]])
    same_camera = global_clip_loss(img, txt, scale, labels=labels, targets="same_camera")
    assert float(same_camera) == pytest.approx(L3 - 4 / 3)
    # The same set of items, in another order, is the same text; rows 0 and 1 differ in one item.
    texts = ["Make: A, ISO Speed Ratings: 100", "ISO Speed Ratings: 100, Make: A", "Make: A, ISO Speed Ratings: 800"]
    same_text = global_clip_loss(img, txt, scale, labels=torch.from_numpy(text_labels(texts)), targets="same_text")
    assert float(same_text) == pytest.approx(L3 - 4 / 3)
    # Soft targets, temperature 1: weights exp(J - 1), Jaccard J(0, 1) = 1/3, J(., 2) = 0.
    # A row's loss is L - 2 t_ii (its only non-zero logit is its own).
    t00 = 1 / (1 + math.exp(-2 / 3) + math.exp(-1))
    t22 = 1 / (1 + 2 * math.exp(-1))
    soft = global_clip_loss(img, txt, scale, labels=labels, targets="text_similarity", temperature=1.0)
    assert float(soft) == pytest.approx(L3 - 2 / 3 * (2 * t00 + t22))
    # A lower temperature moves the soft targets towards the one-hot ones.
    cold = global_clip_loss(img, txt, scale, labels=labels, targets="text_similarity", temperature=0.01)
    assert float(cold) == pytest.approx(L3 - 2, abs=1e-6)


def test_patch_to_patch_term_by_hand():
    img, txt, scale = _eye_problem()
    patches = img[[1, 0, 2]]  # the second patches of photos 0 and 1 are swapped
    # Rows 0 and 1 of the patch logits put their 2 on the wrong column (loss L); row 2 is right (L - 2).
    total = global_clip_loss(img, txt, scale, patch_embeds=patches, patch_weight=0.5)
    assert float(total) == pytest.approx((L3 - 2) + 0.5 * (L3 - 2 / 3))
    assert float(global_clip_loss(img, txt, scale, patch_embeds=patches)) == pytest.approx(L3 - 2)  # weight 0
    # Padding rows (photos that failed) are left out of both terms and of the targets.
    pad = torch.full((1, 3), 0.7, dtype=torch.float64)
    valid = torch.tensor([True, True, False, True])
    labels = torch.tensor([[7, 1], [7, 2], [7, 3], [8, 4]])
    padded = global_clip_loss(torch.cat([img[:2], pad, img[2:]]), torch.cat([txt[:2], pad, txt[2:]]), scale, valid,
                              labels=labels, targets="same_camera",
                              patch_embeds=torch.cat([patches[:2], pad, patches[2:]]), patch_weight=0.5)
    direct = global_clip_loss(img, txt, scale, labels=labels[[0, 1, 3]], targets="same_camera",
                              patch_embeds=patches, patch_weight=0.5)
    torch.testing.assert_close(padded, direct)
    # Same camera: rows 0 and 1 are positives of each other in both terms, targets (1/2, 1/2, 0): the
    # swapped patches lose L - 1 each, as the texts do.
    assert float(direct) == pytest.approx(1.5 * (L3 - 4 / 3))


def test_loss_options_are_checked():
    img, txt, scale = _eye_problem()
    with pytest.raises(ValueError, match="labels"):
        ClipLoss(targets="same_camera")(img, txt, scale)
    with pytest.raises(ValueError, match="patch_embeds"):
        ClipLoss(patch_weight=1.0)(img, txt, scale)
    with pytest.raises(ValueError, match="targets"):
        ClipLoss(targets="soft")
    assert CONFIG_TARGET_MODES == TARGET_MODES  # the config repeats them so as not to import torch
    assert "targets='same_camera'" in repr(ClipLoss(targets="same_camera"))
    # Soft targets: every row a distribution with the most weight on itself.
    w = contrastive_targets(torch.tensor([[1, 5, 6, 7], [1, 5, 6, 8], [2, 9, -1, -1]]), "text_similarity", 0.2)
    rows = w / w.sum(1, keepdim=True)
    assert torch.allclose(rows.sum(1), torch.ones(3)) and (rows.argmax(1) == torch.arange(3)).all()
    assert info_nce(2 * torch.eye(3), torch.eye(3)).item() == pytest.approx(info_nce(2 * torch.eye(3)).item())
    assert concat_labels([torch.tensor([[1]]), torch.tensor([[2, 3]])]).tolist() == [[1, -1], [2, 3]]


def test_gradients_flow_through_both_terms():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1).requires_grad_()
    txt = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1).requires_grad_()
    patch = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1).requires_grad_()
    labels = torch.tensor([[1, 1], [1, 2], [2, 3], [2, 3], [3, 4]])
    loss = ClipLoss(targets="text_similarity", patch_weight=0.5)(img, txt, torch.tensor(5.0), labels=labels,
                                                                  patch_embeds=patch)
    loss.backward()
    assert all(x.grad is not None and float(x.grad.abs().sum()) > 0 for x in (img, txt, patch))


# -- the text -----------------------------------------------------------------------------------

def test_exif_items_split_where_a_tag_starts():
    text = "Make: Canon, Flash: Flash did not fire, compulsory flash mode, ISO Speed Ratings: 100"
    assert exif_items(text) == ["Make: Canon", "Flash: Flash did not fire, compulsory flash mode",
                                "ISO Speed Ratings: 100"]
    assert ", ".join(exif_items(text)) == text
    assert exif_items("no tag here") == ["no tag here"]
    assert camera_key("Make: A, Model: B, ISO Speed Ratings: 1") == camera_key("Model: B, Make: A, Flash: On")
    assert camera_key("Make: A, Model: B") != camera_key("Make: A, Model: C")
    assert camera_key("Make: A, Model: B") != camera_key("Make: A, Model: B, Processing: JPEG 70")
    assert camera_key("Software: x, Flash: y") == camera_key("Flash: y, Software: x")  # no camera: the text


def test_tag_dropout_and_shuffling():
    text = ", ".join(f"Tag{k}: v{k}" for k in range(20)) + ", Processing: Blur 1.0"
    items = exif_items(text)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert transform_text(text, rng) == text and rng.bit_generator.state == state  # off: nothing drawn
    kept = [exif_items(transform_text(text, np.random.default_rng(s), tag_dropout=0.5)) for s in range(200)]
    assert all("Processing: Blur 1.0" in k for k in kept)  # what was done to the pixels stays said
    assert all(k == [i for i in items if i in k] for k in kept)  # order kept without shuffling
    assert 0.4 < np.mean([len(k) - 1 for k in kept]) / 20 < 0.6
    assert transform_text("A: 1, B: 2", np.random.default_rng(0), tag_dropout=0.99).count(":") == 1  # one kept
    shuffled = [transform_text(text, np.random.default_rng(s), shuffle=True) for s in range(20)]
    assert all(sorted(exif_items(t)) == sorted(items) for t in shuffled) and len(set(shuffled)) == 20
    assert transform_text(text, np.random.default_rng(3), 0.3, True) == transform_text(
        text, np.random.default_rng(3), 0.3, True)


def test_dataset_text_options_are_deterministic_and_leave_the_patches_alone(photos):
    plain = ExifPatchDataset(photos, patch_size=32, min_tags=5, seed=3)
    ds = plain.with_settings(tag_dropout=0.4, shuffle_tags=True)
    for i in range(len(ds)):
        a, b = ds.sample(i, epoch=2), ds.sample(i, epoch=2)
        assert a.text == b.text and np.array_equal(a.patch, plain.sample(i, epoch=2).patch)
        assert a.label_text == plain.records[i].text and set(exif_items(a.text)) <= set(exif_items(a.label_text))
    assert [ds.sample(i, 0).text for i in range(12)] != [ds.sample(i, 1).text for i in range(12)]
    assert [ds.sample(i, 0).text for i in range(12)] != [ds.with_settings(seed=4).sample(i, 0).text
                                                         for i in range(12)]
    with pytest.raises(ValueError, match="tag_dropout"):
        plain.with_settings(tag_dropout=1.0)


def test_patch_pairs_are_two_places_of_one_photo_processed_alike(photos):
    plain = ExifPatchDataset(photos, patch_size=32, min_tags=5)
    pairs = plain.with_settings(patch_pairs=True)
    s = pairs.sample(4, epoch=1)
    assert s.patch2.shape == (32, 32, 3) and not np.array_equal(s.patch, s.patch2)
    assert np.array_equal(s.patch, plain.sample(4, epoch=1).patch)  # the first patch is the unpaired one
    assert plain.sample(4).patch2 is None
    aug = pairs.with_settings(augment={"p": 1.0, "ops": ["gamma"], "gamma": (0.5, 2.0)})
    image = aug.image(0)
    for i in range(len(aug)):
        s = aug.sample(i)
        value = float(s.text.rsplit(" ", 1)[1])
        # Both patches went through the same gamma: each is a crop of the processed photo.
        processed = np.clip(np.rint(255.0 * (aug.image(i) / 255.0) ** value), 0, 255).astype(np.uint8)
        for patch in (s.patch, s.patch2):
            windows = np.lib.stride_tricks.sliding_window_view(processed, (32, 32, 3))
            assert (windows == patch).all(axis=(-3, -2, -1)).any(), (i, value)
    del image
    batch = collate_samples([aug.sample(i) for i in range(3)], labels=True)
    assert batch["patches2"].shape == (3, 32, 32, 3) and batch["labels"].shape[0] == 3
    assert collate_samples([plain.sample(0)])["patches2"] is None


def test_process_patch_repeats_an_operation_elsewhere():
    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for op in ("jpeg", "resample", "blur", "noise", "gamma", "sharpen"):
        cfg = AugmentConfig(p=1.0, ops=[op])
        patch, suffix, how = process_patch(img, 32, np.random.default_rng(0), cfg)
        again = process_patch(img, 32, np.random.default_rng(5), cfg, *how)
        assert again[1] == suffix and again[2] == how, op
        assert np.array_equal(augment_patch(img, 32, np.random.default_rng(0), cfg)[0], patch), op


def test_sharpening_adds_detail_and_says_so():
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((96, 96)))
    cfg = AugmentConfig(p=1.0, ops=["sharpen"], sharpen_amount=(2.0, 2.0))
    patch, suffix = augment_patch(smooth, 48, np.random.default_rng(1), cfg)
    assert suffix == ", Processing: Sharpen 2.0"

    def detail(a):
        return float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean())

    assert detail(patch) > 1.3 * detail(smooth)
    assert AugmentConfig().ops == ("jpeg", "resample", "blur", "noise", "gamma")  # not drawn unless asked for
    assert not any("Sharpen" in p for p in augmentation_phrases(AugmentConfig()))
    assert "Processing: Sharpen 1.5" in augmentation_phrases(cfg)


# -- batches by camera --------------------------------------------------------------------------

def test_camera_balanced_batches_draw_cameras_first():
    cams = ["a"] * 6 + ["b"] * 2 + ["c"]
    sampler = CameraBatches(cams, batch_size=6, seed=0)
    for step in range(20):
        batch = sampler(step)
        assert len(set(batch)) == 6  # distinct photos
        # Rounds: a, b, c once each, then a and b, then a.
        assert Counter(cams[i] for i in batch) == {"a": 3, "b": 2, "c": 1}
    small = CameraBatches(cams, batch_size=3, seed=0)
    assert all(Counter(cams[i] for i in small(s)) == {"a": 1, "b": 1, "c": 1} for s in range(20))
    assert len({i for s in range(30) for i in small(s)}) == 9  # every photo of "a" comes round
    assert small(7) == CameraBatches(cams, batch_size=3, seed=0)(7) != small(8)
    assert small(7) != CameraBatches(cams, batch_size=3, seed=1)(7) or small(8) != CameraBatches(
        cams, batch_size=3, seed=1)(8)
    with pytest.raises(ValueError, match="batch_size"):
        CameraBatches(cams, batch_size=10)


def test_hard_negative_batches_hold_a_camera_with_other_settings():
    cams = ["a"] * 6 + ["b"] * 6 + ["c"] * 6
    texts = [f"{c}: ISO {k % 3}" for c, k in zip(cams, range(18))]
    sampler = CameraBatches(cams, texts, batch_size=4, seed=0, per_camera=2)
    for step in range(30):
        batch = sampler(step)
        by_camera = Counter(cams[i] for i in batch)
        assert sorted(by_camera.values()) == [2, 2]  # two cameras, two photos each
        for camera in by_camera:
            assert len({texts[i] for i in batch if cams[i] == camera}) == 2  # other settings, not the same


def test_global_sampler_with_camera_batches_splits_ranks_and_resumes():
    cams = [i % 4 for i in range(16)]
    batches = CameraBatches(cams, batch_size=8, seed=2, per_camera=2)
    one = GlobalBatchSampler(16, 8, steps=5, seed=2, accum_steps=2, batches=batches)
    seq = list(one)
    assert one.global_batch(3) == [(3, i) for i in batches(3)]  # keys carry the step: a fresh patch each time
    ranks = [list(GlobalBatchSampler(16, 8, 5, seed=2, world_size=2, rank=r, batches=batches)) for r in range(2)]
    for s in range(5):
        assert ranks[0][s] + ranks[1][s] == seq[2 * s] + seq[2 * s + 1]
    assert list(GlobalBatchSampler(16, 8, 5, seed=2, accum_steps=2, start_step=2, batches=batches)) == seq[4:]


# -- runs ---------------------------------------------------------------------------------------

OPTIONS = {
    "same_text": dict(targets="same_text"),
    "same_camera": dict(targets="same_camera"),
    "text_similarity": dict(targets="text_similarity", target_temperature=0.2),
    "patch_pairs": dict(patch_pairs=True, patch_loss_weight=0.5),
    "camera_balanced": dict(batch_sampling="camera_balanced"),
    "hard_negatives": dict(batch_sampling="hard_negatives", photos_per_camera=2),
    "tag_dropout": dict(tag_dropout=0.3),
    "shuffle_tags": dict(shuffle_tags=True),
    "sharpen": dict(augment={"p": 1.0, "ops": ["sharpen"]}),
}


@pytest.fixture(scope="module")
def baseline(photos):
    return train(_config(photos), model=tiny())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_two_steps_with_each_option(photos, baseline, tmp_path, name):
    result = train(_config(photos, out_dir=str(tmp_path / name), **OPTIONS[name]), model=tiny())
    assert result.step == 2 and all(math.isfinite(x) for x in result.losses)
    # The same model, photos and seed: each option changes the first step's loss (8 photos of 6 texts:
    # a batch holds photos with the same text), except same_text: identical texts get identical
    # embeddings here (no dropout, no tag dropout or shuffling), and then merging their columns changes
    # neither the loss nor its gradients (test below).
    if name == "same_text":
        assert result.losses[0] == pytest.approx(baseline.losses[0], abs=1e-5)
    else:
        assert result.losses[0] != pytest.approx(baseline.losses[0], abs=1e-6), name
    saved = TrainingConfig.from_json(tmp_path / name / "training_config.json")
    assert {k: getattr(saved, k) for k in OPTIONS[name] if k != "augment"} == {
        k: v for k, v in OPTIONS[name].items() if k != "augment"}


def test_targets_matter_only_where_the_batch_holds_positives(photos):
    # Hard-negative batches hold two photos of each camera with other ISO values: same_text finds no
    # positive off the diagonal (the diagonal loss, exactly), same_camera does.
    common = dict(batch_sampling="hard_negatives", photos_per_camera=2, steps=1, batch_size=6)
    runs = {t: train(_config(photos, targets=t, **common), model=tiny()).losses[0] for t in
            ("diagonal", "same_text", "same_camera")}
    assert runs["same_text"] == pytest.approx(runs["diagonal"], abs=1e-6)
    assert runs["same_camera"] != pytest.approx(runs["diagonal"], abs=1e-3)
    # Photos with the same text, written in other tag orders: same_text keeps them positives.
    shuffled = dict(batch_size=8, steps=1, shuffle_tags=True)
    runs = {t: train(_config(photos, targets=t, **shuffled), model=tiny()).losses[0] for t in
            ("diagonal", "same_text")}
    assert runs["same_text"] != pytest.approx(runs["diagonal"], abs=1e-4)


def test_all_options_together_resume_exactly(photos, tmp_path):
    options = dict(targets="text_similarity", patch_pairs=True, batch_sampling="hard_negatives",
                   photos_per_camera=2, tag_dropout=0.2, shuffle_tags=True, accum_steps=2,
                   augment={"p": 0.5, "ops": ["jpeg", "sharpen"]}, steps=4, batch_size=4)
    full = train(_config(photos, out_dir=str(tmp_path / "full"), **options), model=tiny())

    def interrupt(model, step):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(photos, out_dir=str(tmp_path / "cut"), eval_every=1, **options), model=tiny(),
              eval_hook=interrupt)
    resumed = train(_config(photos, out_dir=str(tmp_path / "cut"), resume=True, **options))
    assert resumed.resumed_from == 2 and resumed.losses == full.losses  # bitwise, on CPU


def test_config_checks_the_options():
    base = dict(images="x", arch="small")
    for bad, match in [(dict(targets="soft"), "targets"), (dict(target_temperature=0.0), "target_temperature"),
                       (dict(patch_loss_weight=-1.0), "patch_loss_weight"),
                       (dict(batch_sampling="balanced"), "batch_sampling"),
                       (dict(photos_per_camera=0), "photos_per_camera"), (dict(tag_dropout=1.0), "tag_dropout")]:
        with pytest.raises(ValueError, match=match):
            TrainingConfig(**base, **bad).validate()
    cfg = TrainingConfig(**base)
    assert (cfg.targets, cfg.patch_pairs, cfg.batch_sampling, cfg.tag_dropout, cfg.shuffle_tags) == (
        "diagonal", False, "random", 0.0, False)


def test_the_options_are_train_flags():
    import argparse

    from exifclip.cli.train import add_config_flags

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--targets", "same_camera", "--patch-pairs", "--patch-loss-weight", "0.5",
                              "--batch-sampling", "hard_negatives", "--photos-per-camera", "3",
                              "--tag-dropout", "0.2", "--shuffle-tags", "--target-temperature", "0.05"])
    assert (args.targets, args.patch_pairs, args.patch_loss_weight, args.batch_sampling, args.photos_per_camera,
            args.tag_dropout, args.shuffle_tags, args.target_temperature) == (
        "same_camera", True, 0.5, "hard_negatives", 3, 0.2, True, 0.05)
