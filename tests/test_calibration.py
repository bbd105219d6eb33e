"""Score calibration: a detection score read as a false-alarm rate, and the "nothing found" outcome."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exifclip import SpliceLocalizer
from exifclip.splice.calibration import CALIBRATION_FILE, ScoreCalibration


@pytest.fixture
def calibration():
    return ScoreCalibration(np.random.default_rng(0).normal(0.5, 0.05, 400), {"mode": "exact", "num_per_dim": 30})


def test_false_alarm_rate_counts_authentic_scores_at_or_above(calibration):
    scores = calibration.authentic_scores
    assert calibration.false_alarm_rate(scores.max() + 1) == pytest.approx(1 / 401)
    assert calibration.false_alarm_rate(scores.min() - 1) == 1.0
    assert calibration.false_alarm_rate(scores[-10]) == pytest.approx(11 / 401)
    rates = [calibration.false_alarm_rate(s) for s in np.linspace(0.3, 0.7, 50)]
    assert rates == sorted(rates, reverse=True)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.5])
def test_threshold_is_the_lowest_flagged_score(calibration, rate):
    t = calibration.threshold(rate)
    assert calibration.false_alarm_rate(t) <= rate
    assert calibration.false_alarm_rate(np.nextafter(t, -np.inf)) > rate


def test_rates_below_what_the_sample_supports_flag_nothing(calibration):
    assert calibration.threshold(0.001) == float("inf")  # 1 / 401 is the smallest rate 400 photos support
    with pytest.raises(ValueError, match="alarm_rate"):
        calibration.threshold(0)


def test_save_load_and_bad_files(calibration, tmp_path):
    calibration.save(tmp_path)
    loaded = ScoreCalibration.load(tmp_path)
    np.testing.assert_allclose(loaded.authentic_scores, calibration.authentic_scores, atol=1e-8)
    assert loaded.settings == calibration.settings
    assert ScoreCalibration.load(tmp_path / "nowhere") is None
    (tmp_path / CALIBRATION_FILE).write_text('{"authentic_scores": [1, 2]}')
    with pytest.raises(ValueError, match="score_calibration.json: not a valid score calibration"):
        ScoreCalibration.load(tmp_path)


def test_applies_only_to_the_settings_it_was_made_with(calibration):
    assert calibration.applies_to({"mode": "exact", "num_per_dim": 30, "stride": None})
    assert not calibration.applies_to({"mode": "fast", "num_per_dim": 30})
    assert not calibration.applies_to({"mode": "exact", "num_per_dim": 60})


def test_localizer_flags_by_the_models_calibration(tiny_model_dir, tmp_path, rng):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    plain = SpliceLocalizer(model=str(model), device="cpu", stride=8).fit()
    scores = plain.decision_function(images)
    assert plain.score_calibration_ is None and plain.localize(images[:1])[0].flagged is None
    # Authentic scores around the first image's: it is at the top of them, the others in the middle.
    ScoreCalibration(np.r_[np.full(30, scores.min() - 1), np.full(30, scores[0])],
                     {"mode": "exact", "num_per_dim": 30, "stride": 8, "patch_size": 32}).save(model)
    loc = SpliceLocalizer(model=str(model), device="cpu", stride=8, alarm_rate=0.6).fit()
    results = loc.localize(images)
    assert [r.false_alarm_rate for r in results] == [loc.score_calibration_.false_alarm_rate(s) for s in scores]
    assert [r.flagged for r in results] == [r.false_alarm_rate <= 0.6 for r in results]
    assert results[0].false_alarm_rate == pytest.approx(31 / 61)
    other = SpliceLocalizer(model=str(model), device="cpu", stride=8, mode="fast").fit()
    assert other.score_calibration_ is None, "a calibration made in exact mode says nothing of fast mode"


def test_a_model_holds_one_calibration_per_mode(tiny_model_dir, tmp_path, rng):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    settings = {"num_per_dim": 30, "stride": 8, "patch_size": 32, "score_method": "mean"}
    ScoreCalibration(np.linspace(0, 1, 50), dict(settings, mode="exact")).save(model)
    ScoreCalibration(np.linspace(0, 2, 40), dict(settings, mode="fast")).save(model)
    ScoreCalibration(np.linspace(0, 3, 30), dict(settings, mode="fast")).save(model)  # replaces the first fast one
    assert [(c.settings["mode"], c.n) for c in ScoreCalibration.load_all(model)] == [("exact", 50), ("fast", 30)]
    for mode, n in (("exact", 50), ("fast", 30)):
        loc = SpliceLocalizer(model=str(model), device="cpu", stride=8, mode=mode).fit()
        assert loc.score_calibration_.n == n and loc.score_calibration_.settings["mode"] == mode
        result = loc.localize([rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)])[0]
        assert result.false_alarm_rate == loc.score_calibration_.false_alarm_rate(result.score)


def test_a_single_calibration_is_written_as_older_versions_read_it(calibration, tmp_path):
    calibration.save(tmp_path)
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert set(data) == {"authentic_scores", "settings", "description"}


def test_auto_score_method_is_the_one_the_calibration_was_made_with(tiny_model_dir, tmp_path, rng):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    kwargs = dict(model=str(model), device="cpu", stride=8)
    assert SpliceLocalizer(**kwargs).fit().score_method_ == "mean", "no calibration: the paper's score"
    p95 = SpliceLocalizer(score_method="heatmap_p95", **kwargs).fit().decision_function(images)
    ScoreCalibration(np.linspace(0, 1, 50), {"mode": "exact", "num_per_dim": 30, "stride": 8, "patch_size": 32,
                                             "score_method": "heatmap_p95"}).save(model)
    auto = SpliceLocalizer(**kwargs).fit()
    assert auto.score_method_ == "heatmap_p95" and auto.score_calibration_ is not None
    np.testing.assert_array_equal(auto.decision_function(images), p95)
    explicit = SpliceLocalizer(score_method="mean", **kwargs).fit()
    assert explicit.score_method_ == "mean"
    assert explicit.score_calibration_ is None, "a calibration of one score says nothing of another"
    assert explicit.localize(images[:1])[0].flagged is None


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_the_packaged_model_is_calibrated_for_its_defaults(mode):
    loc = SpliceLocalizer(device="cpu", mode=mode).fit()
    assert loc.score_calibration_ is not None and loc.score_calibration_.n >= 100
    assert loc.score_calibration_.settings["mode"] == mode, "the packaged model is distilled for both modes"
    image = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    result = loc.localize([image])[0]
    assert 0 < result.false_alarm_rate <= 1 and isinstance(result.flagged, bool)


def test_cli_record_says_whether_the_photo_is_flagged(tmp_path):
    from PIL import Image

    from exifclip.cli import main

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 260, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    assert main(["localize", str(path), "--out", str(out), "--device", "cpu", "--outputs", "none"]) == 0
    record = json.loads((out / "photo.json").read_text())
    assert 0 < record["false_alarm_rate"] <= 1 and isinstance(record["flagged"], bool)
    assert record["verdict"].startswith("flagged" if record["flagged"] else "nothing found at a 5% false-alarm rate")
    assert main(["localize", str(path), "--out", str(tmp_path / "fast"), "--device", "cpu", "--fast",
                 "--outputs", "none"]) == 0
    fast = json.loads((tmp_path / "fast" / "photo.json").read_text())
    assert 0 < fast["false_alarm_rate"] <= 1, "the packaged model is calibrated in fast mode too"
    assert main(["localize", str(path), "--out", str(tmp_path / "mean"), "--device", "cpu", "--score-method", "mean",
                 "--outputs", "none"]) == 0
    mean = json.loads((tmp_path / "mean" / "photo.json").read_text())
    assert mean["flagged"] is None and mean["verdict"].startswith("no calibration")
