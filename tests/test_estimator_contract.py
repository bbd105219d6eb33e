"""The contract every exifclip estimator keeps (scikit-learn conventions).

New estimators join ``ESTIMATORS``; each entry builds an unfitted instance
on the tiny test model and names one parameter to vary in a grid search.
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
from exifclip.hub import clear_model_cache
from exifclip.modeling import ExifClipModel


def _embedder(model_dir):
    return ExifPatchEmbedder(model=str(model_dir), device="cpu", batch_size=64)


ESTIMATORS = {"ExifPatchEmbedder": (_embedder, "patch_size", [32, 40])}


@pytest.fixture(params=sorted(ESTIMATORS))
def case(request, tiny_model_dir):
    build, param, values = ESTIMATORS[request.param]
    return build(tiny_model_dir), param, values


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


def test_fitted_attributes_and_not_fitted_error(case, random_images):
    from sklearn.exceptions import NotFittedError

    est, _, _ = case
    with pytest.raises(NotFittedError):
        est.transform(random_images)
    est.fit(random_images)
    assert hasattr(est, "model_") and isinstance(est.model_, ExifClipModel)


def test_bad_params_fail_at_fit(case):
    est, _, _ = case
    with pytest.raises(ValueError, match="batch_size"):
        clone(est).set_params(batch_size=0).fit()
    with pytest.raises(ValueError, match="errors"):
        clone(est).set_params(errors="ignore").fit()


def test_joblib_round_trip_gives_same_output_on_cpu(case, random_images):
    est, _, _ = case
    est.fit()
    before = est.transform(random_images)
    buffer = stdio.BytesIO()
    joblib.dump(est, buffer)
    assert buffer.tell() < 100_000, "weights are reloaded by name, not pickled"
    clear_model_cache()  # as in a new process
    buffer.seek(0)
    restored = joblib.load(buffer)
    assert next(restored.model_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.transform(random_images), before, atol=1e-6)


def test_pipeline_and_grid_search_load_the_model_once(case, random_images, rng, monkeypatch):
    est, param, values = case
    clear_model_cache()
    loads = []
    original = ExifClipModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExifClipModel, "from_pretrained", classmethod(counting))
    X = [img for img in random_images for _ in range(4)]
    y = np.array([0, 1, 0] * 4)
    pipe = Pipeline([("embed", est), ("clf", LogisticRegression(max_iter=200))])
    search = GridSearchCV(pipe, {f"embed__{param}": values}, cv=2, error_score="raise")
    search.fit(X, y)
    assert len(loads) == 1, f"the model was loaded {len(loads)} times"
    assert search.best_params_[f"embed__{param}"] in values
    assert search.predict(X).shape == (len(X),)
