"""Benchmark loaders on fake folder trees, and the synthetic splice benchmark."""

from __future__ import annotations

import csv
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from exifclip.splice.datasets import (DATASETS, DatasetWarning, Sample, load_casia1, load_columbia, load_dataset,
                               load_dso1, load_folder, load_in_the_wild, load_korus, load_synthetic)
from exifclip.io import load_image
from exifclip.splice.synthetic import MANIFEST_COLUMNS, SyntheticWarning, make_splices, random_region

H, W = 12, 16


def save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def rgb(rng, h=H, w=W):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def region(h=H, w=W):
    m = np.zeros((h, w), bool)
    m[2:7, 3:11] = True
    return m


def gray(mask: np.ndarray, on=255, off=0) -> np.ndarray:
    return np.where(mask, on, off).astype(np.uint8)


def connected(mask: np.ndarray) -> bool:
    start = tuple(np.argwhere(mask)[0])
    seen = np.zeros_like(mask)
    seen[start] = True
    queue = deque([start])
    while queue:
        y, x = queue.popleft()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            v, u = y + dy, x + dx
            if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u] and not seen[v, u]:
                seen[v, u] = True
                queue.append((v, u))
    return bool(seen.sum() == mask.sum())


# -- loaders on fake trees -----------------------------------------------------------------


def test_columbia_green_edgemask_survives_jpeg(tmp_path, rng):
    root = tmp_path / "columbia"
    h, w = 48, 64
    truth = np.zeros((h, w), bool)
    truth[:, 24:] = True
    edge = np.zeros((h, w, 3), np.uint8)
    edge[~truth] = (255, 0, 0)        # bright red: the other camera
    edge[truth] = (0, 255, 0)         # bright green: the spliced region
    edge[:, 24:26] = (0, 200, 0)      # regular green along the boundary
    edge[:, 22:24] = (200, 0, 0)      # regular red
    save(root / "4cam_splc" / "canong3_nikond70_sub_01.tif", rgb(rng, h, w))
    save(root / "4cam_splc" / "edgemask" / "canong3_nikond70_sub_01_edgemask.jpg", edge, quality=75)
    save(root / "4cam_splc" / "canong3_kodakdcs330_sub_02.tif", rgb(rng, h, w))  # edgemask missing
    save(root / "4cam_auth" / "canong3_02_sub_01.tif", rgb(rng, h, w))
    with pytest.warns(DatasetWarning, match="canong3_kodakdcs330_sub_02.tif: no edgemask found"):
        samples = list(load_columbia(root))
    assert [(s.name, s.label) for s in samples] == [("4cam_splc/canong3_nikond70_sub_01.tif", 1),
                                                    ("4cam_auth/canong3_02_sub_01.tif", 0)]
    assert isinstance(samples[0], Sample) and samples[0].mask.dtype == bool
    assert (samples[0].mask != truth).mean() < 0.02   # JPEG noise at the red/green edge at most
    assert samples[1].mask is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(list(load_columbia(root, spliced_only=True))) == 1


def test_dso1_masks_are_inverted(tmp_path, rng):
    root = tmp_path / "tifs-database"
    m = region()
    save(root / "DSO-1" / "splicing-01.png", rgb(rng))
    save(root / "DSO-1" / "normal-01.png", rgb(rng))
    save(root / "DSO-1-Fake-Images-Masks" / "splicing-01.png", np.repeat(gray(m, 0, 255)[..., None], 3, 2))
    samples = list(load_dso1(root))
    assert [(s.name, s.label) for s in samples] == [("DSO-1/splicing-01.png", 1), ("DSO-1/normal-01.png", 0)]
    np.testing.assert_array_equal(samples[0].mask, m)   # black = spliced


def test_korus_reads_every_camera_and_grey_levels(tmp_path, rng):
    root = tmp_path / "realistic-tampering"
    m = region()
    gt = gray(m)
    gt[8:10, 2:4] = 128                                 # the grey level counts as tampered
    for cam in ("Canon_60D", "Nikon_D90"):
        save(root / cam / "tampered-realistic" / "r0001.TIF", rgb(rng))
        save(root / cam / "pristine" / "r0002.TIF", rgb(rng))
        save(root / cam / "ground-truth" / "r0001.PNG", gt)
    samples = list(load_korus(root))
    assert [(s.name, s.label) for s in samples] == [
        ("Canon_60D/tampered-realistic/r0001.TIF", 1), ("Nikon_D90/tampered-realistic/r0001.TIF", 1),
        ("Canon_60D/pristine/r0002.TIF", 0), ("Nikon_D90/pristine/r0002.TIF", 0)]
    assert samples[0].mask.sum() == m.sum() + 4
    with pytest.raises(FileNotFoundError, match="no camera folder"):
        load_korus(tmp_path)


