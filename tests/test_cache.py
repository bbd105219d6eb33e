"""The embedding cache: ``memory=`` keyed by content, model and grid; no photo embedded twice."""

from __future__ import annotations

import os
import pickle
import shutil

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import GridSearchCV

import exifclip.streaming as streaming
from exifclip.embedder import ExifPatchEmbedder
from exifclip.splice import SpliceLocalizer
from exifclip.splice.evaluation import pmap_scorer


@pytest.fixture
def embedded(monkeypatch):
    """Counts the patches that go through the model."""
    count = {"patches": 0}
    real = streaming.forward_patches

    def counting(model, patches, chunk=None):
        count["patches"] += len(patches)
        return real(model, patches, chunk)

    monkeypatch.setattr(streaming, "forward_patches", counting)
    return count


@pytest.fixture
def photos(tmp_path, random_images):
    paths = []
    for i, img in enumerate(random_images):
        paths.append(str(tmp_path / f"photo{i}.png"))
        Image.fromarray(img).save(paths[-1])
    return paths


def _embedder(model_dir, memory, **kw):
    return ExifPatchEmbedder(model=str(model_dir), device="cpu", stride=8, memory=memory, **kw).fit()


def test_second_call_embeds_nothing_and_gives_the_same_bits(tiny_model_dir, tmp_path, photos, embedded):
    cache = tmp_path / "cache"
    first = _embedder(tiny_model_dir, str(cache)).transform_patches(photos)
    assert embedded["patches"] == sum(p.grid.n_patches for p in first)
    embedded["patches"] = 0
    again = _embedder(tiny_model_dir, cache).transform_patches(photos)  # a new estimator, a Path this time
    assert embedded["patches"] == 0
    for a, b in zip(first, again):
        assert a.grid == b.grid
        np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_keys_follow_the_content_model_and_grid(tiny_model_dir, tmp_path, photos, embedded, random_images):
    cache = str(tmp_path / "cache")
    emb = _embedder(tiny_model_dir, cache)
    emb.transform(photos)
    embedded["patches"] = 0
    renamed = str(tmp_path / "renamed.png")
    shutil.copy(photos[0], renamed)
    emb.transform([renamed, random_images[0]])  # same pixels, as a copy and as an array
    n0 = emb.transform_patches([photos[0]])[0].grid.n_patches
    assert embedded["patches"] == n0, "the copy is a hit; the array is keyed by its pixels, a miss once"
    embedded["patches"] = 0
    changed = random_images[0].copy()
    changed[0, 0] ^= 1
    Image.fromarray(changed).save(photos[0])
    emb.transform([photos[0]])
    assert embedded["patches"] == n0, "a file changed in place is embedded again"
    embedded["patches"] = 0
    _embedder(tiny_model_dir, cache, num_per_dim=3).transform([photos[1]])
    assert embedded["patches"] > 0, "another grid is another key"
    from tests.conftest import make_tiny_model

    other = tmp_path / "other-model"
    make_tiny_model(seed=1).save_pretrained(other)
    embedded["patches"] = 0
    _embedder(other, cache).transform([photos[1]])
    assert embedded["patches"] > 0, "another model's weights are another key"


def test_joblib_memory_and_no_cache(tiny_model_dir, tmp_path, photos, embedded):
    memory = joblib.Memory(str(tmp_path / "jl"), verbose=0)
    _embedder(tiny_model_dir, memory).transform(photos)
    assert (tmp_path / "jl" / "exifclip-patch-embeddings").is_dir()
    embedded["patches"] = 0
    _embedder(tiny_model_dir, memory).transform(photos)
    assert embedded["patches"] == 0
    _embedder(tiny_model_dir, joblib.Memory(None, verbose=0)).transform(photos)
    assert embedded["patches"] > 0


def test_grid_search_embeds_each_photo_once(tiny_model_dir, tmp_path, rng, embedded):
    X = [rng.integers(0, 256, (64 + 8 * i, 72, 3), dtype=np.uint8) for i in range(4)]
    y = []
    for img in X:
        mask = np.zeros(img.shape[:2], bool)
        mask[: img.shape[0] // 2] = True
        y.append(mask)
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, memory=str(tmp_path / "c"))
    search = GridSearchCV(loc, {"method": ["meanshift", "ncut"]}, cv=2, scoring=pmap_scorer, error_score="raise")
    search.fit(X, y)
    one_pass = sum(item.grid.n_patches for item in loc.fit().embedder_.transform_patches(X))
    assert embedded["patches"] == one_pass, "4 photos, 2 candidates x 2 folds and the refit: each embedded once"


def test_an_unwritable_cache_warns_once_and_the_work_goes_on(tiny_model_dir, tmp_path, photos):
    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-folder"
        blocked.write_text("x")
        location = blocked  # a file where the cache folder should be: unwritable even for root
    else:
        location = tmp_path / "ro"
        location.mkdir()
        location.chmod(0o500)
    emb = _embedder(tiny_model_dir, str(location))
    with pytest.warns(RuntimeWarning, match="cannot write to the embedding cache"):
        Z = emb.transform(photos)
    assert np.isfinite(Z).all()


def test_an_estimator_that_used_its_cache_pickles(tiny_model_dir, tmp_path, photos):
    emb = _embedder(tiny_model_dir, str(tmp_path / "cache"))
    want = emb.transform(photos)
    restored = pickle.loads(pickle.dumps(emb))
    np.testing.assert_array_equal(restored.transform(photos), want)
