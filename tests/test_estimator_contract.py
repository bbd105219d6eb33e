"""The contract every exifclip estimator keeps (scikit-learn conventions).

New estimators join ``ESTIMATORS``; each entry builds an unfitted instance
on the tiny test model and names one parameter to vary in a grid search.
``DistortionRegressor`` is supervised (``fit`` needs images and targets), so
``tests/test_distortion.py`` runs the same checks on it with its own data.
"""

from __future__ import annotations

import inspect
import io as stdio

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from exifclip.embedder import ExifPatchEmbedder
from exifclip.evaluation import pmap_scorer
from exifclip.hub import clear_model_cache
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


# name: (build, a parameter to vary, its values, a method that needs fitting, a fitted attribute, search)
ESTIMATORS = {
    "ExifPatchEmbedder": (_embedder, "patch_size", [32, 40], "transform", "model_", _embedder_search),
    "SpliceLocalizer": (_localizer, "method", ["meanshift", "ncut"], "decision_function", "embedder_",
                        _localizer_search),
    "ExifZeroShotClassifier": (_zero_shot, "pooling", ["mean_log_proba", "mean_proba"], "predict_proba",
                               "text_embeddings_", _zero_shot_search),
}


@pytest.fixture(params=sorted(ESTIMATORS))
def case(request, tiny_model_dir):
    build, param, values, *_ = ESTIMATORS[request.param]
    return build(tiny_model_dir), param, values


@pytest.fixture(params=sorted(ESTIMATORS))
def full_case(request, tiny_model_dir):
    build, param, values, method, attr, search = ESTIMATORS[request.param]
    return build(tiny_model_dir), param, values, method, attr, search


def test_init_stores_params_untouched_and_does_nothing_else(case):
    est, _, _ = case
    signature = inspect.signature(type(est).__init__)
    params = [p for p in signature.parameters if p != "self"]
    assert sorted(est.get_params()) == sorted(params)
    assert not [k for k in vars(est) if k.endswith("_")], "nothing fitted in __init__"
    for name in params:
        assert getattr(est, name) is est.get_params()[name]


def test_clone_and_set_params(case):
    est, param, values = case
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    twin.set_params(**{param: values[1]})
    assert getattr(twin, param) == values[1] and getattr(est, param) != values[1]


def test_fitted_attributes_and_not_fitted_error(full_case, random_images):
    from sklearn.exceptions import NotFittedError

    est, _, _, method, attr, _ = full_case
    with pytest.raises(NotFittedError):
        getattr(est, method)(random_images)
    est.fit()
    assert hasattr(est, attr)
    getattr(est, method)(random_images)


def test_bad_params_fail_at_fit(case):
    est, _, _ = case
    with pytest.raises(ValueError, match="batch_size"):
        clone(est).set_params(batch_size=0).fit()
    with pytest.raises(ValueError, match="errors"):
        clone(est).set_params(errors="ignore").fit()


def test_output_does_not_depend_on_fit_data(full_case, random_images):
    est, _, _, method, _, _ = full_case
    a = getattr(clone(est).fit(), method)(random_images)
    b = getattr(clone(est).fit(random_images[:1]), method)(random_images)
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-6)


def test_joblib_round_trip_gives_same_output_on_cpu(full_case, random_images):
    est, _, _, method, _, _ = full_case
    est.fit()
    before = np.asarray(getattr(est, method)(random_images), float)
    buffer = stdio.BytesIO()
    joblib.dump(est, buffer)
    assert buffer.tell() < 100_000, "weights are reloaded by name, not pickled"
    clear_model_cache()  # as in a new process
    buffer.seek(0)
    restored = joblib.load(buffer)
    np.testing.assert_allclose(np.asarray(getattr(restored, method)(random_images), float), before, atol=1e-6)


def test_pipeline_and_grid_search_load_the_model_once(full_case, random_images, monkeypatch):
    est, param, values, _, _, make_search = full_case
    clear_model_cache()
    loads = []
    original = ExifClipModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExifClipModel, "from_pretrained", classmethod(counting))
    search, X, y = make_search(est, param, values, random_images)
    search.fit(X, y)
    assert len(loads) == 1, f"the model was loaded {len(loads)} times"
    assert set(search.best_params_.values()) <= set(values)
