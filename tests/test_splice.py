"""Splice localisation: the pure functions against slow references, and the estimator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from exifclip.batch import BatchItemError, BatchItemWarning
from exifclip.patches import make_grid
from exifclip.splice import (
    SpliceLocalizer,
    calibrate_threshold,
    cell_shape,
    consistency,
    coverage_matrix,
    detection_score,
    localize_embeddings,
    mean_shift_heatmap,
    ncut_mask,
    split_two_means,
    to_image,
)


def reference_consistency(z, grid):
    """The official accumulation, pair by pair (slow): spread each pair's distance onto the cells."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    spread = max(1, grid.patch_size // grid.stride)
    hc, wc = grid.n_rows + spread - 1, grid.n_cols + spread - 1
    responses = np.zeros((hc, wc, hc, wc))
    votes = np.zeros((hc, wc, hc, wc))
    for a in range(grid.n_patches):
        ai, aj = divmod(a, grid.n_cols)
        for b in range(grid.n_patches):
            bi, bj = divmod(b, grid.n_cols)
            d = 1.0 - z[a] @ z[b]
            responses[ai : ai + spread, aj : aj + spread, bi : bi + spread, bj : bj + spread] += d
            votes[ai : ai + spread, aj : aj + spread, bi : bi + spread, bj : bj + spread] += 1
    return (responses / votes).reshape(hc * wc, hc * wc)


def reference_mean_shift(points, window=10, n_iter=5):
    """Mean shift with all points moving at once, written with explicit loops."""
    d0 = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    eps = np.percentile(d0, window) + 1e-6 * max(1.0, np.linalg.norm(points, axis=1).max())
    cur = points.copy()
    for _ in range(n_iter):
        new = cur.copy()
        for i in range(len(cur)):
            near = [j for j in range(len(points)) if np.linalg.norm(cur[i] - points[j]) <= eps]
            if near:
                new[i] = cur[near].mean(0)
        cur = new
    counts = np.array([sum(np.linalg.norm(c - p) <= eps for p in points) for c in cur])
    return cur[counts == counts.max()].mean(0)


@pytest.mark.parametrize(
    "shape,patch,stride",
    [((40, 56), 16, None), ((40, 56), 16, 4), ((33, 47), 10, 7), ((20, 20), 20, None), ((30, 90), 8, 12)],
)
def test_consistency_matches_per_pair_reference(shape, patch, stride, rng):
    grid = make_grid(shape, patch, num_per_dim=6, stride=stride)
    z = rng.normal(size=(grid.n_patches, 5))
    R = consistency(z, grid)
    np.testing.assert_allclose(R, reference_consistency(z, grid), atol=1e-6)
    assert R.shape == (np.prod(cell_shape(grid)),) * 2
    np.testing.assert_allclose(R, R.T, atol=1e-12)


def test_coverage_counts(rng):
    grid = make_grid((40, 40), 12, stride=4)  # spread 3
    cover = coverage_matrix(grid)
    assert cover.shape == (grid.n_patches, np.prod(cell_shape(grid)))
    assert (cover.sum(1) == 9).all()
    assert cover.sum(0).min() >= 1


def test_consistency_rejects_wrong_shapes():
    grid = make_grid((40, 40), 12, stride=4)
    with pytest.raises(ValueError, match="embeddings of shape"):
        consistency(np.zeros((3, 4)), grid)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 14))
