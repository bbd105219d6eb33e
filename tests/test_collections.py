"""Collections on the command line: folders, --recursive, glob patterns, --from-list; skip counts; resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exifclip.cli import main
from exifclip.sources import collect_images, read_path_list


def _photo(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    image = np.full((96, 128, 3), 110, np.uint8) + rng.integers(0, 6, (96, 128, 3), dtype=np.uint8)
    image[24:72, 40:100] = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(path)


@pytest.fixture
def case(tmp_path):
    """case/a.png, case/b.JPG (a PNG named .JPG is still read), case/notes.txt, case/sub/c.png, case/.hidden.png"""
    root = tmp_path / "case"
    files = {
        "a": _photo(root / "a.png", 1),
        "b": _photo(root / "b.JPG", 2),
        "c": _photo(root / "sub" / "c.png", 3),
    }
    (root / "notes.txt").write_text("not a photo")
    (root / "sub" / "thumbs.db").write_bytes(b"\0" * 10)
    _photo(root / ".hidden.png", 4)
    return root, files


def test_folders_are_searched_in_order_and_other_files_counted(case):
    root, files = case
    flat = collect_images([root])
    assert flat.paths == [files["a"], files["b"]]
    assert [Path(p).name for p in flat.skipped] == ["notes.txt"]
    deep = collect_images([root], recursive=True)
    assert deep.paths == [files["a"], files["b"], files["c"]]
    assert sorted(Path(p).name for p in deep.skipped) == ["notes.txt", "thumbs.db"]


def test_patterns_lists_and_duplicates(case, tmp_path):
    root, files = case
    assert collect_images([str(root / "**" / "*.png")]).paths == [files["a"], files["c"]]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the case\n{files['c']}\n\ncase/a.png\n")
    assert read_path_list(listing) == [files["c"], str(tmp_path / "case" / "a.png")]
    table = tmp_path / "photos.csv"
    table.write_text(f"label,path\n1,{files['b']}\n0,case/sub/c.png\n")
    assert read_path_list(table) == [files["b"], str(tmp_path / "case" / "sub" / "c.png")]
    both = collect_images([files["a"], root], lists=[listing])
    assert both.paths == [files["a"], files["b"], files["c"]], "each file once, where it is first named"


def test_mistakes_in_what_to_process_are_named(case, tmp_path):
    root, _ = case
    with pytest.raises(ValueError, match=r"nothing\*\.jpg: no file matches"):
        collect_images([str(root / "nothing*.jpg")])
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.jpg,1\n")
    with pytest.raises(ValueError, match="bad.csv: a CSV list of images needs a 'path' column"):
        read_path_list(bad)
    with pytest.raises(ValueError, match="absent.txt: cannot read"):
        read_path_list(tmp_path / "absent.txt")


def _localize(inputs, out, model_dir, *extra):
    return main(["localize", *inputs, "--out", str(out), "--model", str(model_dir), "--device", "cpu",
                 "--stride", "8", "--outputs", "none", *extra])


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_localize_a_folder_recursively_counts_skips_and_resumes(case, tiny_model_dir, tmp_path, capsys):
    root, files = case
    out = tmp_path / "out"
    assert _localize([str(root)], out, tiny_model_dir, "--recursive") == 0
    err = capsys.readouterr().err
    assert "3 localized, 0 skipped (already done), 0 failed" in err
    assert "2 files in folders skipped: not images" in err
    assert [r["file"] for r in _records(out)] == [files["a"], files["b"], files["c"]]
    first = {r["file"]: r["score"] for r in _records(out)}
    # a new photo in the folder: only it is computed on resume
    files["d"] = _photo(root / "sub" / "d.png", 5)
    assert _localize([str(root)], out, tiny_model_dir, "-r", "--resume") == 0
    assert "1 localized, 3 skipped (already done)" in capsys.readouterr().err
    again = {r["file"]: r["score"] for r in _records(out)}
    assert {k: again[k] for k in first} == first and files["d"] in again


def test_localize_from_a_csv_list_and_a_pattern(case, tiny_model_dir, tmp_path, capsys):
    root, files = case
    table = tmp_path / "todo.csv"
    table.write_text(f"path,case\n{files['c']},1\ncase/missing.png,1\n")
    out = tmp_path / "out"
    status = _localize([str(root / "*.png")], out, tiny_model_dir, "--from-list", str(table))
    assert status == 1, "a listed file that is missing fails by name; the others are done"
    err = capsys.readouterr().err
    assert "missing.png" in err and "2 localized, 0 skipped (already done), 1 failed" in err
    assert [r["status"] for r in _records(out)] == ["ok", "ok", "failed"]


def test_no_input_or_an_empty_pattern_stops_before_any_work(case, tiny_model_dir, tmp_path, capsys):
    root, _ = case
    assert _localize([], tmp_path / "out", tiny_model_dir) == 2
    assert "no input" in capsys.readouterr().err
    assert _localize([str(root / "*.tif")], tmp_path / "out2", tiny_model_dir) == 2
    assert "*.tif: no file matches this pattern" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_embed_a_folder_and_resume(case, tiny_model_dir, tmp_path, capsys):
    root, files = case
    out = tmp_path / "emb.npz"
    argv = ["embed", str(root), "-r", "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
            "--stride", "16"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["embedded"], summary["not_images"]) == (3, 2)
    with np.load(out) as data:
        assert list(data["files"]) == [files["a"], files["b"], files["c"]]
    assert main([*argv, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 0
