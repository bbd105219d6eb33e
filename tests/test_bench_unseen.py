"""The unseen-camera benchmark's folds, baseline and summary (benchmarks/bench_unseen_cameras.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

bench = pytest.importorskip("bench_unseen_cameras")
from baseline_splicebuster import splicebuster_localize, symbol_classes  # noqa: E402


def test_camera_keys_merge_spellings():
    key = bench.normalise_camera
    assert key("Canon", "Canon EOS 600D") == key("CANON INC.", "EOS 600D") == "canon|eos 600d"
    assert key("Canon", "Canon EOS REBEL T3i") == "canon|eos 600d"  # one camera, two regional names
    assert key("Panasonic ", "PV-SD4090") == key("Panasonic", "PV-SD4090")
    assert key("NIKON CORPORATION", "NIKON D90") == key("NIKON", "NIKON D90")
    assert key("Eastman Kodak Company", "X") == key("EASTMAN KODAK COMPANY", "X")
    assert key("SONY", "ILCE-6000") != key("SONY", "ILCE-6300")


def test_folds_are_disjoint_balanced_and_deterministic(shared_data):
    split = bench.make_split(shared_data, n_folds=5, seed=0)
    assert split == bench.make_split(shared_data, n_folds=5, seed=0)
    cameras = [c for f in split["folds"] for c in f["cameras"]]
    assert len(cameras) == len(set(cameras)) >= 100
    photos, excluded = bench.read_photos(shared_data)
    assert sum(f["n_photos"] for f in split["folds"]) == len(photos)
    sizes = [f["n_photos"] for f in split["folds"]]
    assert max(sizes) - min(sizes) <= 0.1 * np.mean(sizes)
    train, test = bench.fold_photos(split, 2, shared_data)
    assert not set(train) & set(test) and len(train) + len(test) == len(photos)
    camera_of = bench.file_cameras(shared_data)
    data = shared_data.resolve()
    test_cams = {camera_of[str(Path(f).relative_to(data))] for f in test}
    assert not test_cams & {camera_of[str(Path(f).relative_to(data))] for f in train}
    committed = bench.load_split()  # the JSON in the repository is this split
    assert [f["cameras"] for f in committed["folds"]] == [f["cameras"] for f in split["folds"]]


def test_symbol_classes_count():
    assert symbol_classes(1)[1] == 25 and symbol_classes(2)[1] == 169


def test_splicebuster_finds_a_noisier_region():
    rng = np.random.default_rng(0)
    h = w = 256
    base = np.tile(np.linspace(60, 190, w), (h, 1))
    mask = np.zeros((h, w), bool)
    mask[60:160, 100:220] = True
    img = base + np.where(mask, rng.normal(0, 4, (h, w)), rng.normal(0, 1.5, (h, w)))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)[..., None].repeat(3, 2)
    result = splicebuster_localize(img, model="gg")
    from exifclip.splice.metrics import pixel_map_score

    assert result.heatmap.shape == (h, w) and result.mask.shape == (h, w)
    assert pixel_map_score(result.heatmap, mask) > 0.8
    plain = np.clip(np.rint(base + rng.normal(0, 1.5, (h, w))), 0, 255).astype(np.uint8)[..., None].repeat(3, 2)
    assert splicebuster_localize(plain, model="gg").score < result.score
    assert splicebuster_localize(img, model="gu").heatmap.shape == (h, w)


def test_summary_matches_evaluate_localization():
    from exifclip import evaluate_localization

    rng = np.random.default_rng(1)
    results, masks, labels = [], [], []
    for i in range(12):
        heat = rng.random((16, 16)).astype(np.float32)
        label = i % 2
        mask = None
        if label:
            mask = np.zeros((16, 16), bool)
            mask[2:9, 3:11] = True
            heat[mask] += 0.3 * rng.random()
        results.append(heat)
        masks.append(mask)
        labels.append(label)
    scores = rng.random(12) + 0.2 * np.array(labels)
    report = evaluate_localization(results, masks, labels=labels, scores=scores)
    rows = []
    for r, m, y, s in zip(results, masks, labels, scores):
        row = evaluate_localization([r], [m], labels=[y], scores=[s]).per_image[0]
        rows.append({**row, "seconds": 0.0})
    summary = bench.summarise(rows, n_boot=50, seed=0)
    assert summary["pmap"]["value"] == pytest.approx(report.pmap, abs=1e-4)
    assert summary["f1"]["value"] == pytest.approx(report.f1, abs=1e-4)
    assert summary["detection_ap"]["value"] == pytest.approx(report.detection_ap, abs=1e-4)
    lo, hi = summary["pmap"]["ci95"]
    assert lo <= summary["pmap"]["value"] <= hi


def test_paired_differences_use_the_score_asked_for():
    from bench_test_time import paired_differences

    labels = [1, 1, 1, 0, 0, 0]
    # The run's "p95" ranks every splice above every authentic image, its "mean" does not; the reference
    # is the other way round, so the AP difference changes sign with the score.
    good, bad = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [0.1, 0.8, 0.2, 0.3, 0.9, 0.7]
    rows = [{"name": str(i), "label": y, "pmap": 0.8 if y else None, "scores": {"p95": g, "mean": b}}
            for i, (y, g, b) in enumerate(zip(labels, good, bad))]
    reference = [{"name": str(i), "label": y, "pmap": 0.6 if y else None, "scores": {"p95": b, "mean": g}}
                 for i, (y, g, b) in enumerate(zip(labels, good, bad))]
    p95 = paired_differences(rows, reference, n_boot=50, score_method="p95")
    mean = paired_differences(rows, reference, n_boot=50)
    assert p95["pmap"]["value"] == mean["pmap"]["value"] == pytest.approx(0.2)
    assert p95["detection_ap"]["value"] > 0 > mean["detection_ap"]["value"]
    with pytest.raises(ValueError, match="same images"):
        paired_differences(rows[::-1], reference)


def test_by_splice_side_pairs_each_image_with_its_mask(tmp_path):
    import json

    from PIL import Image

    compare = pytest.importorskip("compare_rows")
    results, masks = tmp_path / "results" / "b", tmp_path / "splices" / "b" / "fold0" / "masks"
    masks.mkdir(parents=True)
    for stem, side in (("0000", 100), ("0001", 450)):  # a small and a large square splice
        mask = np.zeros((512, 512), np.uint8)
        mask[:side, :side] = 255
        Image.fromarray(mask).save(masks / f"{stem}.png")
    for run, pmaps in (("A", [0.9, 0.5]), ("B", [0.6, 0.6])):
        rows = [{"name": f"spliced/{s}.png", "label": 1, "pmap": p} for s, p in zip(("0000", "0001"), pmaps)]
        rows.append({"name": "authentic/0000.png", "label": 0})
        (results / run).mkdir(parents=True)
        (results / run / "fold0-png.json").write_text(json.dumps(rows))
    bands = compare.by_splice_side(results / "A", results / "B", [0], ["png"], [300, 400], n_boot=50)
    assert [(lo, n) for lo, _, n, *_ in bands] == [(0, 1), (400, 1)]  # the empty 300-400 band is left out
    (_, _, _, a, b, d, ci), (*_, d2, _) = bands
    assert (a, b, d2) == (0.9, 0.6, pytest.approx(-0.1)) and d == pytest.approx(0.3)
    assert ci[0] == pytest.approx(0.3) and ci[1] == pytest.approx(0.3)


def test_fast_native_screen_labels_a_window_by_who_owns_most_of_it():
    from screen_fast_native import window_owner

    rect = (0, 0, 64, 64)  # the donor's rectangle pasted at the crop's corner
    assert window_owner((0, 0), None, host=3, donor=None, size=64) == 3  # no paste: the host's text
    assert window_owner((0, 0), rect, host=3, donor=7, size=64) == 7  # inside the rectangle
    assert window_owner((0, 32), rect, host=3, donor=7, size=64) == 7  # exactly half covered
    assert window_owner((0, 33), rect, host=3, donor=7, size=64) == 3  # less than half
    assert window_owner((64, 64), rect, host=3, donor=7, size=64) == 3  # outside
