"""Same input, same bits: across runs, batch sizes and batch composition (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from exifclip import ExifPatchEmbedder, SpliceLocalizer
from exifclip.modeling.hub import clear_model_cache


@pytest.fixture(scope="module")
def spliced_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (150, 190, 3), dtype=np.uint8)
    image[40:100, 60:140] = rng.integers(0, 50, (60, 80, 3), dtype=np.uint8)
    return image


@pytest.fixture(scope="module")
def other_image():
    return np.random.default_rng(4).integers(0, 256, (120, 130, 3), dtype=np.uint8)


def _localize(model_dir, images, **params):
    return SpliceLocalizer(model=str(model_dir), device="cpu", **params).fit().localize(images)


def test_heatmaps_identical_across_runs(tiny_model_dir, spliced_image):
    first = _localize(tiny_model_dir, [spliced_image])[0]
    clear_model_cache()  # a fresh load of the weights, as in a new process
    second = _localize(tiny_model_dir, [spliced_image])[0]
    assert np.array_equal(first.heatmap, second.heatmap)
    assert np.array_equal(first.mask, second.mask)
    assert first.score == second.score


@pytest.mark.parametrize("batch_size", [1, 7, 300])
def test_heatmaps_identical_across_batch_sizes(tiny_model_dir, spliced_image, batch_size):
    reference = _localize(tiny_model_dir, [spliced_image], batch_size=64)[0]
    result = _localize(tiny_model_dir, [spliced_image], batch_size=batch_size)[0]
    assert np.array_equal(reference.heatmap, result.heatmap)
    assert np.array_equal(reference.mask, result.mask)
    assert reference.score == result.score


def test_results_do_not_depend_on_the_other_images_in_the_batch(tiny_model_dir, spliced_image, other_image):
    together = _localize(tiny_model_dir, [other_image, spliced_image], batch_size=50)
    alone = _localize(tiny_model_dir, [spliced_image], batch_size=50)
    assert np.array_equal(together[1].heatmap, alone[0].heatmap)


def test_embeddings_identical_across_batch_sizes(tiny_model_dir, spliced_image, other_image):
    images = [spliced_image, other_image]
    a = ExifPatchEmbedder(model=str(tiny_model_dir), batch_size=3).fit().transform(images)
    b = ExifPatchEmbedder(model=str(tiny_model_dir), batch_size=512).fit().transform(images)
    assert np.array_equal(a, b)