def test_mean_shift_matches_loop_reference(seed, n):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, n))
    pts[: n // 2 + 1] *= 0.05  # a majority cluster and scattered others
    np.testing.assert_allclose(mean_shift_heatmap(pts), reference_mean_shift(pts), atol=1e-9)


def test_mean_shift_finds_majority_on_a_splice(rng):
    grid = make_grid((64, 64), 16, stride=8)
    z = np.tile(rng.normal(size=(1, 8)), (grid.n_patches, 1)) + 0.01 * rng.normal(size=(grid.n_patches, 8))
    spliced = (grid.positions()[:, 0] >= 32) & (grid.positions()[:, 1] >= 32)  # bottom-right quarter
    z[spliced] = rng.normal(size=8) + 0.01 * rng.normal(size=(spliced.sum(), 8))
    heat = to_image(mean_shift_heatmap(consistency(z, grid)), grid)
    truth = np.zeros((64, 64), bool)
    truth[40:, 40:] = True  # pixels only spliced patches cover
    assert heat[truth].min() > heat[:24, :24].max()


@pytest.mark.parametrize(
    "R",
    [
        np.zeros((9, 9)),  # all patches identical: zero bandwidth
        np.full((4, 4), 0.3),
        np.array([[0.2]]),  # a single cell
        np.zeros((1, 1)),
    ],
)
def test_mean_shift_degenerate_inputs_are_defined(R):
    heat = mean_shift_heatmap(R)
    assert heat.shape == (R.shape[0],) and np.isfinite(heat).all()
    np.testing.assert_allclose(heat, R[0])


def test_degenerate_embeddings_give_flat_map_not_error():
    grid = make_grid((32, 96), 32, num_per_dim=30)  # a single row of patches
    z = np.ones((grid.n_patches, 4))
    result = localize_embeddings(z, grid)
    assert np.isfinite(result.heatmap).all() and result.heatmap.max() < 1e-6
    assert not result.mask.any()
    assert result.score == pytest.approx(0.0, abs=1e-9)


def test_ncut_separates_two_groups_and_is_deterministic(rng):
    R = np.full((12, 12), 0.9)
    group = np.zeros(12, bool)
    group[[2, 5, 7, 11]] = True
    R[np.ix_(group, group)] = 0.1
    R[np.ix_(~group, ~group)] = 0.1
    R += 0.02 * rng.random(R.shape)
    R = (R + R.T) / 2
    a = ncut_mask(R, seed=1)
    np.testing.assert_array_equal(a, group)
    np.testing.assert_array_equal(ncut_mask(R, seed=1), a)
    np.testing.assert_array_equal(ncut_mask(R, seed=7), a)
    assert not ncut_mask(np.zeros((2, 2))).any()
    assert ncut_mask(np.zeros((6, 6))).sum() <= 3


def test_split_two_means():
    v = np.array([0.0, 0.1, 0.05, 0.9, 1.0])
    np.testing.assert_array_equal(split_two_means(v), v > 0.5)
    assert not split_two_means(np.full(5, 0.3)).any()


def test_to_image_places_cells_at_their_pixels():
    grid = make_grid((50, 70), 20, stride=10)  # spread 2, cells 10 px
    hc, wc = cell_shape(grid)
    cells = np.arange(hc * wc, dtype=float)
    img = to_image(cells, grid)
    assert img.shape == (50, 70)
    for r in range(hc):
        for c in range(wc):
            block = img[r * 10 : (r + 1) * 10, c * 10 : (c + 1) * 10]
            if r < hc - 1 and c < wc - 1:
                assert (block == r * wc + c).all()
    assert (img[-1, -1] == cells[-1]) and img[45, 0] == cells[(hc - 1) * wc]
    assert to_image(cells, grid, shape=(60, 80)).shape == (60, 80)


def test_detection_scores():
    R = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert detection_score(R) == 0.5
    assert detection_score(R, "heatmap_p95") >= 0
    with pytest.raises(ValueError, match="unknown detection score"):
        detection_score(R, "bogus")


def test_calibrate_threshold_finds_separating_value(rng):
    heat = [rng.random((20, 20)) * 0.3 for _ in range(3)]
    masks = []
    for h in heat:
        m = np.zeros((20, 20), bool)
        m[5:12, 5:12] = True
        h[m] += 0.5
        masks.append(m)
    t = calibrate_threshold(heat, masks)
    assert 0.3 <= t <= 0.5
    assert all(((h > t) == m).all() for h, m in zip(heat, masks))


# -- the estimator, end to end on the tiny random model ------------------------------
def _splice_image(rng):
    """A flat photo with a much noisier rectangle: a noise-level trace even random weights see."""
    image = np.full((192, 256, 3), 120, np.uint8) + rng.integers(0, 4, (192, 256, 3), dtype=np.uint8)
    mask = np.zeros((192, 256), bool)
    mask[48:144, 96:208] = True
    image[mask] = (120 + rng.normal(0, 20, (mask.sum(), 3))).clip(0, 255).astype(np.uint8)
    return image, mask


@pytest.fixture
def noise_level_model(monkeypatch):
    """Patch features = per-channel standard deviation: a known noise-level trace.

    Random weights are no reliable detector, and this tests the estimator's
    wiring (grid, consistency, mean shift, masks, scores), not a model.
    """
    import torch

    from exifclip.modeling import ExifClipModel

    def features(self, pixel_values):
        std = pixel_values.float().std(dim=(2, 3))
        out = torch.zeros(pixel_values.shape[0], self.config.embed_dim)
        out[:, :3] = std
        out[:, 3] = 0.05  # a shared component, as real embeddings have
        return out

    monkeypatch.setattr(ExifClipModel, "get_image_features", features)


def test_localizer_finds_an_obvious_splice(tiny_model_dir, rng, noise_level_model):
    from sklearn.metrics import average_precision_score

    image, mask = _splice_image(rng)
    for method in ("meanshift", "ncut"):
        loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", method=method, stride=8).fit()
        result = loc.localize(image)[0]
        assert result.heatmap.shape == mask.shape and result.heatmap.dtype == np.float32
        assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
        assert average_precision_score(mask.ravel(), result.heatmap.ravel()) > 0.75
        iou = (result.mask & mask).sum() / (result.mask | mask).sum()
        assert iou > 0.35, method  # the region is 22 % of the image
    authentic = np.full((192, 256, 3), 120, np.uint8) + rng.integers(0, 4, (192, 256, 3), dtype=np.uint8)
    scores = loc.decision_function([image, authentic])
    assert scores[0] > scores[1]


def test_localizer_predict_score_and_calibration(tiny_model_dir, rng, noise_level_model):
    image, mask = _splice_image(rng)
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8).fit([image, image], [mask, None])
    assert loc.threshold_ is not None and 0 <= loc.threshold_ <= 1
    predicted = loc.predict([image])[0]
    assert predicted.dtype == bool and predicted.shape == mask.shape
    assert loc.score([image], [mask]) > 0.75
    fixed = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, threshold=0.99).fit([image], [mask])
    assert fixed.threshold_ == 0.99


