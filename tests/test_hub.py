"""Model resolution, loading, caching and publishing, all offline."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from exifclip import hub
from exifclip.modeling.hub import (ModelNotFoundError, clear_model_cache, load_model, packaged_models,
                                   resolve_model_dir)
from exifclip.modeling import ExifClipModel

from .conftest import make_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHub:
    """Stand-in for ``huggingface_hub.HfApi``: commits land in a Hub-cache layout.

    The layout is the one ``huggingface_hub`` writes: ``models--org--name/``
    with content-addressed ``blobs/``, ``snapshots/<commit>/`` of symlinks,
    and ``refs/<branch>`` holding the commit hash.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.calls: list[tuple] = []
        self.n_commits = 0

    def _repo(self, repo_id):
        return self.cache_dir / ("models--" + repo_id.replace("/", "--"))

    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
        self.calls.append(("create_repo", repo_id))
        self._repo(repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def create_branch(self, repo_id, branch, exist_ok=False):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message="", repo_type=None):
        self.calls.append(("upload_folder", repo_id, sorted(os.listdir(folder_path))))
        self.n_commits += 1
        commit = hashlib.sha1(f"{repo_id}{self.n_commits}".encode()).hexdigest()
        write_hub_cache(self.cache_dir, repo_id, Path(folder_path), commit, revision or "main")
        return commit


def write_hub_cache(cache_dir: Path, repo_id: str, model_dir: Path, commit: str, ref: str = "main") -> Path:
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copy(f, blobs / digest)
        (snapshot / f.name).symlink_to(os.path.relpath(blobs / digest, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def _features(model, seed=0):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.get_image_features(x)


def test_load_from_directory_gives_identical_outputs(tiny_model_dir):
    original = make_tiny_model()
    loaded = load_model(tiny_model_dir)
    assert isinstance(loaded, ExifClipModel) and not loaded.training
    assert torch.equal(_features(loaded), _features(original.eval()))
    assert loaded.tokenizer is not None and len(loaded.tokenizer) == original.config.text_config.vocab_size


def test_load_from_hub_cache_layout_offline(tiny_model_dir, tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    write_hub_cache(tmp_path, "someorg/exifclip-tiny", tiny_model_dir, COMMIT)
    by_branch = load_model("someorg/exifclip-tiny", cache_dir=tmp_path)
    by_commit = load_model("someorg/exifclip-tiny", revision=COMMIT, cache_dir=tmp_path)
    assert by_branch is by_commit  # same files -> one cached instance
    assert torch.equal(_features(by_branch), _features(load_model(tiny_model_dir)))
    assert resolve_model_dir("someorg/exifclip-tiny", cache_dir=tmp_path).name == COMMIT


def test_offline_miss_fails_at_once_with_instructions(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        load_model("someorg/not-downloaded", cache_dir=tmp_path)
    message = str(info.value)
    assert "someorg/not-downloaded" in message and "HF_HUB_OFFLINE" in message and "download" in message


def test_unknown_name_lists_what_exists():
    with pytest.raises(ModelNotFoundError, match="not a packaged model"):
        load_model("no-such-model")


def test_pickled_weights_are_refused(tiny_model_dir, tmp_path):
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_model(tmp_path)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_non_exifclip_config_is_refused(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(ResNetConfig(hidden_sizes=[8], depths=[1], embedding_size=8)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not exifclip|resnet"):
        load_model(tmp_path)


def test_cache_returns_one_instance_and_reloads_changed_files(tmp_path, monkeypatch):
    make_tiny_model(seed=0).save_pretrained(tmp_path)
    calls = []
    original = ExifClipModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExifClipModel, "from_pretrained", classmethod(counting))
    a = load_model(tmp_path)
    b = load_model(str(tmp_path))
    assert a is b and len(calls) == 1
    assert load_model(tmp_path, use_cache=False) is not a and len(calls) == 2
    # new weights written to the same directory are picked up, not served stale
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    make_tiny_model(seed=1).save_pretrained(tmp_path)
    c = load_model(tmp_path)
    assert c is not a and not torch.equal(_features(c), _features(a))


def test_dtype_and_device_options(tiny_model_dir):
    model = load_model(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert load_model(tiny_model_dir, device="auto") is not None
    with pytest.raises(ValueError, match="dtype"):
        load_model(tiny_model_dir, dtype="float99")


def test_push_to_hub_then_load_back(tmp_path):
    model = make_tiny_model(seed=5)
    local = LocalHub(tmp_path / "hub")
    hub.push_to_hub(model, "me/pushed", api=local)
    kinds = [c[0] for c in local.calls]
    assert kinds == ["create_repo", "upload_folder"]
    uploaded = local.calls[-1][2]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(uploaded)
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in uploaded)
    loaded = load_model("me/pushed", cache_dir=tmp_path / "hub")
    assert torch.equal(_features(loaded), _features(model.eval()))


def test_push_to_branch(tmp_path):
    local = LocalHub(tmp_path)
    hub.push_to_hub(make_tiny_model(), "me/pushed", revision="dev", api=local)
    assert ("create_branch", "me/pushed", "dev") in local.calls
    assert (tmp_path / "models--me--pushed" / "refs" / "dev").is_file()
    with pytest.raises(ValueError, match="org/name"):
        hub.push_to_hub(make_tiny_model(), "not a repo id", api=local)


def test_resolve_device():
    assert hub.resolve_device("cpu").type == "cpu"
    assert hub.resolve_device("auto").type in {"cpu", "cuda", "mps"}


def test_an_architecture_name_is_not_a_model_and_the_error_says_where_weights_come_from():
    with pytest.raises(ModelNotFoundError, match="an architecture, not a trained model.*convert-official"):
        load_model("paper-resnet50")


def test_a_saved_model_does_not_record_how_its_tokenizer_was_loaded(tiny_model_dir, tmp_path):
    import json

    # loaded offline from a folder, then saved to be published: the folder must not say "local only"
    load_model(tiny_model_dir).save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only", "token", "_commit_hash"} & set(settings)
    assert settings["tokenizer_class"] == "DistilBertTokenizer"
    reloaded = load_model(tmp_path)
    text = "Make: Canon Model: EOS 5D"
    assert reloaded.tokenizer(text)["input_ids"] == load_model(tiny_model_dir).tokenizer(text)["input_ids"]


@pytest.mark.parametrize("name", packaged_models())
def test_every_packaged_model_loads_offline_and_has_a_card_for_what_it_is(name):
    import json

    from exifclip.modeling.hub import PACKAGED_MODELS_DIR

    folder = PACKAGED_MODELS_DIR / name
    model = load_model(name)
    assert model.tokenizer is not None and not model.training
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense:") and f"# {name}\n" in card, "Hub front matter, then the model's name"
    assert f"`{model.config.architecture}`" in card, "the card names the architecture the config builds"
    tokenizer_settings = json.loads((folder / "tokenizer_config.json").read_text())
    assert "local_files_only" not in tokenizer_settings
    assert (folder / "model.safetensors").is_file() and not any(folder.glob("*.bin"))
