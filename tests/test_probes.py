"""Camera-property probes: the zero-shot core, the classifier's contract, the linear probe."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from exifclip.exif import exif_to_text
from exifclip.probes import (
    POOLINGS,
    ExifZeroShotClassifier,
    candidate_texts,
    make_linear_probe,
    zero_shot_logits,
    zero_shot_scores,
)

CAMERAS = ["Canon EOS 5D", "NIKON D3200", "iPhone XR"]


def _classifier(model_dir, **params):
    defaults = dict(tag="Model", candidates=CAMERAS, model=str(model_dir), device="cpu", batch_size=64, stride=16)
    return ExifZeroShotClassifier(**{**defaults, **params})


@pytest.fixture
def fitted(tiny_model_dir):
    return _classifier(tiny_model_dir).fit()


# -- functional core ---------------------------------------------------------------
def test_zero_shot_logits_hand_computed():
    images = np.array([[2.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    texts = np.array([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    got = zero_shot_logits(images, texts, 10.0)
    r = 1 / np.sqrt(2)
    expected = [[10.0, 0.0, 10 * r], [6.0, 8.0, 10 * (0.6 + 0.8) * r], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_zero_shot_logits_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same model"):
        zero_shot_logits(np.ones((1, 2)), np.ones((1, 3)), 1.0)
    with pytest.raises(ValueError, match="logit_scale"):
        zero_shot_logits(np.ones((1, 2)), np.ones((1, 2)), 0.0)
    with pytest.raises(ValueError, match="text_embeddings"):
        zero_shot_logits(np.ones((1, 2)), np.ones(2), 1.0)


def test_zero_shot_scores_hand_computed():
    texts = np.eye(2)
    patches = np.array([[1.0, 0.0], [0.6, 0.8]])
    s = 3.0
    logits = s * patches @ texts.T  # [[3, 0], [1.8, 2.4]]
    # mean over patches of log p(class | patch)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(zero_shot_scores(patches, texts, s), log_p.mean(0))
    # the pooled embedding: the normalised mean patch embedding [1.6, 0.8] / |.|
    pooled = np.array([1.6, 0.8]) / np.hypot(1.6, 0.8)
    np.testing.assert_allclose(zero_shot_scores(patches, texts, s, "mean_embedding"), s * pooled)
    # the log of the mean probability
    p = softmax(logits, axis=1).mean(0)
    np.testing.assert_allclose(zero_shot_scores(patches, texts, s, "mean_proba"), np.log(p))
    with pytest.raises(ValueError, match="pooling"):
        zero_shot_scores(patches, texts, s, "max")
    with pytest.raises(ValueError, match="patch_embeddings"):
        zero_shot_scores(np.empty((0, 2)), texts, s)


unit_rows = arrays(
    np.float64, st.tuples(st.integers(1, 6), st.just(4)), elements=st.floats(-1, 1, allow_nan=False)
).filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all())


@settings(max_examples=40, deadline=None)
@given(
    patches=unit_rows,
    texts=arrays(np.float64, (3, 4), elements=st.floats(-1, 1)).filter(
        lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all()
    ),
    scale=st.floats(0.5, 100),
)
def test_mean_log_proba_is_the_pooled_embedding_at_a_lower_temperature(patches, texts, scale):
    # mean_c log softmax = scale * mean cos - const, and mean cos = |m| * cos(m/|m|, t):
    # the same ranking as the pooled embedding, with the logits shrunk by |m| <= 1.
    by_patches = zero_shot_scores(patches, texts, scale)
    pooled = zero_shot_scores(patches, texts, scale, "mean_embedding")
    unit = patches / np.linalg.norm(patches, axis=1, keepdims=True)
    shrink = np.linalg.norm(unit.mean(0))
    # (the pooled embedding is float32, as ExifPatchEmbedder.transform gives it)
    np.testing.assert_allclose(softmax(by_patches), softmax(pooled * shrink), atol=1e-5)
    for pooling in POOLINGS:
        proba = softmax(zero_shot_scores(patches, texts, scale, pooling))
        assert np.isclose(proba.sum(), 1.0) and (proba >= 0).all()


def test_candidate_texts_are_exif_to_text_pairs():
    values = ["Canon EOS 5D", " NIKON D3200 ", "1600"]
    got = candidate_texts("Model", values)
    assert got == [exif_to_text({"Model": v}, tags=["Model"]) for v in values]
    assert candidate_texts("ISO Speed Ratings", [100, 200]) == ["ISO Speed Ratings: 100", "ISO Speed Ratings: 200"]
    with pytest.raises(ValueError, match="template"):
        candidate_texts("Model", values, template="{tag}")
    with pytest.raises(ValueError, match="template"):
        candidate_texts("Model", values, template="{value} {lens}")


@pytest.mark.shared
def test_candidate_texts_match_real_exif(shared_data):
    from exifclip.exif import read_exif

    photo = sorted((shared_data / "digicam").glob("*.JPG"))[0]
    exif = read_exif(photo)
    assert candidate_texts("Model", [exif["Model"]]) == [exif_to_text(exif, tags=["Model"])]


# -- the classifier ------------------------------------------------------------------
def test_fit_sets_classes_texts_and_embeddings(fitted):
    assert fitted.classes_.tolist() == CAMERAS
    assert fitted.texts_ == [f"Model: {c}" for c in CAMERAS]
    assert fitted.text_embeddings_.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(fitted.text_embeddings_, axis=1), 1.0, atol=1e-5)
    model = fitted.embedder_.model_
    assert fitted.logit_scale_ == pytest.approx(float(model.get_logit_scale().detach()))


def test_proba_sums_to_one_and_predictions_agree(fitted, random_images):
    proba = fitted.predict_proba(random_images)
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(fitted.predict_log_proba(random_images)), proba, atol=1e-12)
    scores = fitted.decision_function(random_images)
    assert scores.shape == (3, 3)
    expected = fitted.classes_[proba.argmax(axis=1)]
    assert fitted.predict(random_images).tolist() == expected.tolist()
    assert fitted.classes_[scores.argmax(axis=1)].tolist() == expected.tolist()


def test_proba_is_the_functional_core_on_the_patch_embeddings(tiny_model_dir, random_images):
    for pooling in POOLINGS:
        clf = _classifier(tiny_model_dir, pooling=pooling).fit()
        items = clf.embedder_.transform_patches(random_images)
        expected = [
            softmax(zero_shot_scores(item.embeddings, clf.text_embeddings_, clf.logit_scale_, pooling))
            for item in items
        ]
        np.testing.assert_allclose(clf.predict_proba(random_images), expected, atol=1e-12)


def test_classes_follow_the_candidates_order(tiny_model_dir, random_images):
    forward = _classifier(tiny_model_dir).fit()
    backward = _classifier(tiny_model_dir, candidates=CAMERAS[::-1]).fit()
    assert backward.classes_.tolist() == CAMERAS[::-1]
    np.testing.assert_allclose(
        backward.predict_proba(random_images), forward.predict_proba(random_images)[:, ::-1], atol=1e-6
    )


def test_binary_decision_function_and_integer_candidates(tiny_model_dir, random_images):
    clf = _classifier(tiny_model_dir, tag="ISO Speed Ratings", candidates=[100, 3200]).fit()
    assert clf.texts_ == ["ISO Speed Ratings: 100", "ISO Speed Ratings: 3200"]
    scores = clf.decision_function(random_images)
    assert scores.shape == (3,)
    assert clf.predict(random_images).tolist() == np.where(scores > 0, 3200, 100).tolist()


def test_prompts_override_the_template(tiny_model_dir):
    prompts = [f"Make: Canon, Model: {c}" for c in CAMERAS]
    clf = _classifier(tiny_model_dir, prompts=prompts).fit()
    assert clf.texts_ == prompts
    clf = _classifier(tiny_model_dir, template="Make: X, {tag}: {value}").fit()
    assert clf.texts_[0] == "Make: X, Model: Canon EOS 5D"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(candidates=[]), "candidates"),
        (dict(candidates=None), "candidates"),
        (dict(candidates="Canon EOS 5D"), "candidates"),
        (dict(candidates=["Canon EOS 5D"]), "candidates"),
        (dict(candidates=["Canon EOS 5D", "NIKON D3200", "Canon EOS 5D"]), "candidates.*Canon EOS 5D"),
        (dict(candidates=["Canon EOS 5D", "Canon EOS 5D "]), "identical texts"),
        (dict(candidates=["a", 1]), "candidates"),
        (dict(candidates=["a", ""]), "candidates"),
        (dict(tag=""), "tag"),
        (dict(pooling="max"), "pooling"),
        (dict(template="{tag}"), "template"),
        (dict(prompts=["only one"]), "prompts"),
        (dict(batch_size=0), "batch_size"),
        (dict(errors="ignore"), "errors"),
    ],
)
def test_bad_params_fail_at_fit_naming_the_input(tiny_model_dir, params, match):
    with pytest.raises(ValueError, match=match):
        _classifier(tiny_model_dir, **params).fit()


def test_unknown_label_in_y_is_named(tiny_model_dir):
    with pytest.raises(ValueError, match=r"y has labels.*'PENTAX K-5'"):
        _classifier(tiny_model_dir).fit(None, ["Canon EOS 5D", "PENTAX K-5"])
    _classifier(tiny_model_dir).fit(None, ["Canon EOS 5D", "iPhone XR"])  # known labels are fine


def test_failed_image_gives_nan_and_none(tiny_model_dir, random_images):
    X = [random_images[0], b"not an image"]
    clf = _classifier(tiny_model_dir).fit()  # errors="warn"
    with pytest.warns(UserWarning, match="image 1"):
        proba = clf.predict_proba(X)
    assert np.isnan(proba[1]).all() and np.isclose(proba[0].sum(), 1.0)
    assert [f.index for f in clf.failures_] == [1]
    predicted = clf.set_params(errors="skip").fit().predict(X)
    assert predicted[1] is None and predicted[0] in CAMERAS
    with pytest.raises(ValueError, match="image 1"):
        clf.set_params(errors="raise").fit().predict(X)


def test_score_is_accuracy_and_works_in_a_pipeline(fitted, tiny_model_dir, random_images):
    y = fitted.predict(random_images)
    assert fitted.score(random_images, y) == 1.0
    y_wrong = [CAMERAS[(CAMERAS.index(v) + 1) % 3] for v in y]
    assert fitted.score(random_images, y_wrong) == 0.0
    pipe = Pipeline([("identity", FunctionTransformer()), ("classify", _classifier(tiny_model_dir))])
    pipe.fit(random_images, y)
    assert pipe.predict(random_images).tolist() == y.tolist()
    assert pipe.score(random_images, y) == 1.0


def test_linear_probe_grid_search_over_c_and_patch_size(tiny_model_dir, random_images):
    probe = make_linear_probe(model=str(tiny_model_dir), device="cpu", stride=16, batch_size=64)
    assert [name for name, _ in probe.steps] == ["embed", "scale", "classify"]
    X = [img for img in random_images for _ in range(4)]
    y = ["a", "b", "a"] * 4
    search = GridSearchCV(probe, {"classify__C": [0.1, 1.0], "embed__patch_size": [32, 40]}, cv=2, error_score="raise")
    search.fit(X, y)
    assert search.best_params_["embed__patch_size"] in (32, 40)
    assert set(search.predict(X)) <= {"a", "b"}
    assert search.predict_proba(X).shape == (12, 2)
