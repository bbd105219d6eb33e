"""Streaming calls: any iterable in, results out one by one in input order, nothing kept behind."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from exifclip.batch import BatchItemWarning
from exifclip.embedder import ExifPatchEmbedder
from exifclip.modeling.embedding import embed_patches
from exifclip.modeling.hub import load_model
from exifclip.sources import iter_sources
from exifclip.splice import SpliceLocalizer
from exifclip.streaming import iter_embed_patches


class Counted:
    """A generator of images that counts how far it has been read."""

    def __init__(self, images):
        self.images = images
        self.pulled = 0

    def __iter__(self):
        for img in self.images:
            self.pulled += 1
            yield img


def _images(n, rng, sizes=((64, 80), (96, 70), (48, 48), (40, 200))):
    return [rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture
def model(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize("batch_size", [64, 128, 1000])
def test_stream_gives_the_list_results_bit_for_bit_in_input_order(model, rng, batch_size):
    images = _images(9, rng)
    images[4] = np.zeros((10, 10, 3), np.uint8)  # smaller than a patch: fails, keeps its place
    want = embed_patches(model, images, stride=8, batch_size=batch_size, errors="skip")
    got = list(iter_embed_patches(model, iter(images), stride=8, batch_size=batch_size, errors="skip"))
    assert [i for i, _, _ in got] == list(range(9))
    assert all(src is img for (_, src, _), img in zip(got, images))
    for (_, _, g), w in zip(got, want):
        if w is None:
            assert g is None
            continue
        assert g.grid == w.grid
        np.testing.assert_array_equal(g.embeddings, w.embeddings)


def test_fast_mode_streams_too(model, rng):
    from exifclip.modeling.embedding import embed_patches_fast

    images = _images(3, rng)
    want = embed_patches_fast(model, images, stride=8)
    got = [e for _, _, e in iter_embed_patches(model, (im for im in images), stride=8, mode="fast")]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.embeddings, w.embeddings)


def test_input_is_read_only_as_far_as_the_next_batch_needs(model, rng):
    # each 96x70 image has 5x3 = 15 patches at stride 16: a 64-patch batch spans at most 5 images
    source = Counted([rng.integers(0, 256, (96, 70, 3), dtype=np.uint8) for _ in range(40)])
    ahead = []
    for i, _, item in iter_embed_patches(model, source, stride=16, batch_size=64):
        assert item is not None
        ahead.append(source.pulled - (i + 1))
    assert len(ahead) == 40
    assert max(ahead) <= 64 // 15 + 1, ahead  # a batch's worth of images, never the whole input


def test_results_and_images_are_released_as_they_are_yielded(tiny_model_dir, rng):
    """The memory contract: once yielded and dropped by the caller, nothing of an image is kept."""
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, batch_size=64).fit()
    image_refs, result_refs = [], []

    def stream():
        for _ in range(25):
            img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            image_refs.append(weakref.ref(img))
            yield img
            del img

    alive = []
    for k, result in enumerate(loc.iter_localize(stream())):
        assert result is not None and result.heatmap.shape == (64, 80)
        result_refs.append(weakref.ref(result))
        del result
        gc.collect()
        alive.append(sum(r() is not None for r in result_refs) + sum(r() is not None for r in image_refs))
    assert len(result_refs) == 25
    # a handful in flight (the batch being filled), never a growing pile
    assert max(alive) <= 8, alive
    assert alive[-1] <= alive[5] + 1, alive
    gc.collect()
    assert not [r for r in result_refs + image_refs if r() is not None]


def test_caller_code_between_items_is_not_in_inference_mode(tiny_model_dir, rng):
    emb = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", stride=8).fit()
    for item in emb.iter_transform_patches(_images(3, rng)):
        assert item is not None
        assert not torch.is_inference_mode_enabled()
        assert torch.is_grad_enabled()


def test_failures_in_a_stream_keep_their_place_and_are_reported(tiny_model_dir, tmp_path, rng):
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, errors="warn").fit()
    missing = str(tmp_path / "gone.jpg")
    images = _images(2, rng)
    with pytest.warns(BatchItemWarning, match="gone.jpg"):
        results = list(loc.iter_localize(x for x in [images[0], missing, images[1]]))
    assert [r is None for r in results] == [False, True, False]
    assert [(f.index, f.source) for f in loc.failures_] == [(1, missing)]


def test_stopping_early_is_clean_and_a_new_call_starts_afresh(tiny_model_dir, rng):
    emb = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", stride=8).fit()
    source = Counted(_images(50, rng))
    stream = emb.iter_transform_patches(source)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert all(f is not None for f in first) and source.pulled < 50
    assert emb.transform(_images(2, rng)).shape == (2, 16)


def test_transform_streams_and_matches_the_pooled_list(tiny_model_dir, rng):
    emb = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", stride=8).fit()
    images = _images(5, rng)
    np.testing.assert_array_equal(emb.transform(iter(images)), emb.transform(images))


def test_bad_input_fails_when_the_call_is_made_naming_it(tiny_model_dir):
    emb = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu").fit()
    with pytest.raises(TypeError, match="int"):
        emb.iter_transform_patches(42)
    with pytest.raises(ValueError, match="empty"):
        emb.transform(x for x in [])
    with pytest.raises(ValueError, match="shape"):
        iter_sources(np.array([b"a.jpg", b"b.jpg"]))  # bytes dtype: not paths, not an image


def test_a_data_frame_is_taken_by_its_one_column_or_refused_naming_its_columns(tiny_model_dir, rng, tmp_path):
    pd = pytest.importorskip("pandas")
    from PIL import Image

    paths = []
    for i, img in enumerate(_images(2, rng)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    emb = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", stride=8).fit()
    np.testing.assert_array_equal(emb.transform(pd.DataFrame({"path": paths})), emb.transform(paths))
    with pytest.raises(TypeError, match=r"columns \['path', 'label'\]; pass the column"):
        emb.transform(pd.DataFrame({"path": paths, "label": [0, 1]}))
