"""Columnar results: --format parquet|jsonl for localize and embed, read back without exifclip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exifclip.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")


def _photos(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = np.full((96, 128, 3), 100, np.uint8) + rng.integers(0, 8, (96, 128, 3), dtype=np.uint8)
        image[20:70, 30:90] = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
        paths.append(str(folder / f"p{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def _model_args(model_dir) -> list[str]:
    return ["--model", str(model_dir), "--device", "cpu", "--stride", "16"]


def test_localize_parquet_has_a_row_per_image_with_the_schema(tiny_model_dir, tmp_path, capsys):
    paths = _photos(tmp_path / "in", 3)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "out"
    status = main(["localize", str(tmp_path / "in"), "--out", str(out), "--format", "parquet", "--outputs", "mask",
                   *_model_args(tiny_model_dir)])
    assert status == 1  # the broken file failed, by name; the others were done
    assert "broken.png" in capsys.readouterr().err
    table = pq.read_table(out / "results.parquet")
    schema = table.schema
    for name, kind in [("file", pa.string()), ("status", pa.string()), ("error", pa.string()),
                       ("score", pa.float64()), ("score_mean", pa.float64()), ("score_heatmap_p95", pa.float64()),
                       ("score_heatmap_spread", pa.float64()), ("flagged", pa.bool_()),
                       ("mask_fraction", pa.float64()), ("grid_rows", pa.int32()), ("grid_cols", pa.int32()),
                       ("stride", pa.int32()), ("embed_s", pa.float64()), ("total_s", pa.float64()),
                       ("mask_path", pa.string()), ("overlay_path", pa.string())]:
        assert schema.field(name).type == kind, name
    assert json.loads(schema.metadata[b"exifclip.settings"])["stride"] == 16
    df = pd.read_parquet(out / "results.parquet")
    assert list(df.file) == [str(broken), *paths]
    assert list(df.status) == ["failed", "ok", "ok", "ok"]
    assert "broken.png" in df.error[0] and df.error[1:].isna().all()
    ok = df[df.status == "ok"]
    np.testing.assert_allclose(ok.score, ok.score_mean)  # the default score is the paper's mean
    assert ok.mask_fraction.between(0, 1).all() and (ok.grid_rows > 0).all()
    assert all(Path(p).is_file() for p in ok.mask_path) and ok.overlay_path.isna().all()
    # the same rows as results.jsonl
    jsonl = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["file"] for r in jsonl] == list(df.file)
    assert [r.get("score") for r in jsonl[1:]] == list(ok.score)


def _embed(paths_or_folder, out, model_dir, *extra) -> int:
    return main(["embed", *paths_or_folder, "--out", str(out), *_model_args(model_dir), "--save-every", "2", *extra])


def test_embed_parquet_shards_match_the_npz_and_resume(tiny_model_dir, tmp_path, capsys):
    paths = _photos(tmp_path / "in", 5)
    missing = str(tmp_path / "in" / "gone.png")
    reference = tmp_path / "ref.npz"
    assert _embed(paths, reference, tiny_model_dir, "--patches") == 0
    capsys.readouterr()
    out = tmp_path / "emb"
    assert _embed([*paths, missing], out, tiny_model_dir, "--patches", "--format", "parquet") == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["embedded"], summary["failed"]) == (5, 1)
    assert sorted(p.name for p in out.iterdir()) == [
        "_failures.jsonl", "_settings.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(out)  # the folder is one data set
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 16 and kind.value_type == pa.float32()
    df = table.to_pandas()
    with np.load(reference) as want:
        assert list(df.file) == list(want["files"]) == paths
        np.testing.assert_allclose(np.stack(df.embedding), want["embeddings"], atol=1e-6)
        for j in range(5):
            np.testing.assert_allclose(np.stack(df.patch_embeddings[j]), want[f"patches_{j}"], atol=1e-6)
            positions = np.stack([df.patch_y[j], df.patch_x[j]], axis=1)
            np.testing.assert_array_equal(positions, want[f"positions_{j}"])
            assert len(positions) == df.grid_rows[j] * df.grid_cols[j]
    failures = [json.loads(line) for line in (out / "_failures.jsonl").read_text().splitlines()]
    assert [f["file"] for f in failures] == [missing]
    # resume: nothing computed again, nothing duplicated
    assert _embed([*paths, missing], out, tiny_model_dir, "--patches", "--format", "parquet", "--resume") == 1
    assert json.loads(capsys.readouterr().out)["computed"] == 0
    assert pq.read_table(out).num_rows == 5
    # other settings without --resume start over
    assert _embed(paths[:2], out, tiny_model_dir, "--format", "parquet") == 0
    capsys.readouterr()
    assert pq.read_table(out).num_rows == 2 and "patch_embeddings" not in pq.read_table(out).column_names


def test_embed_jsonl_shards(tiny_model_dir, tmp_path, capsys):
    paths = _photos(tmp_path / "in", 3)
    out = tmp_path / "emb"
    assert _embed([str(tmp_path / "in")], out, tiny_model_dir, "--format", "jsonl") == 0
    capsys.readouterr()
    rows = [json.loads(line) for shard in sorted(out.glob("part-*.jsonl")) for line in shard.read_text().splitlines()]
    assert [r["file"] for r in rows] == paths
    assert all(len(r["embedding"]) == 16 for r in rows)


def test_parquet_without_pyarrow_stops_before_any_work(tiny_model_dir, tmp_path, capsys, monkeypatch):
    paths = _photos(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert _embed(paths, tmp_path / "emb", tiny_model_dir, "--format", "parquet") == 2
    assert "exifclip[parquet]" in capsys.readouterr().err
    assert main(["localize", *paths, "--out", str(tmp_path / "loc"), "--format", "parquet",
                 *_model_args(tiny_model_dir)]) == 2
    assert "exifclip[parquet]" in capsys.readouterr().err and not (tmp_path / "loc").exists()
