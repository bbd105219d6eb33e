"""The contract every exifclip estimator keeps (scikit-learn conventions).

New estimators join ``ESTIMATORS``; each entry builds an unfitted instance
on the tiny test model, names one parameter to vary in a grid search, and
says what ``fit`` takes (nothing for the zero-shot ones, images and targets
for ``DistortionRegressor``).
"""

from __future__ import annotations

import inspect
import io as stdio
from collections.abc import Callable
from dataclasses import dataclass

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from exifclip._base import EMBEDDING_PARAMETERS
from exifclip.distortion import DistortionRegressor
from exifclip.embedder import ExifPatchEmbedder
from exifclip.splice.evaluation import pmap_scorer
from exifclip.modeling.hub import clear_model_cache
from exifclip.modeling import ExifClipModel
from exifclip.probes import ExifZeroShotClassifier
from exifclip.splice import SpliceLocalizer


def _embedder(model_dir):
    return ExifPatchEmbedder(model=str(model_dir), device="cpu", batch_size=64)


def _localizer(model_dir):
    # stride 8: the default grid of these tiny images has stride 1 and a cell per pixel
    return SpliceLocalizer(model=str(model_dir), device="cpu", batch_size=64, stride=8)


def _zero_shot(model_dir):
    return ExifZeroShotClassifier(candidates=["a", "b"], model=str(model_dir), device="cpu", batch_size=64, stride=16)


def _zero_shot_search(est, param, values, images):
    """Zero shot: fit only validates y against the candidates; scored by accuracy."""
    X = [img for img in images for _ in range(2)]
    return GridSearchCV(est, {param: values}, cv=2, error_score="raise"), X, ["a", "b"] * 3


def _embedder_search(est, param, values, images):
    """Embeddings feed a classifier; y is a class per image."""
    X = [img for img in images for _ in range(4)]
    y = np.array([0, 1, 0] * 4)
    pipe = Pipeline([("est", est), ("clf", LogisticRegression(max_iter=200))])
    return GridSearchCV(pipe, {f"est__{param}": values}, cv=2, error_score="raise"), X, y


def _localizer_search(est, param, values, images):
    """The localiser is scored by p-mAP; y is a mask per image."""
    X = [img for img in images for _ in range(2)]
    y = []
    for img in X:
        mask = np.zeros(img.shape[:2], bool)
        mask[: img.shape[0] // 2] = True
        y.append(mask)
    search = GridSearchCV(est, {param: values}, cv=2, scoring=pmap_scorer, error_score="raise")
    return search, X, y


def _regressor(model_dir):
    return DistortionRegressor(model=str(model_dir), device="cpu", batch_size=64, num_per_dim=3)


def _k1(images):
    """Supervised fit data: the images and a made-up k1 per image (the contract, not accuracy)."""
    return images, np.linspace(-0.2, 0.1, len(images))


def _regressor_search(est, param, values, images):
    X = [img for img in images for _ in range(4)]
    return GridSearchCV(est, {param: values}, cv=2, error_score="raise"), *_k1(X)


def _no_fit_data(images):
    return ()


@dataclass
class Case:
    build: Callable  # model_dir -> unfitted estimator
    param: str  # a parameter to vary in a grid search ...
    values: list  # ... and its values
    method: str  # a method that needs fitting
    attr: str  # a fitted attribute
    search: Callable  # (est, param, values, images) -> (GridSearchCV, X, y)
    fit_data: Callable = _no_fit_data  # images -> fit arguments
    zero_shot: bool = True  # fit learns nothing from data


ESTIMATORS = {
    "ExifPatchEmbedder": Case(_embedder, "patch_size", [32, 40], "transform", "model_", _embedder_search),
    "SpliceLocalizer": Case(_localizer, "method", ["meanshift", "ncut"], "decision_function", "embedder_",
                            _localizer_search),
    "ExifZeroShotClassifier": Case(_zero_shot, "pooling", ["mean_log_proba", "mean_proba"], "predict_proba",
                                   "text_embeddings_", _zero_shot_search),
    "DistortionRegressor": Case(_regressor, "n_rings", [1, 2], "predict", "regressor_", _regressor_search,
                                fit_data=_k1, zero_shot=False),
}


@pytest.fixture(params=sorted(ESTIMATORS))
def case(request, tiny_model_dir):
    spec = ESTIMATORS[request.param]
    return spec.build(tiny_model_dir), spec


def test_init_stores_params_untouched_and_does_nothing_else(case):
    est, _ = case
    signature = inspect.signature(type(est).__init__)
    params = [p for p in signature.parameters if p != "self"]
    assert sorted(est.get_params()) == sorted(params)
    assert not [k for k in vars(est) if k.endswith("_")], "nothing fitted in __init__"
    for name in params:
        assert getattr(est, name) is est.get_params()[name]


def test_every_parameter_is_constrained_and_the_shared_ones_are_there(case):
    est, _ = case
    params = set(est.get_params(deep=False))
    assert set(type(est)._parameter_constraints) == params, "each parameter is checked in fit"
    assert set(EMBEDDING_PARAMETERS) <= params, "every image estimator takes the shared parameters"


def test_clone_and_set_params(case):
    est, spec = case
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    twin.set_params(**{spec.param: spec.values[1]})
    assert getattr(twin, spec.param) == spec.values[1] and getattr(est, spec.param) != spec.values[1]


def test_fitted_attributes_and_not_fitted_error(case, random_images):
    from sklearn.exceptions import NotFittedError

    est, spec = case
    with pytest.raises(NotFittedError):
        getattr(est, spec.method)(random_images)
    est.fit(*spec.fit_data(random_images))
    assert hasattr(est, spec.attr) and est.failures_ == []
    getattr(est, spec.method)(random_images)


def test_bad_params_fail_at_fit_naming_them(case, random_images):
    est, spec = case
    data = spec.fit_data(random_images)
    with pytest.raises(ValueError, match="batch_size"):
        clone(est).set_params(batch_size=0).fit(*data)
    with pytest.raises(ValueError, match="errors"):
        clone(est).set_params(errors="ignore").fit(*data)
    with pytest.raises(ValueError, match="num_per_dim"):
        clone(est).set_params(num_per_dim=2.5).fit(*data)


def test_shared_parameters_reach_the_embedder(case, random_images):
    est, spec = case
    est.set_params(max_pixels=10**6, allow_truncated=True, dtype="float32").fit(*spec.fit_data(random_images))
    embedder = est if isinstance(est, ExifPatchEmbedder) else est.embedder_
    for name in EMBEDDING_PARAMETERS:
        assert embedder.get_params()[name] == est.get_params()[name], name


def test_output_does_not_depend_on_fit_data(case, random_images):
    est, spec = case
    if not spec.zero_shot:
        pytest.skip("a supervised estimator learns from its fit data")
    a = getattr(clone(est).fit(), spec.method)(random_images)
    b = getattr(clone(est).fit(random_images[:1]), spec.method)(random_images)
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-6)


