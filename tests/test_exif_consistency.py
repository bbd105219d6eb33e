"""ExifConsistencyScorer: the percentile of a photo's claimed EXIF among other cameras' EXIF."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from exifclip import ExifConsistencyScorer
from exifclip.exif_consistency import TAG_GROUPS, camera_of, group_text, load_exif_pool, pool_percentile

from .report_case import exif_bytes, photo, save_jpeg

POOL = [{"Make": m, "Model": f"{m} {k}", "Exposure Time": f"1/{60 * k}", "Software": f"v{k}"}
        for m in ("Acme", "Bolt", "Crux", "Dyne") for k in (1, 2)]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", stride=16, pool=POOL).fit()


def test_pool_percentile_counts_less_similar_entries_and_ties_half():
    image = np.array([1.0, 0.0])
    pool = np.array([[0.2, 0.98], [0.5, 0.87], [0.9, 0.44]])
    assert pool_percentile(image, np.array([0.6, 0.8]), pool) == pytest.approx(2 / 3)
    assert pool_percentile(image, np.array([0.5, 0.87]), pool) == pytest.approx(1.5 / 3)
    assert pool_percentile(image, np.array([1.0, 0.0]), pool) == 1.0
    assert np.isnan(pool_percentile(image, image, np.zeros((0, 2))))


def test_groups_keep_only_their_tags():
    exif = {"Make": "Acme", "Model": "One", "F-Number": "2.8", "Software": "v1", "Date/Time": "2024:01:01 00:00:00"}
    assert group_text(exif, "camera") == "Make: Acme, Model: One"
    assert group_text(exif, "exposure") == "F-Number: 2.8"
    assert "Date" not in group_text(exif, "all")
    assert set(TAG_GROUPS) == {"all", "camera", "exposure", "processing"}
    with pytest.raises(ValueError, match="unknown tag group 'lens'"):
        group_text(exif, "lens")
    assert camera_of({"Make": "ACME ", "Model": " One  X"}) == "acme|one x"


def test_transform_gives_a_percentile_per_group(scorer, tmp_path, rng):
    path = save_jpeg(tmp_path / "a.jpg", photo(rng), exif_bytes(make="Acme", model="Acme 1"))
    array = photo(rng)
    scores = scorer.transform([str(path), array])
    assert scores.shape == (2, 4)
    assert np.all((scores[0, [0, 1, 2, 3]] >= 0) & (scores[0] <= 1))
    assert np.isnan(scores[1]).all(), "an array carries no EXIF"
    # the entry of the claimed camera is left out: 7 others remain per group (ties count half)
    assert np.allclose(scores[0] * 14, np.round(scores[0] * 14))
    assert scorer.get_feature_names_out().tolist() == [f"exif_consistency_{g}" for g in scorer.groups]
    assert np.allclose(scorer.decision_function([str(path)]), 1 - scores[:1, 0])


def test_explicit_exif_and_its_length_is_checked(scorer, rng):
    image = photo(rng)
    own = {"Make": "Acme", "Model": "Acme 1", "Exposure Time": "1/60"}
    scores = scorer.transform([image], exif=[own])
    assert not np.isnan(scores[0, 0]) and np.isnan(scores[0, 3]), "no processing tags claimed"
    with pytest.raises(ValueError, match="exif: 2 EXIF dicts for 1 images"):
        scorer.transform([image], exif=[own, own])


def test_a_failed_image_is_nan_and_listed(scorer, tmp_path, rng):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="bad.jpg"):
        scores = scorer.transform([str(bad), photo(rng)], exif=[POOL[0], POOL[1]])
    assert np.isnan(scores[0]).all() and not np.isnan(scores[1, 0])
    assert [f.index for f in scorer.failures_] == [0]


def test_fit_on_photos_uses_their_exif(tiny_model_dir, tmp_path, rng):
    photos = [save_jpeg(tmp_path / f"{m}.jpg", photo(rng), exif_bytes(make=m, model=f"{m} X")) for m in "ABC"]
    fitted = ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", groups=["camera"]).fit(photos)
    assert sorted(fitted.pool_cameras_["camera"]) == ["a|a x", "b|b x", "c|c x"]


def test_bad_settings_and_pools_are_named(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="groups must be"):
        ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", groups=["lens"], pool=POOL).fit()
    with pytest.raises(ValueError, match="no entry with tags of the groups"):
        ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", pool=[{"Date/Time": "2024"}]).fit()
    partial = ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", stride=16,
                                    pool=[{"Make": "A", "Model": "B"}, {"Make": "C", "Model": "D"}]).fit()
    scores = partial.transform([photo(np.random.default_rng(0))], exif=[{"Make": "E", "Model": "F", "Software": "x"}])
    assert not np.isnan(scores[0, 1]) and np.isnan(scores[0, 3]), "no pool entry has processing tags"
    bad = tmp_path / "pool.json"
    bad.write_text(json.dumps({"pool": [{"Make": 3}]}))
    with pytest.raises(ValueError, match="pool.json: entry 0 is not an EXIF dict"):
        load_exif_pool(bad)
    with pytest.raises(ValueError, match="cannot read an EXIF pool"):
        load_exif_pool(tmp_path / "missing.json")


def test_packaged_pool_holds_no_dates_or_owner_tags():
    pool = load_exif_pool()
    tags = {t for entry in pool for t in entry}
    assert len(pool) > 100 and {"Make", "Model"} <= tags
    assert not {t for t in tags if "Date" in t or t in ("Artist", "Copyright", "Body Serial Number")}


def test_estimator_contract(scorer, tiny_model_dir, rng):
    unfitted = ExifConsistencyScorer(model=str(tiny_model_dir), device="cpu", pool=POOL)
    assert not [k for k in vars(unfitted) if k.endswith("_")]
    assert set(type(unfitted)._parameter_constraints) == set(unfitted.get_params())
    twin = clone(unfitted)
    assert twin.get_params() == unfitted.get_params()
    buf = io.BytesIO()
    joblib.dump(scorer, buf)
    restored = joblib.load(io.BytesIO(buf.getvalue()))
    image, own = photo(rng), [POOL[2]]
    assert np.allclose(restored.transform([image], exif=own), scorer.transform([image], exif=own), equal_nan=True)


def test_localize_records_the_consistency_in_json_and_parquet(tiny_model_dir, tmp_path, rng):
    from exifclip.cli import main

    path = save_jpeg(tmp_path / "a.jpg", photo(rng), exif_bytes(make="Acme", model="Acme 1"))
    bare = tmp_path / "bare.png"
    from PIL import Image

    Image.fromarray(photo(rng)).save(bare)
    out = tmp_path / "out"
    assert main(["localize", str(path), str(bare), "--out", str(out), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--stride", "16", "--exif-consistency"]) == 0
    record = json.loads((out / "a.json").read_text())
    assert set(record["exif_consistency"]) == set(TAG_GROUPS)
    assert all(v is None or 0 <= v <= 1 for v in record["exif_consistency"].values())
    assert record["exif_consistency"]["all"] is not None
    bare_record = json.loads((out / "bare.json").read_text())
    assert all(v is None for v in bare_record["exif_consistency"].values()), "no EXIF, no claim to check"
    pytest.importorskip("pyarrow")
    out2 = tmp_path / "out2"
    assert main(["localize", str(path), "--out", str(out2), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--stride", "16", "--exif-consistency", "--format", "parquet"]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out2 / "results.parquet").to_pylist()
    assert table[0]["exif_consistency_all"] == pytest.approx(record["exif_consistency"]["all"])
