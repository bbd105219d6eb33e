"""Radial lens distortion: the warps, the dataset, the ring features and the regressor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge

from exifclip.distortion import (
    DistortionRegressor,
    distort,
    distorted_radius,
    make_distortion_dataset,
    monotonic_radius_limit,
    patch_radii,
    ring_features,
    undistort,
    undistorted_radius,
)
from exifclip.io import load_image
from exifclip.patches import make_grid

MODELS = ["division", "brown"]


def smooth_image(height=120, width=160, seed=0):
    """Low-frequency colour pattern: bilinear resampling barely changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(float)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.08), rng.uniform(0, 6)
        channels.append(128 + 90 * np.sin(fx * x + phase) * np.cos(fy * y))
    return np.stack(channels, -1).round().astype(np.uint8)


def centred_crop(image, shape):
    h, w = shape
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    assert (image.shape[0] - h) % 2 == 0 and (image.shape[1] - w) % 2 == 0, "parity is kept"
    return image[top : top + h, left : left + w]


# -- radial maps -----------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    k1=st.floats(-0.4, 0.4),
    k2=st.floats(-0.1, 0.1),
    model=st.sampled_from(MODELS),
    r=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
)
def test_radius_maps_invert_each_other(k1, k2, model, r):
    assume(monotonic_radius_limit(k1, k2, model) > 1.0)
    r = np.array(r)
    r_u = undistorted_radius(r, k1, k2, model)
    np.testing.assert_allclose(distorted_radius(r_u, k1, k2, model), r, atol=1e-10)


@pytest.mark.parametrize("model", MODELS)
def test_sign_convention_of_the_radius_maps(model):
    r = np.linspace(0.1, 1.0, 10)
    assert np.all(undistorted_radius(r, -0.1, model=model) > r), "barrel: recorded closer to the centre"
    assert np.all(undistorted_radius(r, 0.1, model=model) < r), "pincushion: recorded further out"


def test_models_agree_to_first_order():
    r = np.linspace(0, 1, 11)
    for k1 in (-0.01, 0.01):
        division, brown = undistorted_radius(r, k1, model="division"), undistorted_radius(r, k1, model="brown")
        np.testing.assert_allclose(division, brown, atol=5 * k1**2)


def test_monotonic_limit_matches_a_dense_scan():
    r = np.linspace(0, 3, 300_001)
    for k1, k2, model in [(-0.3, 0.0, "division"), (0.4, 0.02, "division"), (-0.1, -0.02, "brown")]:
        limit = monotonic_radius_limit(k1, k2, model)
        if model == "division":
            r_u = r / (1 + k1 * r**2 + k2 * r**4)
            bad = (np.diff(r_u) <= 0) | (1 + k1 * r[1:] ** 2 + k2 * r[1:] ** 4 <= 0)
            assert r[1:][bad][0] == pytest.approx(limit, abs=1e-4)
        else:
            r_d = r * (1 + k1 * r**2 + k2 * r**4)
            assert r_d[1:][np.diff(r_d) <= 0][0] == pytest.approx(limit, abs=1e-4)