def test_joblib_round_trip_gives_same_output_on_cpu(case, random_images):
    est, spec = case
    est.fit(*spec.fit_data(random_images))
    before = np.asarray(getattr(est, spec.method)(random_images), float)
    buffer = stdio.BytesIO()
    joblib.dump(est, buffer)
    assert buffer.tell() < 100_000, "weights are reloaded by name, not pickled"
    clear_model_cache()  # as in a new process
    buffer.seek(0)
    restored = joblib.load(buffer)
    np.testing.assert_allclose(np.asarray(getattr(restored, spec.method)(random_images), float), before, atol=1e-6)


def test_pipeline_and_grid_search_load_the_model_once(case, random_images, monkeypatch):
    est, spec = case
    clear_model_cache()
    loads = []
    original = ExifClipModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExifClipModel, "from_pretrained", classmethod(counting))
    search, X, y = spec.search(est, spec.param, spec.values, random_images)
    search.fit(X, y)
    assert len(loads) == 1, f"the model was loaded {len(loads)} times"
    assert set(search.best_params_.values()) <= set(spec.values)


def _saved(images, folder) -> list[str]:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(folder / f"img{i}.png"))
        Image.fromarray(img).save(paths[-1])
    return paths


def test_numpy_arrays_of_paths_series_and_generators_are_lists_of_paths(case, random_images, tmp_path):
    """The way researchers hold paths: ``np.array(paths)`` (str or object dtype), a Series, a generator."""
    est, spec = case
    paths = _saved(random_images, tmp_path)
    est.fit(*spec.fit_data(random_images))
    method = getattr(est, spec.method)
    want = np.asarray(method(paths), float)
    inputs = {
        "str array": np.array(paths),
        "object array": np.array(paths, dtype=object),
        "column": np.array(paths, dtype=object)[:, None],
        "generator": (p for p in paths),
    }
    try:
        import pandas as pd

        inputs["Series"] = pd.Series(paths, index=[10, 20, 30])
    except ImportError:
        pass
    for kind, X in inputs.items():
        got = np.asarray(method(X), float)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=kind)
        assert est.failures_ == [], kind


def test_grid_search_takes_a_numpy_array_of_paths(case, random_images, tmp_path):
    """Cross-validation indexes X: a NumPy array of paths must survive that (it used to fail every fit)."""
    est, spec = case
    search, X, y = spec.search(est, spec.param, spec.values, random_images)
    paths = _saved(X, tmp_path)
    search.fit(np.array(paths, dtype=object), y)
    assert set(search.best_params_.values()) <= set(spec.values)
