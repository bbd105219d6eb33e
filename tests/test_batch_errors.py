"""Batch work loses nothing: ``errors=`` on every many-images method, atomic
outputs, and CLI runs that survive Ctrl-C and SIGKILL and resume to the same
results."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exifclip._atomic import atomic_write, is_part_file, remove_stale_parts
from exifclip.batch import BatchErrors, BatchFailure, BatchItemError, BatchItemWarning, check_errors
from exifclip.cli._resume import assign_stems
from exifclip.cli import main
from exifclip.embedder import ExifPatchEmbedder
from exifclip.io import ImageLoadError
from exifclip.splice import SpliceLocalizer

REPO = Path(__file__).resolve().parents[1]


# -- the shared mechanism ------------------------------------------------------------
def test_check_errors_names_the_modes():
    assert [check_errors(m) for m in ("raise", "skip", "warn")] == ["raise", "skip", "warn"]
    for bad in ("ignore", None, 1):
        with pytest.raises(ValueError, match=r"errors must be one of \('raise', 'skip', 'warn'\)"):
            check_errors(bad)


def test_batch_errors_modes():
    cause = ImageLoadError("shots/a.jpg: file is empty (0 bytes)")
    with pytest.raises(BatchItemError, match=r"^image 3 \(shots/a.jpg\): file is empty \(0 bytes\)$") as info:
        BatchErrors("raise").fail(3, "shots/a.jpg", cause)
    assert info.value.__cause__ is cause and info.value.failure == (3, "shots/a.jpg", "file is empty (0 bytes)")
    assert isinstance(info.value, ImageLoadError) and isinstance(info.value, ValueError)

    quiet = BatchErrors("skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.fail(5, np.zeros((2, 2), np.uint8), ValueError("too small"))
        quiet.fail(1, "b.png", OSError("disk error"))
    assert quiet.failures == [(1, "b.png", "disk error"), (5, "<array shape=(2, 2) dtype=uint8>", "too small")]
    assert quiet.failed == {1, 5}

    loud = BatchErrors("warn")
    with pytest.warns(BatchItemWarning, match=r"skipped image 0 \(c.png\): broken"):
        loud.fail(0, "c.png", ValueError("broken"))
    held = BatchErrors("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held.fail(2, "d.png", ValueError("x"), defer=True)
        assert caught == [], "deferred until flush"
        held.flush()
        held.flush()  # once only
    assert len(caught) == 1 and held.failures == [BatchFailure(2, "d.png", "x")]


# -- every estimator method over many images -----------------------------------------
def _methods(model_dir):
    """(name, build(errors), call(est, X), is_failed(output, i))."""

    def embedder(errors):
        return ExifPatchEmbedder(model=str(model_dir), device="cpu", batch_size=64, errors=errors).fit()

    def localizer(errors):
        return SpliceLocalizer(model=str(model_dir), device="cpu", batch_size=64, stride=8, errors=errors).fit()

    return [
        ("transform", embedder, lambda e, X: e.transform(X), lambda out, i: np.isnan(out[i]).all()),
        ("transform_patches", embedder, lambda e, X: e.transform_patches(X), lambda out, i: out[i] is None),
        ("localize", localizer, lambda e, X: e.localize(X), lambda out, i: out[i] is None),
        ("predict", localizer, lambda e, X: e.predict(X), lambda out, i: out[i] is None),
        ("decision_function", localizer, lambda e, X: e.decision_function(X), lambda out, i: np.isnan(out[i])),
    ]


@pytest.mark.parametrize("method", ["transform", "transform_patches", "localize", "predict", "decision_function"])
def test_every_method_keeps_alignment_and_reports_failures(method, tiny_model_dir, random_images, tmp_path):
    name, build, call, is_failed = next(m for m in _methods(tiny_model_dir) if m[0] == method)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really")
    X = [random_images[0], str(corrupt), random_images[1], np.zeros((8, 8, 3), np.uint8), random_images[2]]

    est = build("warn")
    with pytest.warns(BatchItemWarning) as record:
        out = call(est, X)
    assert len(out) == len(X)
    assert [is_failed(out, i) for i in range(len(X))] == [False, True, False, True, False]
    assert [(f.index, f.source) for f in est.failures_] == [
        (1, str(corrupt)),
        (3, "<array shape=(8, 8, 3) dtype=uint8>"),
    ]
    assert len(record) == 2 and str(corrupt) in str(record[0].message)

    # the good images' results do not depend on the bad ones being there
    clean = call(est, [X[0], X[2], X[4]])
    assert est.failures_ == []
    for got, want in zip([out[0], out[2], out[4]], clean):
        got = got.heatmap if hasattr(got, "heatmap") else got
        want = want.heatmap if hasattr(want, "heatmap") else want
        got = got.embeddings if hasattr(got, "embeddings") else got
        want = want.embeddings if hasattr(want, "embeddings") else want
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), atol=1e-5)

    skipping = build("skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchItemWarning)
        call(skipping, X)
    assert [f.index for f in skipping.failures_] == [1, 3]

    with pytest.raises(BatchItemError, match=r"image 1 \(.*corrupt.jpg\)") as info:
        call(build("raise"), X)
    assert info.value.failure.index == 1


def test_default_is_warn_and_bad_mode_fails_at_fit(tiny_model_dir):
    for est in (ExifPatchEmbedder(model=str(tiny_model_dir)), SpliceLocalizer(model=str(tiny_model_dir))):
        assert est.errors == "warn"
        with pytest.raises(ValueError, match="'errors' parameter"):
            est.set_params(errors="ignore").fit()


def test_fine_tune_reports_unreadable_photos(tiny_model_dir, tmp_path):
    gone = str(tmp_path / "gone.jpg")
    est = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", fine_tune=True, errors="raise")
    with pytest.raises(BatchItemError, match=r"image 0 \(.*gone.jpg\): file not found"):
        est.fit([gone])
    with pytest.raises(BatchItemError, match=r"image 0 \(<array.*\): an array carries no EXIF"):
        est.fit([np.zeros((40, 40, 3), np.uint8), gone])
    est.set_params(errors="skip")
    with pytest.raises(ValueError, match="at least 2 usable photos"):
        est.fit([np.zeros((40, 40, 3), np.uint8), gone])
    assert [(f.index, f.reason) for f in est.failures_] == [
        (0, "an array carries no EXIF to fine-tune on; pass the photo's path"),
        (1, "file not found"),
    ]


# -- atomic files --------------------------------------------------------------------
def test_atomic_write_leaves_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as f:
        f.write("half of the new")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_sigkill_mid_write_leaves_only_a_recognisable_part(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import sys
        from exifclip._atomic import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write(b"new but unfinished")
            f.flush()
            print("writing", flush=True)
            sys.stdin.read()  # wait to be killed
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout.readline().strip() == b"writing"
    proc.kill()
    proc.wait()
    parts = [p for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert target.read_bytes() == b"old"
    assert len(parts) == 1 and is_part_file(parts[0]) and parts[0].name.startswith(".out.bin.")
    proc.stdin.close()
    proc.stdout.close()
    # a live process's temporary file is not touched; a dead one's is removed
    live = tmp_path / f".other.png.{os.getppid()}.abcdefgh.part"
    live.write_bytes(b"")
    assert remove_stale_parts(tmp_path) == parts
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.bin"])


def test_stems_are_stable_across_runs(tmp_path):
    a, b = str(tmp_path / "x" / "photo.png"), str(tmp_path / "y" / "photo.png")
    assert assign_stems([a, b], tmp_path) == ["photo", "photo_2"]
    (tmp_path / "photo.json").write_text(json.dumps({"abspath": a}))
    (tmp_path / "photo_2.json").write_text(json.dumps({"abspath": b}))
    assert assign_stems([b, a], tmp_path) == ["photo_2", "photo"], "each file keeps its results"
    c = str(tmp_path / "z" / "photo.png")
    assert assign_stems([c], tmp_path) == ["photo_3"], "nobody's results are overwritten"


# -- the command line: interrupted runs resume to the same results ---------------------
def _make_photos(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = np.full((96, 128, 3), 110, np.uint8) + rng.integers(0, 6, (96, 128, 3), dtype=np.uint8)
        image[24:72, 40:100] = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


# Runs the CLI with os.replace blocked when it would publish the file named TARGET:
# the run is then stopped mid-write, deterministically, wherever the test chooses.
_BLOCKING_CLI = """
import os, signal, sys, threading
# A shell that starts the test suite in the background ignores SIGINT, and children
# inherit that; a user's Ctrl-C in a terminal is what this run stands for.
signal.signal(signal.SIGINT, signal.default_int_handler)
target, flag = sys.argv[1], sys.argv[2]
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    if os.path.basename(os.fspath(dst)) == target:
        with open(flag + ".tmp", "w") as f:
            f.write(os.fspath(src))
        real_replace(flag + ".tmp", flag)
        threading.Event().wait()  # until a signal ends it
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
from exifclip.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run_until_blocked(tmp_path: Path, target: str, argv: list[str]) -> subprocess.Popen:
    script = tmp_path / "blocking_cli.py"
    script.write_text(_BLOCKING_CLI)
    flag = tmp_path / "blocked.flag"
    proc = subprocess.Popen(
        [sys.executable, str(script), target, str(flag), *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 300  # a safety net, not a timing check
    while not flag.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before reaching {target}: {proc.returncode}\n{out.decode()}\n{err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {target}")
        time.sleep(0.05)
    return proc


def _visible_outputs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if not p.name.startswith(".")}


def _comparable(record: dict) -> dict:
    """A localize record without what differs between identical runs: timings, the output folder."""
    record = dict(record)
    record.pop("timings")
    for key in ("heatmap", "mask", "overlay"):
        record[key] = Path(record[key]).name
    return record


def _localize_argv(paths, out, model_dir):
    return ["localize", *paths, "--out", str(out), "--model", str(model_dir), "--device", "cpu", "--stride", "8"]


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_killed_localize_resumes_to_the_same_results(how, tiny_model_dir, tmp_path, capsys):
    paths = _make_photos(tmp_path / "in", 5)
    reference = tmp_path / "reference"
    assert main(_localize_argv(paths, reference, tiny_model_dir)) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    # stopped while publishing img2's mask: img0 and img1 done, img2 half done
    proc = _run_until_blocked(tmp_path, "img2_mask.png", _localize_argv(paths, out, tiny_model_dir))
    proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a blocked run behind
            proc.kill()
            proc.communicate()
    err = err.decode()

    visible = _visible_outputs(out)
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert {n for n in visible if n.endswith(".json")} == {"img0.json", "img1.json"}
    for name, path in visible.items():  # whatever is visible is whole
        if name.endswith(".png"):
            with Image.open(path) as picture:
                picture.load()
        elif name.endswith(".json"):
            json.loads(path.read_text())
    if how == "sigint":
        assert proc.returncode == 130
        assert "interrupted" in err and "--resume" in err and "Traceback" not in err
        assert hidden == [], "Ctrl-C removes its temporary file"
        lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert [(r["file"], r["status"]) for r in lines] == [
            (p, "ok" if i < 2 else "not done") for i, p in enumerate(paths)
        ], "a record for every image given"
    else:
        assert proc.returncode == -signal.SIGKILL
        assert len(hidden) == 1 and is_part_file(hidden[0]) and hidden[0].startswith(".img2_mask.png.")

    assert main([*_localize_argv(paths, out, tiny_model_dir), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "3 localized, 2 skipped (already done), 0 failed" in captured.err
    assert [json.loads(line)["file"] for line in captured.out.splitlines()] == paths[2:]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "stale temporaries are cleaned"

    want, got = _visible_outputs(reference), _visible_outputs(out)
    assert sorted(got) == sorted(want)
    for name in want:
        if name.endswith(".png"):
            assert got[name].read_bytes() == want[name].read_bytes(), name
        elif name.endswith(".json"):
            assert _comparable(json.loads(got[name].read_text())) == _comparable(json.loads(want[name].read_text()))
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [_comparable(r) for r in lines] == [
        _comparable(json.loads(line)) for line in (reference / "results.jsonl").read_text().splitlines()
    ]


def test_localize_resume_skips_done_retries_failed_and_redoes_changed_settings(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    paths = _make_photos(tmp_path / "in", 2)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    argv = _localize_argv([paths[0], str(bad), paths[1]], out, tiny_model_dir)
    assert main(argv) == 1
    assert "1 failed" in capsys.readouterr().err
    assert not (out / "bad.json").exists()

    Image.open(paths[0]).save(bad, format="PNG")  # repaired
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "1 localized, 2 skipped (already done), 0 failed" in captured.err
    assert [json.loads(line)["file"] for line in captured.out.splitlines()] == [str(bad)]
    assert len((out / "results.jsonl").read_text().splitlines()) == 3

    changed = [*argv[:-1], "4", "--resume"]  # another stride: nothing done before counts
    assert main(changed) == 0
    assert "3 localized, 0 skipped" in capsys.readouterr().err
    assert json.loads((out / "img0.json").read_text())["grid"]["stride"] == 4


def _embed_argv(paths, out, model_dir, *extra):
    return [
        "embed",
        *paths,
        "--out",
        str(out),
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--save-every",
        "2",
        *extra,
    ]


def test_killed_embed_resumes_to_the_same_results(tiny_model_dir, tmp_path, capsys):
    paths = _make_photos(tmp_path / "in", 5)
    reference = tmp_path / "reference.npz"
    assert main(_embed_argv(paths, reference, tiny_model_dir, "--patches")) == 0
    capsys.readouterr()

    out = tmp_path / "emb.npz"
    proc = _run_until_blocked(tmp_path, "part-00001.npz", _embed_argv(paths, out, tiny_model_dir, "--patches"))
    proc.kill()
    proc.communicate(timeout=120)
    assert not out.exists()
    parts = tmp_path / ".emb.npz.parts"
    assert sorted(p.name for p in parts.iterdir() if not is_part_file(p)) == ["part-00000.npz"]

    assert main([*_embed_argv(paths, out, tiny_model_dir, "--patches"), "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["embedded"], summary["computed"], summary["skipped"], summary["failed"]) == (5, 3, 2, 0)
    assert not parts.exists() and not [p for p in tmp_path.iterdir() if is_part_file(p)]
    with np.load(out) as got, np.load(reference) as want:
        assert list(got["files"]) == list(want["files"]) == paths
        np.testing.assert_allclose(got["embeddings"], want["embeddings"], atol=1e-5)
        for j in range(5):
            np.testing.assert_allclose(got[f"patches_{j}"], want[f"patches_{j}"], atol=1e-5)
            np.testing.assert_array_equal(got[f"positions_{j}"], want[f"positions_{j}"])


def test_interrupted_embed_says_how_to_resume(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import exifclip.embedder as embedder

    paths = _make_photos(tmp_path / "in", 4)
    out = tmp_path / "emb.npz"
    real = embedder.iter_embed_patches
    calls = []

    def interrupted_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder, "iter_embed_patches", interrupted_second_time)
    assert main(_embed_argv(paths, out, tiny_model_dir)) == 130
    err = capsys.readouterr().err
    assert "interrupted: 2 of 4 images are saved" in err and "--resume" in err
    monkeypatch.setattr(embedder, "iter_embed_patches", real)
    assert main(_embed_argv(paths, out, tiny_model_dir, "--resume")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["computed"], summary["skipped"]) == (2, 2)
    # without --resume everything is computed again
    assert main(_embed_argv(paths, out, tiny_model_dir)) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 4


def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) * 2 // 3])  # the file ends inside the scan data
    return path


def test_decode_options_reach_every_estimator(tiny_model_dir, tmp_path):
    from exifclip import ExifPatchEmbedder, SpliceLocalizer

    truncated = str(_truncated_jpeg(tmp_path / "cut.jpg"))
    common = dict(model=str(tiny_model_dir), device="cpu", errors="skip")
    refused = SpliceLocalizer(**common, stride=8).fit()
    assert refused.localize([truncated]) == [None] and "truncated" in refused.failures_[0].reason
    recovered = SpliceLocalizer(**common, stride=8, allow_truncated=True).fit()
    with pytest.warns(UserWarning, match="truncated"):
        assert recovered.localize([truncated])[0] is not None
    small = ExifPatchEmbedder(**common, max_pixels=100).fit()
    assert np.isnan(small.transform([truncated])).all() and "pixels" in small.failures_[0].reason
    # every estimator passes them on: tests/test_estimator_contract.py::test_shared_parameters_reach_the_embedder


def test_cli_decode_options(tiny_model_dir, tmp_path, capsys):
    truncated = str(_truncated_jpeg(tmp_path / "cut.jpg"))
    argv = ["localize", truncated, "--model", str(tiny_model_dir), "--device", "cpu", "--stride", "8"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 1
    assert "cut.jpg" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "recovered"), "--allow-truncated"]) == 0
    # the command line says warnings as one line naming the file, and in the flag's words
    err = capsys.readouterr().err
    assert f"exifclip: warning: {truncated}: truncated JPEG" in err and "--allow-truncated" in err
    assert "allow_truncated=" not in err
    assert json.loads((tmp_path / "recovered" / "cut.json").read_text())["truncated"] is True
    assert main([*argv, "--out", str(tmp_path / "big"), "--allow-truncated", "--max-pixels", "100"]) == 1
    assert "pixels" in capsys.readouterr().err
    embed = ["embed", truncated, "--model", str(tiny_model_dir), "--device", "cpu", "--stride", "8"]
    assert main([*embed, "--out", str(tmp_path / "refused.npz")]) == 1
    capsys.readouterr()
    assert main([*embed, "--out", str(tmp_path / "recovered.npz"), "--allow-truncated"]) == 0
    assert f"exifclip: warning: {truncated}: truncated JPEG" in capsys.readouterr().err
    assert np.load(tmp_path / "recovered.npz")["embeddings"].shape[0] == 1