def test_in_the_wild_skips_unreadable_mask_by_name(tmp_path, rng):
    root = tmp_path / "label_in_wild"
    save(root / "images" / "a.jpg", rgb(rng))
    save(root / "images" / "b.jpg", rgb(rng))
    save(root / "masks" / "a.png", gray(region()))
    (root / "masks" / "b.png").write_bytes(b"not a png")
    with pytest.warns(DatasetWarning, match=r"b\.png: unreadable mask"):
        samples = list(load_in_the_wild(root))
    assert [(s.name, s.label) for s in samples] == [("images/a.jpg", 1)]
    np.testing.assert_array_equal(samples[0].mask, region())


def test_casia1_with_external_masks(tmp_path, rng):
    root, gt_root = tmp_path / "CASIA1", tmp_path / "casia1groundtruth"
    stem = "Sp_D_CND_A_pla0005_pla0023_0281"
    save(root / "Tp" / "Sp" / f"{stem}.jpg", rgb(rng))
    save(root / "Tp" / "CM" / "Sp_S_CND_A_pla0016_pla0016_0196.jpg", rgb(rng))
    save(root / "Au" / "Au_ani_0001.jpg", rgb(rng))
    save(gt_root / "CASIA 1.0 groundtruth" / "Sp" / f"{stem}_gt.png", gray(region()))
    samples = list(load_casia1(root, gt_root))
    assert [(s.name, s.label) for s in samples] == [(f"Tp/Sp/{stem}.jpg", 1), ("Au/Au_ani_0001.jpg", 0)]
    np.testing.assert_array_equal(samples[0].mask, region())
    with pytest.raises(FileNotFoundError, match="ground truth not found"):
        load_casia1(root, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="subset"):
        load_casia1(root, gt_root, subset="XX")


def test_folder_layout_and_resized_mask(tmp_path, rng):
    root = tmp_path / "bench"
    save(root / "images" / "spliced.png", rgb(rng))
    save(root / "images" / "clean.jpg", rgb(rng))
    save(root / "images" / "empty.png", rgb(rng))
    save(root / "masks" / "spliced.png", gray(np.kron(region(), np.ones((2, 2), bool))))  # twice the size
    save(root / "masks" / "empty.png", gray(np.zeros((H, W), bool)))
    with pytest.warns(DatasetWarning, match="spliced.png: mask is 32x24 but spliced.png is 16x12; resized"):
        samples = {s.name: s for s in load_folder(root)}
    assert samples["images/spliced.png"].label == 1
    np.testing.assert_array_equal(samples["images/spliced.png"].mask, region())
    assert samples["images/clean.jpg"].label == 0 and samples["images/clean.jpg"].mask is None
    assert samples["images/empty.png"].label == 0 and not samples["images/empty.png"].mask.any()


def test_loaders_check_the_layout_eagerly_and_iterate_lazily(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        load_dso1(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="4cam_splc"):
        load_columbia(tmp_path)
    root = tmp_path / "bench"
    save(root / "images" / "a.png", rgb(rng))
    it = load_folder(root)
    save(root / "images" / "b.png", rgb(rng))            # listed when iteration starts
    assert [s.name for s in it] == ["images/a.png", "images/b.png"]


def test_load_dataset_registry_and_aliases(tmp_path, rng):
    root = tmp_path / "tifs-database"
    save(root / "DSO-1" / "normal-01.png", rgb(rng))
    assert [s.label for s in load_dataset("DSO-1", root)] == [0]
    assert set(DATASETS) == {"columbia", "dso1", "korus", "in_the_wild", "casia1", "folder", "synthetic"}
    assert load_dataset.__module__ == "exifclip.splice.datasets"
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: casia1, columbia"):
        load_dataset("nope", root)


# -- the synthetic benchmark ------------------------------------------------------------------


def test_random_region_is_smooth_connected_and_in_range():
    rng = np.random.default_rng(0)
    for h, w in [(64, 64), (48, 128), (128, 40)]:
        for _ in range(15):
            m = random_region(h, w, rng, 0.05, 0.35)
            assert 0.05 <= m.mean() <= 0.35
            assert connected(m)
            assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())  # fully inside
    with pytest.raises(ValueError, match="min_area"):
        random_region(32, 32, rng, 0.5, 0.2)