def test_localizer_bad_inputs(tiny_model_dir, rng):
    image, _ = _splice_image(rng)
    with pytest.raises(ValueError, match="method"):
        SpliceLocalizer(model=str(tiny_model_dir), method="kmeans").fit()
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8).fit()
    with pytest.warns(BatchItemWarning) as record:
        results = loc.localize([image, "missing.jpg", np.zeros((10, 10, 3), np.uint8)])
    assert "missing.jpg" in str(record[0].message) and "smaller than one" in str(record[1].message)
    assert results[0] is not None and results[1] is None and results[2] is None
    assert [f.index for f in loc.failures_] == [1, 2]
    with pytest.warns(BatchItemWarning):
        scores = loc.decision_function([image, "missing.jpg"])
    assert np.isfinite(scores[0]) and np.isnan(scores[1])
    with pytest.warns(BatchItemWarning):
        masks = loc.predict(["missing.jpg", image])
    assert masks[0] is None and masks[1].shape == image.shape[:2]
    loc.set_params(errors="raise")  # honoured without refitting
    with pytest.raises(BatchItemError, match=r"image 1 \(missing.jpg\): file not found"):
        loc.decision_function([image, "missing.jpg"])
    loc.set_params(errors="ignore")
    with pytest.raises(ValueError, match="errors"):
        loc.localize([image])


