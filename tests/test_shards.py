"""WebDataset shards: photos packed unchanged with their EXIF, streamed back as the directory path reads them."""

from __future__ import annotations

import json
import tarfile

import pytest

from exifclip.cli import main
from exifclip.shards import expand_urls, iter_shards, write_shards
from exifclip.training.data import ExifPatchDataset
from tests.test_training import write_photos


def test_shards_carry_the_bytes_and_the_text_the_directory_path_reads(tmp_path):
    paths = [str(p) for p in write_photos(tmp_path / "photos", 5)]
    summary = write_shards(paths, str(tmp_path / "shards" / "train-%04d.tar"), max_count=2)
    assert [p.rsplit("/", 1)[-1] for p in summary.shards] == ["train-0000.tar", "train-0001.tar", "train-0002.tar"]
    assert (summary.written, summary.failed) == (5, [])
    samples = list(iter_shards(str(tmp_path / "shards" / "train-{0000..0002}.tar")))
    assert [s.file for s in samples] == paths
    for sample, path in zip(samples, paths):
        with open(path, "rb") as f:
            assert sample.image == f.read(), "packed as they were: never re-encoded"
        assert sample.extension == "jpg" and sample.exif["Make"]
    assert [s.text for s in samples] == ExifPatchDataset(paths, patch_size=32, min_tags=5).texts
    with tarfile.open(summary.shards[0]) as tar:
        assert tar.getnames() == ["000000000.jpg", "000000000.json", "000000000.txt",
                                  "000000001.jpg", "000000001.json", "000000001.txt"]
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_the_same_photos_give_the_same_shard_bytes(tmp_path):
    paths = [str(p) for p in write_photos(tmp_path / "photos", 3)]
    a = write_shards(paths, str(tmp_path / "a-%d.tar")).shards[0]
    b = write_shards(paths, str(tmp_path / "b-%d.tar")).shards[0]
    assert open(a, "rb").read() == open(b, "rb").read()


def test_pipe_urls_and_bad_shards(tmp_path):
    paths = [str(p) for p in write_photos(tmp_path / "photos", 2)]
    shard = write_shards(paths, str(tmp_path / "s-%d.tar")).shards[0]
    assert [s.key for s in iter_shards(f"pipe:cat {shard}")] == ["000000000", "000000001"]
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(ValueError, match="junk.tar: not a readable tar shard"):
        list(iter_shards(str(junk)))
    assert expand_urls(["x-{8..10}.tar", "y.tar"]) == ["x-8.tar", "x-9.tar", "x-10.tar", "y.tar"]
    with pytest.raises(ValueError, match="integer field"):
        write_shards(paths, str(tmp_path / "no-field.tar"))


def test_webdataset_reads_the_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    paths = [str(p) for p in write_photos(tmp_path / "photos", 3)]
    shard = write_shards(paths, str(tmp_path / "s-%d.tar")).shards[0]
    samples = list(wds.WebDataset(shard, shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["000000000", "000000001", "000000002"]
    assert [json.loads(s["json"])["file"] for s in samples] == paths


def test_shard_command_packs_a_folder_and_names_what_failed(tmp_path, capsys):
    paths = [str(p) for p in write_photos(tmp_path / "photos", 3)]
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "photos" / "notes.txt").write_text("x")
    status = main(["shard", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--max-count", "2"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["photos"], summary["not_images"]) == (3, 1)
    assert [s.file for s in iter_shards(summary["shards"])] == paths
    assert status == 1 and summary["failed"] == 1 and "broken.jpg" in captured.err