@pytest.fixture
def photos(tmp_path):
    """Six small JPEGs from two fake camera models (EXIF via piexif), a corrupt file, one without EXIF."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    sizes = [(160, 208), (176, 144), (192, 192)]
    for cam, (make, model) in enumerate([(b"Canon", b"Canon PowerShot A1"), (b"NIKON", b"E995")]):
        for i, (h, w) in enumerate(sizes):
            exif = piexif.dump({"0th": {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: model}})
            base = np.linspace(0, 200, w)[None, :, None] + 40 * cam
            arr = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"cam{cam}_{i}.jpg", quality=90, exif=exif)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(folder / "noexif.jpg")
    return folder


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_make_splices_layout_manifest_and_pixels(photos, tmp_path):
    out = tmp_path / "bench"
    with pytest.warns(SyntheticWarning) as record:
        rows = make_splices(photos, out, n=5, seed=3, jpeg_quality=90, n_authentic=3, max_size=128)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.jpg: cannot read" in messages and "noexif.jpg: no camera model" in messages
    manifest = read_manifest(out / "manifest.csv")
    assert list(manifest[0]) == list(MANIFEST_COLUMNS)
    assert len(manifest) == len(rows) == (5 + 3) * 2
    assert {r["variant"] for r in manifest} == {"png", "jpeg90"}
    for sub in ("spliced", "masks", "authentic", "spliced_jpeg90", "authentic_jpeg90"):
        assert (out / sub).is_dir()
    spliced = [r for r in manifest if r["label"] == "1" and r["variant"] == "png"]
    assert len(spliced) == 5
    for r in spliced:
        assert r["host_model"] != r["donor_model"]
        y, x, h, w = (int(r[k]) for k in ("crop_y", "crop_x", "height", "width"))
        assert h <= 128 and w <= 128 and y % 16 == 0 and x % 16 == 0
        mask = np.asarray(Image.open(out / r["mask"])) > 127
        assert 0.05 <= mask.mean() <= 0.35 and float(r["area_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
        assert connected(mask)
        image = load_image(out / r["file"])
        host = load_image(photos / r["host_file"])[y:y + h, x:x + w]
        donor = load_image(photos / r["donor_file"])[y:y + h, x:x + w]
        np.testing.assert_array_equal(image[~mask], host[~mask])   # untouched outside
        np.testing.assert_array_equal(image[mask], donor[mask])    # the donor, same place, inside
        jpeg = load_image(out / r["file"].replace("spliced/", "spliced_jpeg90/").replace(".png", ".jpg"))
        assert jpeg.shape == image.shape
    authentic = [r for r in manifest if r["label"] == "0" and r["variant"] == "png"]
    for r in authentic:
        y, x, h, w = (int(r[k]) for k in ("crop_y", "crop_x", "height", "width"))
        np.testing.assert_array_equal(load_image(out / r["file"]),
                                      load_image(photos / r["host_file"])[y:y + h, x:x + w])
        assert r["mask"] == "" and r["donor_file"] == ""
    # the loader
    png = list(load_synthetic(out))
    assert [s.label for s in png] == [1] * 5 + [0] * 3
    assert all(s.mask.shape == load_image(s.image).shape[:2] for s in png if s.label)
    jpg = list(load_dataset("synthetic", out, variant="jpeg90"))
    assert all(s.name.endswith(".jpg") for s in jpg) and len(jpg) == 8
    with pytest.raises(ValueError, match="no variant 'jpeg75'"):
        load_synthetic(out, variant="jpeg75")


def test_make_splices_is_deterministic_and_guards_its_output(photos, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticWarning)
        make_splices(photos, tmp_path / "a", n=3, seed=7, max_size=96)
        make_splices(photos, tmp_path / "b", n=3, seed=7, max_size=96)
        make_splices(photos, tmp_path / "c", n=3, seed=8, max_size=96)
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
        for f in files:
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
        assert (tmp_path / "a" / "manifest.csv").read_bytes() != (tmp_path / "c" / "manifest.csv").read_bytes()
        with pytest.raises(FileExistsError, match="overwrite=True"):
            make_splices(photos, tmp_path / "a", n=1, seed=7, max_size=96)
        make_splices(photos, tmp_path / "a", n=1, seed=7, max_size=96, n_authentic=0, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "a" / "spliced").iterdir()) == ["0000.png"]
    assert not any((tmp_path / "a" / "authentic").iterdir())


def test_make_splices_needs_two_models(tmp_path):
    folder = tmp_path / "one-camera"
    folder.mkdir()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"X"}})
    for i in range(2):
        Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(folder / f"{i}.jpg", exif=exif)
    with pytest.raises(ValueError, match="at least two camera models"):
        make_splices(folder, tmp_path / "out", n=1)


@pytest.mark.shared
def test_make_splices_on_digicam(shared_data, tmp_path):
    digicam = shared_data / "digicam"
    if not digicam.is_dir():
        pytest.skip("../shared/data/digicam is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticWarning)  # a few digicam photos have no model
        rows = make_splices(digicam, tmp_path / "dev", n=4, seed=0, n_authentic=2, jpeg_quality=90, max_size=384)
    spliced = [r for r in rows if r["label"] == 1 and r["variant"] == "png"]
    assert len(spliced) == 4 and all(r["host_model"] != r["donor_model"] for r in spliced)
    samples = list(load_synthetic(tmp_path / "dev", variant="jpeg90"))
    assert [s.label for s in samples] == [1, 1, 1, 1, 0, 0]
    assert all(load_image(s.image).shape[:2] == s.mask.shape for s in samples if s.label)