def test_localizer_keeps_others_when_post_processing_fails(tiny_model_dir, rng, monkeypatch):
    import exifclip.splice.localizer as localizer

    image, _ = _splice_image(rng)
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, errors="skip").fit()
    reference = loc.decision_function([image])
    original = localizer.localize_embeddings
    calls = []

    def flaky(embeddings, grid, **kwargs):
        calls.append(grid)
        if len(calls) == 2:
            raise np.linalg.LinAlgError("eigenvalues did not converge")
        return original(embeddings, grid, **kwargs)

    monkeypatch.setattr(localizer, "localize_embeddings", flaky)
    scores = loc.decision_function([image, image, image])
    assert np.isnan(scores[1]) and np.allclose(scores[[0, 2]], reference[0])
    assert loc.failures_ == [(1, "<array shape=(192, 256, 3) dtype=uint8>", "eigenvalues did not converge")]


def test_calibration_leaves_failed_images_out(tiny_model_dir, rng, noise_level_model):
    image, mask = _splice_image(rng)
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, errors="skip")
    loc.fit([image, "missing.jpg"], [mask, mask])
    assert loc.threshold_ is not None and [f.index for f in loc.failures_] == [1]
    with pytest.raises(BatchItemError, match="missing.jpg"):
        clone(loc).set_params(errors="raise").fit([image, "missing.jpg"], [mask, mask])
    with pytest.raises(ValueError, match="2 images and 1 masks"):
        clone(loc).fit([image, image], [mask])


def test_pooled_consistency_is_the_block_average_of_the_full_one():
    from exifclip.splice.postprocessing import _unpool, cell_pooling, cell_shape, consistency

    grid = make_grid((70, 90), patch_size=16, stride=2)  # a cell per 2 pixels
    z = np.random.default_rng(0).normal(size=(grid.n_patches, 8))
    hc, wc = cell_shape(grid)
    full = consistency(z, grid).reshape(hc, wc, hc, wc)
    pooled = consistency(z, grid, pool=3)
    blocks = [(slice(i, min(i + 3, hc)), slice(j, min(j + 3, wc))) for i in range(0, hc, 3) for j in range(0, wc, 3)]
    expected = np.array([[full[a[0], a[1], b[0], b[1]].mean() for b in blocks] for a in blocks])
    np.testing.assert_allclose(pooled, expected, atol=1e-12)
    assert cell_pooling(grid, max_cells=len(blocks)) == 3
    assert cell_pooling(grid, max_cells=None) == 1
    back = _unpool(np.arange(len(blocks), dtype=float), (hc, wc), 3).reshape(hc, wc)
    assert back[0, 0] == back[2, 2] == 0 and back[3, 3] == (-(-wc // 3)) + 1


def test_fine_grids_on_small_images_are_pooled_to_max_cells():
    from exifclip.splice.postprocessing import MAX_CELLS, cell_shape, localize_embeddings

    grid = make_grid((200, 200), patch_size=64, num_per_dim=30)  # stride 4: 2500 cells unpooled
    assert np.prod(cell_shape(grid)) > MAX_CELLS
    z = np.random.default_rng(1).normal(size=(grid.n_patches, 16))
    z[grid.positions()[:, 1] > 100] += 3.0  # the right side differs
    result = localize_embeddings(z, grid)
    assert result.heatmap.shape == result.mask.shape == (200, 200)
    assert result.cell_map.shape == cell_shape(grid)
    left, right = result.mask[:, :60].mean(), result.mask[:, 170:].mean()
    assert min(left, right) < 0.1 < 0.9 < max(left, right)
    with pytest.raises(ValueError, match="max_cells"):
        localize_embeddings(z, grid, max_cells=0)