# -- warps -----------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_zero_distortion_is_the_identity(model):
    image = np.random.default_rng(1).integers(0, 256, (31, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(distort(image, 0.0, model=model), image)
    np.testing.assert_array_equal(undistort(image, 0.0, model=model), image)


def dot_image(height, width, y, x):
    image = np.zeros((height, width, 3), np.uint8)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


def centroid(image):
    weight = image[..., 0].astype(float)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return (weight * ys).sum() / weight.sum(), (weight * xs).sum() / weight.sum()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("k1", [-0.12, 0.12])
def test_barrel_moves_points_inwards_and_pincushion_outwards(model, k1):
    height, width = 201, 301  # odd sizes: the centre is a pixel, (100, 150)
    source = dot_image(height, width, 150, 250)
    out = distort(source, k1, model=model)
    cy, cx = centroid(out)
    centre_y, centre_x = (out.shape[0] - 1) / 2, (out.shape[1] - 1) / 2
    radius_in = math.hypot(250 - 150, 150 - 100)
    radius_out = math.hypot(cx - centre_x, cy - centre_y)
    if k1 < 0:
        assert radius_out < radius_in - 5
    else:
        assert radius_out > radius_in + 5
    # and by the documented amount: r_d for r_u, in half-diagonals of the output
    unit = 0.5 * math.hypot(out.shape[1], out.shape[0])
    expected = float(distorted_radius(radius_in / unit, k1, model=model)) * unit
    assert radius_out == pytest.approx(expected, abs=0.5)
    # along the same ray
    assert math.atan2(cy - centre_y, cx - centre_x) == pytest.approx(math.atan2(50, 100), abs=0.01)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("k1", [-0.1, -0.05, 0.05, 0.2])
@pytest.mark.parametrize("center", [None, (0.4, 0.55)])
def test_no_border_leaks_from_either_warp(model, k1, center):
    white = np.full((90, 120, 3), 255, np.uint8)
    for warp in (distort, undistort):
        out = warp(white, k1, model=model, center=center)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert (out == 255).all(), f"{warp.__name__} sampled outside the input"
        assert out.shape[0] <= 90 and out.shape[1] <= 120
        assert out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0, "the input's parity is kept"
        assert abs(out.shape[1] / out.shape[0] - 4 / 3) < 0.05


@pytest.mark.parametrize("k1", [-0.3, -0.1])
def test_barrel_crop_is_the_largest_valid_one(k1):
    # Division barrel: the corner binds; the output's corner (r_d = 1) samples
    # the input at r_u = 1 / (1 + k1) output half-diagonals, i.e. the output
    # is (1 + k1) of the input, less the half pixel at each end.
    out = distort(np.zeros((300, 400, 3), np.uint8), k1)
    assert abs(out.shape[0] - 300 * (1 + k1)) <= 3 and abs(out.shape[1] - 400 * (1 + k1)) <= 3
    assert distort(np.zeros((300, 400, 3), np.uint8), 0.1).shape == (300, 400, 3), "pincushion keeps the frame"


@pytest.mark.parametrize(
    ("model", "k1", "k2", "center"),
    [
        ("division", -0.25, 0.0, None),
        ("division", 0.15, 0.02, None),
        ("brown", -0.12, 0.0, None),
        ("brown", 0.1, -0.02, None),
        ("division", -0.2, 0.0, (0.45, 0.55)),
    ],
)
def test_undistort_inverts_distort(model, k1, k2, center):
    source = smooth_image(150, 200)
    distorted = distort(source, k1, k2, model=model, center=center)
    back = undistort(distorted, k1, k2, model=model, center=center)
    assert back.shape[0] <= source.shape[0] and back.shape[1] <= source.shape[1]
    if center is None:
        expected = centred_crop(source, back.shape[:2])
    else:  # the distortion centre keeps its fractions: the crop is about it
        top = round(center[1] * (source.shape[0] - back.shape[0]))
        left = round(center[0] * (source.shape[1] - back.shape[1]))
        expected = source[top : top + back.shape[0], left : left + back.shape[1]]
    error = np.abs(back.astype(int) - expected.astype(int))[2:-2, 2:-2]
    assert error.mean() < 1.5 and np.percentile(error, 99) <= 6


def test_warps_take_any_image_source_and_name_bad_ones():
    grey = np.full((40, 50), 7, np.uint8)
    assert distort(grey, -0.1).shape[2] == 3
    with pytest.raises(ValueError, match="uint8"):
        distort(np.zeros((40, 50, 3), np.float32), -0.1)
    with pytest.raises(ValueError, match="at least 2x2"):
        distort(np.zeros((1, 50, 3), np.uint8), -0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(k1=-1.2), ValueError, r"k1=-1.2 makes the division radial map non-monotonic"),
        (dict(k1=1.2), ValueError, r"k1=1.2 makes"),
        (dict(k1=0.5, k2=0.3), ValueError, r"k1=0.5 and k2=0.3 make"),
        (dict(k1=-0.2, model="brown"), ValueError, r"k1=-0.2 makes the brown radial map"),
        (dict(k1=float("nan")), ValueError, "k1 must be finite"),
        (dict(k1=0.1, k2=float("inf")), ValueError, "k2 must be finite"),
        (dict(k1="0.1"), TypeError, "k1 must be a real number"),
        (dict(k1=True), TypeError, "k1 must be a real number"),
        (dict(k1=0.1, model="fisheye"), ValueError, "model must be one of"),
        (dict(k1=0.1, center=(1.5, 0.5)), ValueError, "center must be fractions"),
        (dict(k1=0.1, center="middle"), ValueError, "center must be None or"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    image = np.zeros((30, 40, 3), np.uint8)
    for warp in (distort, undistort):
        with pytest.raises(error, match=match):
            warp(image, **kwargs)


def test_radius_maps_refuse_radii_past_the_fold():
    with pytest.raises(ValueError, match="k1=0.3 makes"):
        distorted_radius(2.0, 0.3)  # division r_u peaks at 0.913
    with pytest.raises(ValueError, match="k1=-0.3 makes the brown"):
        distorted_radius(1.2, -0.3, model="brown")
    with pytest.raises(ValueError, match="non-negative"):
        undistorted_radius([-0.1], 0.1)


def test_a_large_photo_is_warped_in_bounded_time():
    import time

    photo = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    start = time.perf_counter()
    out = distort(photo, -0.2)
    assert out.shape == (1200, 1600, 3)
    assert time.perf_counter() - start < 10  # ~0.2 s on one core; generous for shared CI machines


# -- dataset ---------------------------------------------------------------------
def test_dataset_is_deterministic_by_seed_and_balanced():
    photos = [smooth_image(60, 80, seed=s) for s in range(3)]
    a_images, a_params, a_source = make_distortion_dataset(
        photos, n=7, k_range=(-0.2, 0.1), seed=3, k2_range=(0.0, 0.02), return_source_index=True
    )
    b_images, b_params, b_source = make_distortion_dataset(
        photos, n=7, k_range=(-0.2, 0.1), seed=3, k2_range=(0.0, 0.02), return_source_index=True
    )
    np.testing.assert_array_equal(a_params, b_params)
    np.testing.assert_array_equal(a_source, b_source)
    assert all(np.array_equal(a, b) for a, b in zip(a_images, b_images))
    assert a_params.shape == (7, 2) and a_params.dtype == np.float64
    assert np.all((a_params[:, 0] >= -0.2) & (a_params[:, 0] <= 0.1))
    assert np.all((a_params[:, 1] >= 0.0) & (a_params[:, 1] <= 0.02))
    assert sorted(np.bincount(a_source, minlength=3)) == [2, 2, 3]
    for image, (k1, k2), s in zip(a_images, a_params, a_source):
        np.testing.assert_array_equal(image, distort(photos[s], k1, k2))
    _, c_params = make_distortion_dataset(photos, n=7, k_range=(-0.2, 0.1), seed=4)
    assert not np.array_equal(a_params, c_params)


def test_dataset_reads_paths_and_validates(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(smooth_image(40, 50)).save(path)
    images, params = make_distortion_dataset([str(path)], n=2, k_range=(0.0, 0.0), seed=0)
    np.testing.assert_array_equal(images[0], load_image(path))
    with pytest.raises(ValueError, match="images is empty"):
        make_distortion_dataset([], n=2, k_range=(0, 0))
    with pytest.raises(ValueError, match="n must be"):
        make_distortion_dataset([str(path)], n=0, k_range=(0, 0))
    with pytest.raises(ValueError, match="k_range"):
        make_distortion_dataset([str(path)], n=2, k_range=(0.1, -0.1))
    with pytest.raises(ValueError, match="k1=-2 makes"):
        make_distortion_dataset([str(path)], n=2, k_range=(-2, -2))


# -- ring features ---------------------------------------------------------------
def test_patch_radii_are_half_diagonal_units():
    grid = make_grid((300, 400), patch_size=1, stride=1)
    radii = patch_radii(grid).reshape(300, 400)
    assert radii.max() == pytest.approx(math.hypot(199.5, 149.5) / 250)
    assert radii.min() == pytest.approx(math.hypot(0.5, 0.5) / 250)


def test_ring_features_pool_by_radius():
    grid = make_grid((64, 64), patch_size=8, stride=8)  # 8 x 8 patches
    radii = patch_radii(grid)
    z = np.column_stack([radii, np.ones_like(radii)])
    features = ring_features(z, grid, n_rings=4, differences=True)
    assert features.shape == ((4 + 3) * 2,)
    means = features[:8].reshape(4, 2)
    assert np.all(np.diff(means[:, 0]) > 0), "outer rings have larger radii"
    for ring in range(3):  # rings reached by patch centres (max radius 0.88)
        assert ring / 4 <= means[ring, 0] < (ring + 1) / 4
    np.testing.assert_allclose(features[8:].reshape(3, 2), np.diff(means, axis=0))
    assert ring_features(z, grid, n_rings=4, differences=False).shape == (8,)


def test_empty_rings_take_the_nearest_filled_ring():
    grid = make_grid((20, 20), patch_size=10, stride=10)  # 4 patches, all at r = 0.5
    z = np.arange(8, dtype=float).reshape(4, 2)
    means = ring_features(z, grid, n_rings=5, differences=False).reshape(5, 2)
    np.testing.assert_allclose(means, np.tile(z.mean(0), (5, 1)))
    with pytest.raises(ValueError, match="n_rings"):
        ring_features(z, grid, n_rings=0)
    with pytest.raises(ValueError, match="shape"):
        ring_features(z[:3], grid)


# -- the estimator ---------------------------------------------------------------
@pytest.fixture(scope="module")
def distorted_set():
    photos = [smooth_image(96, 128, seed=s) for s in range(3)]
    images, params = make_distortion_dataset(photos, n=8, k_range=(-0.2, 0.1), seed=0)
    return images, params


def _regressor(model_dir, **kwargs):
    return DistortionRegressor(model=str(model_dir), device="cpu", num_per_dim=3, batch_size=64, **kwargs)


def test_nested_regressor_params_clone(tiny_model_dir):
    est = _regressor(tiny_model_dir, regressor=Ridge())
    twin = clone(est).set_params(n_rings=2, regressor__alpha=3.0)
    assert twin.n_rings == 2 and twin.regressor.alpha == 3.0 and est.regressor.alpha == 1.0
    assert twin.regressor is not est.regressor


def test_fit_predict_score_shapes(tiny_model_dir, distorted_set):
    images, params = distorted_set
    est = _regressor(tiny_model_dir)
    with pytest.raises(NotFittedError):
        est.predict(images)
    est.fit(images, params[:, 0])
    dim = 16  # the tiny model's embedding size
    assert est.n_features_ == 4 * dim
    with_differences = clone(est).set_params(ring_differences=True).fit(images, params[:, 0])
    assert with_differences.n_features_ == (4 + 3) * dim
    assert est.radial_features(images).shape == (8, est.n_features_)
    predicted = est.predict(images)
    assert predicted.shape == (8,) and np.all(np.isfinite(predicted))
    assert isinstance(est.score(images, params[:, 0]), float)
    # [k1, k2] rows are accepted with target="k1": the k1 column is used
    np.testing.assert_allclose(clone(est).fit(images, params).predict(images), predicted)
    grouped = clone(est).fit(images, params[:, 0], groups=np.arange(8) % 3)
    assert grouped.predict(images).shape == (8,) and not hasattr(grouped.regressor_[-1], "alpha_")

    both = _regressor(tiny_model_dir, target="k1k2", n_rings=2).fit(images, params)
    assert both.predict(images).shape == (8, 2) and both.n_features_ == 2 * dim
    assert isinstance(both.score(images, params), float)


def test_groups_choose_alpha_by_grouped_cross_validation(tiny_model_dir):
    from exifclip.distortion import fit_ring_regressor

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 4)
    features = rng.normal(size=(24, 10)) + 3 * rng.normal(size=(6, 10))[groups]  # photo content dominates
    y = 0.1 * features[:, 0] + 0.01 * rng.normal(size=24)
    grouped = fit_ring_regressor(features, y, groups=groups)
    assert grouped[-1].alpha in np.logspace(-2, 5, 15)
    assert np.corrcoef(grouped.predict(features), y)[0, 1] > 0.9
    assert hasattr(fit_ring_regressor(features, y)[-1], "alpha_"), "without groups: RidgeCV"
    assert fit_ring_regressor(features, y, groups=groups, regressor=Ridge()).alpha == 1.0


def test_a_given_regressor_is_cloned_not_fitted(tiny_model_dir, distorted_set):
    images, params = distorted_set
    ridge = Ridge(alpha=10.0)
    est = _regressor(tiny_model_dir, regressor=ridge).fit(images, params[:, 0])
    assert not hasattr(ridge, "coef_") and est.regressor_ is not ridge and hasattr(est.regressor_, "coef_")


def test_regressor_learns_distortion_of_one_scene(tiny_model_dir):
    # Even a random tiny network sees how distortion changes the local period
    # of a fine grating ring by ring: on new distortions of the same scene the
    # estimate beats predicting the training mean by far.
    y, x = np.mgrid[0:128, 0:160].astype(float)
    grating = np.repeat((128 + 100 * np.sin(2 * np.pi * (0.88 * x + 0.48 * y) / 6.0))[..., None], 3, -1)
    images, params = make_distortion_dataset([grating.astype(np.uint8)], n=24, k_range=(-0.25, 0.15), seed=0)
    est = _regressor(tiny_model_dir).fit(images[:16], params[:16, 0])
    predicted, truth = est.predict(images[16:]), params[16:, 0]
    mean_error = np.abs(truth - params[:16, 0].mean()).mean()
    assert np.abs(predicted - truth).mean() < 0.6 * mean_error
    assert np.corrcoef(predicted, truth)[0, 1] > 0.7


def test_bad_inputs_are_named(tiny_model_dir, distorted_set):
    images, params = distorted_set
    est = _regressor(tiny_model_dir)
    with pytest.raises(ValueError, match="y has 7 rows but X has 8 images"):
        clone(est).fit(images, params[:7, 0])
    with pytest.raises(ValueError, match="NaN"):
        clone(est).fit(images, np.full(8, np.nan))
    with pytest.raises(ValueError, match="target='k1k2' needs y of shape"):
        clone(est).set_params(target="k1k2").fit(images, params[:, 0])
    with pytest.raises(ValueError, match="target='k1' needs y"):
        clone(est).fit(images, np.zeros((8, 3)))
    with pytest.raises(ValueError, match="groups has 3 entries but X has 8 images"):
        clone(est).fit(images, params[:, 0], groups=[0, 1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        clone(est).fit(images[:1], params[:1, 0])
    with pytest.raises(ValueError, match="n_rings"):
        clone(est).set_params(n_rings=0).fit(images, params[:, 0])
    with pytest.raises(ValueError, match="target"):
        clone(est).set_params(target="k2").fit(images, params[:, 0])
    with pytest.raises(ValueError, match="regressor"):
        clone(est).set_params(regressor="ridge").fit(images, params[:, 0])
    with pytest.raises(ValueError, match="batch_size"):
        clone(est).set_params(batch_size=0).fit(images, params[:, 0])
    tiny = [np.zeros((20, 20, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="smaller than one"):
        clone(est).set_params(errors="raise").fit(tiny, [0.0, 0.1])
    with pytest.warns(UserWarning, match="skipped image"), pytest.raises(ValueError, match="none of the 2 images"):
        clone(est).fit(tiny, [0.0, 0.1])
    with pytest.raises(ValueError, match="errors"):
        clone(est).set_params(errors="ignore").fit(images, params[:, 0])


def test_a_bad_image_gives_nan_and_keeps_the_others(tiny_model_dir, distorted_set):
    from exifclip import BatchItemError

    images, params = distorted_set
    est = clone(_regressor(tiny_model_dir)).set_params(errors="skip")
    bad = np.zeros((10, 10, 3), np.uint8)  # smaller than a patch
    est.fit(images[:4] + [bad] + images[4:], np.r_[params[:4, 0], 0.0, params[4:, 0]])
    assert [f.index for f in est.failures_] == [4]
    predicted = est.predict([images[0], bad, images[1]])
    assert np.isnan(predicted[1]) and np.isfinite(predicted[[0, 2]]).all()
    assert [f.index for f in est.failures_] == [1]
    reference = clone(_regressor(tiny_model_dir)).fit(images, params[:, 0]).predict([images[0], images[1]])
    np.testing.assert_allclose(predicted[[0, 2]], reference)
    with pytest.raises(BatchItemError, match="image 1"):
        est.set_params(errors="raise").predict([images[0], bad])
