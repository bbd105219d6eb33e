"""Untrusted weights: what loads, what is refused, and that nothing executes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from joblib import Parallel, delayed
from safetensors.torch import load_file, save_file

from exifclip import hub
from exifclip.modeling.hub import ModelLoadError, ModelNotFoundError, clear_model_cache, load_model

from .conftest import make_tiny_model
from .test_hub import write_hub_cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def _features(model, seed=0):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.get_image_features(x)


def _rewrite_weights(directory, edit):
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_an_error_not_a_random_layer(model_copy):
    _rewrite_weights(model_copy, lambda s: s.pop("image_projection.weight"))
    with pytest.raises(ModelLoadError, match=r"do not fit config\.json; missing: image_projection\.weight"):
        load_model(model_copy)


def test_wrong_shape_and_unexpected_tensors_are_listed(model_copy):
    def edit(state):
        state["image_projection.weight"] = state["image_projection.weight"][:, :8].contiguous()
        state["extra.head"] = torch.zeros(3)

    _rewrite_weights(model_copy, edit)
    with pytest.raises(ModelLoadError) as info:
        load_model(model_copy)
    message = str(info.value)
    assert "unexpected: extra.head" in message
    assert "wrong shape: image_projection.weight (16, 8) (config needs (16, 16))" in message


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.update(model_type="resnet"), "describes a 'resnet' model"),
        (lambda c: c.pop("model_type"), "describes a None model"),
        (lambda c: c.update(text_pooling="max"), "not a valid exifclip config: text_pooling"),
        (lambda c: c.update(image_projection_dim=24), "not a valid exifclip config: image embeddings"),
    ],
)
def test_bad_configs_fail_clearly(model_copy, edit, match):
    config = json.loads((model_copy / "config.json").read_text())
    edit(config)
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=match):
        load_model(model_copy)


def test_unreadable_config(model_copy):
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not readable JSON"):
        load_model(model_copy)


def test_remote_code_named_by_config_never_runs(model_copy, tmp_path):
    marker = tmp_path / "remote-code-ran"
    (model_copy / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model_copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
    (model_copy / "config.json").write_text(json.dumps(config))
    model = load_model(model_copy)
    assert type(model).__module__ == "exifclip.modeling.model"
    config["model_type"] = "evil"
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="never runs code"):
        load_model(model_copy)
    assert not marker.exists()


def _pickled_copy(model_dir, target):
    target.mkdir()
    shutil.copy(model_dir / "config.json", target / "config.json")
    for f in model_dir.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            shutil.copy(f, target / f.name)
    torch.save(load_file(model_dir / "model.safetensors"), target / "pytorch_model.bin")
    return target


def test_pickled_weights_need_allow_pickle_and_load_identically(tiny_model_dir, tmp_path):
    pickled = _pickled_copy(tiny_model_dir, tmp_path / "pickled")
    with pytest.raises(ModelNotFoundError, match="allow_pickle=True"):
        load_model(pickled)
    model = load_model(pickled, allow_pickle=True)
    assert torch.equal(_features(model), _features(load_model(tiny_model_dir)))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_allow_pickle_still_refuses_code(tiny_model_dir, tmp_path):
    target = _pickled_copy(tiny_model_dir, tmp_path / "evil")
    marker = tmp_path / "executed"
    state = load_file(tiny_model_dir / "model.safetensors")
    torch.save({**state, "hook": _Payload(str(marker))}, target / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"refused: not readable with torch\.load\(weights_only=True\)"):
        load_model(target, allow_pickle=True)
    assert not marker.exists()


def test_revision_pins_a_commit(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    make_tiny_model(seed=1).save_pretrained(old)
    make_tiny_model(seed=2).save_pretrained(new)
    commit_old, commit_new = "a" * 40, "b" * 40
    cache = tmp_path / "hub"
    write_hub_cache(cache, "org/model", old, commit_old)
    write_hub_cache(cache, "org/model", new, commit_new)  # main now points at the new commit
    latest = load_model("org/model", cache_dir=cache)
    pinned = load_model("org/model", revision=commit_old, cache_dir=cache)
    assert torch.equal(_features(latest), _features(make_tiny_model(seed=2).eval()))
    assert torch.equal(_features(pinned), _features(make_tiny_model(seed=1).eval()))
    with pytest.raises(ModelNotFoundError, match="org/model@" + "c" * 40):
        load_model("org/model", revision="c" * 40, cache_dir=cache)


def test_model_cache_under_joblib_threads(tiny_model_dir, monkeypatch):
    from exifclip.modeling import ExifClipModel

    calls = []
    original = ExifClipModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExifClipModel, "from_pretrained", classmethod(counting))
    models = Parallel(n_jobs=4, backend="threading")(delayed(load_model)(tiny_model_dir) for _ in range(16))
    assert len(calls) == 1
    assert all(m is models[0] for m in models)
    assert hub._cache  # the one instance is cached


def test_estimators_in_threads_match_serial(tiny_model_dir, random_images):
    from exifclip import ExifPatchEmbedder

    embedder = ExifPatchEmbedder(model=str(tiny_model_dir), batch_size=16).fit()
    serial = [embedder.transform([img]) for img in random_images * 2]
    threaded = Parallel(n_jobs=3, backend="threading")(
        delayed(embedder.transform)([img]) for img in random_images * 2
    )
    for a, b in zip(serial, threaded):
        assert (a == b).all()
