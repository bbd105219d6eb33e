"""runtime="onnxruntime": the image tower in ONNX Runtime gives PyTorch's embeddings, exported once per model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from exifclip import ExifPatchEmbedder, SpliceLocalizer
from exifclip.cli import main

from .conftest import make_tiny_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from exifclip.modeling.onnx_runtime import OnnxRuntimeModel  # noqa: E402


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "onnx-cache"
    monkeypatch.setenv("EXIFCLIP_ONNX_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def srm_model_dir(tmp_path_factory):
    """A tiny model with the SRM front-end and 32 px of patch context: every part of the tower in the graphs."""
    path = tmp_path_factory.mktemp("tiny-srm")
    make_tiny_model(vision_front_end="srm", patch_context=32).save_pretrained(path)
    return path


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("which", ["plain", "srm"])
def test_onnxruntime_gives_the_pytorch_embeddings(tiny_model_dir, srm_model_dir, rng, mode, which):
    model = str(tiny_model_dir if which == "plain" else srm_model_dir)
    images = [rng.integers(0, 256, (150, 230, 3), dtype=np.uint8), rng.integers(0, 256, (97, 64, 3), dtype=np.uint8)]
    params = dict(model=model, device="cpu", stride=16, mode=mode)
    torch_out = ExifPatchEmbedder(**params).fit().transform_patches(images)
    onnx_out = ExifPatchEmbedder(**params, runtime="onnxruntime").fit().transform_patches(images)
    for a, b in zip(torch_out, onnx_out):
        assert a.grid == b.grid
        np.testing.assert_allclose(b.embeddings, a.embeddings, atol=2e-5)
    scores = [SpliceLocalizer(**params, runtime=r).fit().decision_function(images) for r in ("torch", "onnxruntime")]
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-4)


def test_graphs_are_exported_once_per_model(tiny_model_dir, onnx_cache):
    from exifclip.modeling.hub import load_model

    model = load_model(tiny_model_dir, device="cpu", use_cache=False)
    first = OnnxRuntimeModel(model)
    written = {p: p.stat().st_mtime_ns for p in onnx_cache.iterdir()}
    assert {p.name.rsplit("-", 1)[-1] for p in written} == {"features.onnx", "trunk.onnx"}
    again = OnnxRuntimeModel(load_model(tiny_model_dir, device="cpu", use_cache=False))
    assert again.graphs == first.graphs
    assert {p: p.stat().st_mtime_ns for p in onnx_cache.iterdir()} == written, "read back, not exported again"
    other = OnnxRuntimeModel(make_tiny_model(seed=1))
    assert set(other.graphs.values()).isdisjoint(first.graphs.values()), "other weights, other graphs"
    assert again.config is model.config or again.config.to_dict() == model.config.to_dict()
    assert again.tokenizer is not None and again.get_text_features is not None  # the rest is the PyTorch model's


def test_onnxruntime_refuses_what_it_cannot_run(tiny_model_dir):
    with pytest.raises(ValueError, match="float32 models on the CPU"):
        OnnxRuntimeModel(make_tiny_model().to(torch.bfloat16))
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="runtime"):
        ExifPatchEmbedder(model=str(tiny_model_dir), runtime="tensorrt").fit()


def test_cli_runtime_flag_is_recorded_and_matches_torch(tiny_model_dir, tmp_path, rng):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photo)
    common = [str(photo), "--model", str(tiny_model_dir), "--device", "cpu", "--stride", "16", "--outputs", "none"]
    assert main(["localize", *common, "--out", str(tmp_path / "torch")]) == 0
    assert main(["localize", *common, "--out", str(tmp_path / "ort"), "--runtime", "onnxruntime"]) == 0
    records = [json.loads((tmp_path / d / "results.jsonl").read_text().splitlines()[0]) for d in ("torch", "ort")]
    assert records[1]["settings"]["runtime"] == "onnxruntime" and "runtime" not in records[0]["settings"]
    assert abs(records[1]["score"] - records[0]["score"]) < 1e-4


def test_clones_share_one_onnx_model(tiny_model_dir):
    from sklearn.base import clone

    first = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", runtime="onnxruntime").fit()
    second = clone(first).fit()
    assert second.model_ is first.model_, "one set of sessions for the shared model"
