"""The Ray Data engine (``exifclip[ray]``): the same results as the local engine, resumable on the CLI.

A local Ray instance with ``num_cpus=2`` serves the whole module.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

from exifclip.cli import main  # noqa: E402
from exifclip.embedder import ExifPatchEmbedder  # noqa: E402
from exifclip.ray import embed_dataset, image_key, localize_dataset  # noqa: E402
from exifclip.splice import SpliceLocalizer  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(5):
        image = np.full((80, 96, 3), 90, np.uint8) + rng.integers(0, 10, (80, 96, 3), dtype=np.uint8)
        image[10:50, 20:70] = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        paths.append(str(folder / f"p{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def test_ray_and_local_engines_give_identical_scores_and_masks(local_ray, tiny_model_dir, photos, tmp_path):
    missing = str(tmp_path / "in" / "gone.png")
    params = dict(model=str(tiny_model_dir), device="cpu", stride=8, batch_size=64)
    local = SpliceLocalizer(**params, errors="skip").fit().localize([*photos, missing])
    ds = local_ray.data.from_items([{"path": p} for p in [*photos, missing]])
    rows = localize_dataset(ds, output=str(tmp_path / "pics"), num_workers=2, images_per_batch=2, **params)
    df = rows.to_pandas().set_index("source")
    assert len(df) == 6
    assert df.loc[missing, "status"] == "failed" and "gone.png" in df.loc[missing, "error"]
    for path, result in zip(photos, local):
        row = df.loc[path]
        assert row.status == "ok" and not isinstance(row.error, str)
        assert row.score == result.score  # bit for bit: fixed CPU chunks, whatever shares the batch
        assert row.score_mean == result.scores["mean"]
        assert (row.grid_rows, row.grid_cols) == (result.grid.n_rows, result.grid.n_cols)
        mask = np.asarray(Image.open(row.mask_path)) > 0
        np.testing.assert_array_equal(mask, result.mask)
        assert row.mask_path.endswith(f"{image_key(path, None)}_mask.png")


def test_bytes_rows_and_a_separate_decode_stage_match_the_local_engine(local_ray, tiny_model_dir, photos, tmp_path):
    params = dict(model=str(tiny_model_dir), device="cpu", stride=8, batch_size=64)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not a png at all")
    want = ExifPatchEmbedder(**params).fit().transform(photos)
    ds = local_ray.data.read_binary_files([*photos, str(broken)], include_paths=True)
    df = embed_dataset(ds, images_per_batch=3, **params).to_pandas()
    got = {s.lstrip("/"): (st, np.asarray(e, np.float32)) for s, st, e in zip(df.source, df.status, df.embedding)}
    for path, row in zip(photos, want):
        np.testing.assert_array_equal(got[path.lstrip("/")][1], row)
    assert got[str(broken).lstrip("/")][0] == "failed"
    local = SpliceLocalizer(**params).fit().decision_function(photos)
    for decode_on_cpu in (False, True):
        scores = localize_dataset(ds, decode_on_cpu=decode_on_cpu, images_per_batch=2, **params).to_pandas()
        by_source = {s.lstrip("/"): (st, e, sc) for s, st, e, sc in
                     zip(scores.source, scores.status, scores.error, scores.score)}
        np.testing.assert_array_equal([by_source[p.lstrip("/")][2] for p in photos], local)
        status, error, _ = by_source[str(broken).lstrip("/")]
        assert status == "failed" and "broken.png" in error, (decode_on_cpu, error)


def test_a_dataset_without_images_is_refused_naming_its_columns(local_ray):
    with pytest.raises(ValueError, match="'path' or a 'bytes' column, has \\['file'\\]"):
        localize_dataset(local_ray.data.from_items([{"file": "a.jpg"}]))


def _argv(inputs, out, model_dir, *extra):
    return ["localize", *inputs, "--out", str(out), "--model", str(model_dir), "--device", "cpu", "--stride", "8",
            "--engine", "ray", "--images-per-batch", "2", "--outputs", "mask", *extra]


def test_cli_ray_engine_resumes_after_a_killed_run(local_ray, tiny_model_dir, photos, tmp_path, capsys, monkeypatch):
    import exifclip.cli._ray_engine as engine

    reference = tmp_path / "reference"
    assert main(_argv(photos, reference, tiny_model_dir)) == 0
    assert "5 localized, 0 skipped (already done), 0 failed" in capsys.readouterr().err
    want = pq.read_table(reference / "results.parquet").to_pandas()
    assert list(want.source) == photos and (want.status == "ok").all()

    real = engine._write_shards

    class Killed:
        """The rows of the first shard, then the run dies."""

        def __init__(self, rows):
            self.rows = rows

        def iter_batches(self, **kwargs):
            for k, batch in enumerate(self.rows.iter_batches(**kwargs)):
                if k == 1:
                    raise KeyboardInterrupt
                yield batch

    monkeypatch.setattr(engine, "_write_shards", lambda rows, *a: real(Killed(rows), *a))
    out = tmp_path / "out"
    assert main(_argv(photos, out, tiny_model_dir)) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(list((out / "ray-results").glob("part-*.parquet"))) == 1
    monkeypatch.setattr(engine, "_write_shards", real)
    assert main(_argv(photos, out, tiny_model_dir, "--resume")) == 0
    assert "3 localized, 2 skipped (already done), 0 failed" in capsys.readouterr().err
    got = pq.read_table(out / "results.parquet").to_pandas()
    assert list(got.source) == photos
    np.testing.assert_array_equal(got.score, want.score)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == photos


def test_cli_ray_engine_without_ray_says_how_to_install(tiny_model_dir, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(_argv(photos, tmp_path / "out", tiny_model_dir)) == 2
    assert "exifclip[ray]" in capsys.readouterr().err


def test_cli_ray_engine_draws_the_local_engines_pictures(local_ray, tiny_model_dir, photos, tmp_path):
    """Heatmap and overlay reduced by --max-side and turned upright, mask as stored: pixel for pixel."""
    turned = tmp_path / "in" / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was held on its side
    Image.open(photos[0]).convert("RGB").save(turned, exif=exif, quality=95)
    inputs = [photos[1], str(turned)]
    extra = ["--outputs", "heatmap,mask,overlay", "--max-side", "40"]
    local, distributed = tmp_path / "local", tmp_path / "ray"
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--stride", "8", *extra]
    assert main(["localize", *inputs, "--out", str(local), *common]) == 0
    assert main(["localize", *inputs, "--out", str(distributed), *common, "--engine", "ray"]) == 0
    want = [json.loads(line) for line in (local / "results.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in (distributed / "results.jsonl").read_text().splitlines()]
    assert [r["file"] for r in got] == inputs
    for w, g in zip(want, got):
        for kind in ("heatmap", "mask", "overlay"):
            a, b = np.asarray(Image.open(w[kind])), np.asarray(Image.open(g[f"{kind}_path"]))
            np.testing.assert_array_equal(a, b, err_msg=f"{g['source']} {kind}")
    assert np.asarray(Image.open(got[1]["heatmap_path"])).shape[:2] == (32, 27)  # 80 x 96 reduced 3x (27 x 32), turned
