"""Localisation and detection metrics: hand-made cases, agreement with sklearn, scorers."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.metrics import (average_precision_score, f1_score, jaccard_score, matthews_corrcoef,
                             roc_auc_score)
from sklearn.model_selection import GridSearchCV, KFold

from exifclip import evaluation as E
from exifclip import metrics as M


def square_mask(shape=(8, 8)):
    mask = np.zeros(shape, bool)
    mask[2:5, 3:7] = True
    return mask


# -- hand-made cases ------------------------------------------------------------------


def test_perfect_map_scores_one_everywhere():
    mask = square_mask()
    heat = mask.astype(np.float32)
    s = M.localization_scores(heat, mask)
    assert s == {"pmap": 1.0, "ap": 1.0, "auc": 1.0, "f1": 1.0, "mcc": 1.0, "best_ciou": 1.0}
    assert M.ciou(mask, mask) == 1.0


def test_inverted_map_is_perfect_for_pmap_but_not_for_ap():
    mask = square_mask()
    inverted = 1.0 - mask.astype(np.float64)
    ap = M.pixel_ap(inverted, mask)
    # every spliced pixel ranked below every authentic one: AP = prevalence
    assert ap == pytest.approx(mask.mean())
    assert ap == pytest.approx(average_precision_score(mask.ravel(), inverted.ravel()))
    assert M.pixel_map_score(inverted, mask) == 1.0
    assert M.best_f1(inverted, mask) == 1.0
    assert M.best_mcc(inverted, mask) == 1.0
    assert M.best_ciou(inverted, mask) == 1.0
    assert M.pixel_auc(inverted, mask) == 1.0
    assert M.ciou(~mask, mask) == 1.0


def test_constant_map_ties_are_one_threshold():
    mask = square_mask()
    heat = np.full(mask.shape, 0.5)
    prevalence = mask.mean()
    assert M.pixel_ap(heat, mask) == pytest.approx(prevalence)
    assert M.pixel_map_score(heat, mask) == pytest.approx(prevalence)
    assert M.pixel_auc(heat, mask) == 0.5
    assert M.best_mcc(heat, mask) == 0.0  # a constant prediction has no correlation
    # best F1: predict everything spliced
    assert M.best_f1(heat, mask) == pytest.approx(2 * mask.sum() / (mask.sum() + mask.size))


def test_partial_ties_match_sklearn():
    mask = np.array([[1, 0, 1, 0, 0, 1]], bool)
    heat = np.array([[0.5, 0.5, 0.9, 0.1, 0.9, 0.5]])
    assert M.pixel_ap(heat, mask) == pytest.approx(average_precision_score(mask.ravel(), heat.ravel()))


def test_random_map_is_near_chance(rng):
    mask = np.zeros((200, 200), bool)
    mask[50:120, 40:160] = True
    heat = rng.random(mask.shape)
    assert M.pixel_ap(heat, mask) == pytest.approx(mask.mean(), abs=0.02)
    assert M.pixel_auc(heat, mask) == pytest.approx(0.5, abs=0.02)
    assert M.best_mcc(heat, mask) < 0.05


def test_ciou_hand_computation():
    mask = np.zeros((4, 5), bool)
    mask[0, :3] = True                   # 3 spliced pixels
    pred = np.zeros((4, 5), bool)
    pred[0, 1:4] = True                  # 3 predicted, 2 overlap
    iou_spliced = 2 / 4                  # |{1,2}| / |{0,1,2,3}|
    iou_authentic = 16 / 18              # 20 - 4 in neither ... / union of the complements
    expected = (iou_spliced + iou_authentic) / 2
    inverse = (jaccard_score(mask.ravel(), ~pred.ravel()) + jaccard_score(~mask.ravel(), pred.ravel())) / 2
    assert expected > inverse
    assert M.ciou(pred, mask) == pytest.approx(expected)
    assert M.ciou(pred.astype(np.uint8), mask.astype(np.uint8)) == pytest.approx(expected)
    # absent class in both: nothing to disagree on
    assert M.ciou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_tilde_on_uint8_is_the_official_pitfall():
    """`~` on a uint8 0/1 mask gives 255/254: both true, so the authentic class covers everything."""
    mask = np.zeros((4, 5), bool)
    mask[0, :3] = True
    pred = np.zeros((4, 5), bool)
    pred[0, 1:4] = True
    m8 = mask.astype(np.uint8)
    assert set(np.unique(~m8)) == {254, 255}            # no zero: every pixel "authentic"
    wrong_neg = np.logical_and(~pred, ~m8).sum() / np.logical_or(~pred, ~m8).sum()
    assert wrong_neg == pytest.approx((~pred).sum() / pred.size)  # just the share of ~pred
    right_neg = np.logical_and(~pred, ~mask).sum() / np.logical_or(~pred, ~mask).sum()
    assert right_neg == pytest.approx(16 / 18)
    assert wrong_neg != pytest.approx(right_neg)
    pos = 2 / 4
    assert M.ciou(pred, m8) == pytest.approx((pos + right_neg) / 2)
    assert M.ciou(pred, m8) != pytest.approx((pos + wrong_neg) / 2)


def test_float64_maps_that_float32_cannot_hold_are_exact():
    mask = np.array([[True, False, False]])
    heat = np.array([[1.0 + 1e-12, 1.0, 0.0]])          # equal in float32, not in float64
    assert M.pixel_ap(heat, mask) == 1.0
    assert M.pixel_map_score(-heat, mask) == 1.0


def test_negative_and_integer_maps():
    mask = square_mask()
    assert M.pixel_ap(np.where(mask, -1.0, -5.0), mask) == 1.0
    assert M.pixel_ap(np.where(mask, 200, 3).astype(np.uint8), mask) == 1.0
    heat = np.where(mask, 0.0, -0.0)                     # -0.0 == 0.0: one tie
    assert M.pixel_ap(heat, mask) == pytest.approx(mask.mean())


# -- agreement with sklearn ---------------------------------------------------------------


def brute_force(heat, mask):
    """Every metric by looping over thresholds with sklearn's own functions."""
    h, y = heat.ravel().astype(np.float64), mask.ravel()
    f1 = mcc = ciou = 0.0
    for t in np.append(np.unique(h), np.inf):
        for pred in (h >= t, h < t):
            f1 = max(f1, f1_score(y, pred, zero_division=0))
            mcc = max(mcc, matthews_corrcoef(y, pred))
            ciou = max(ciou, (jaccard_score(y, pred, zero_division=1)
                              + jaccard_score(~y, ~pred, zero_division=1)) / 2)
    ap = average_precision_score(y, h)
    auc = roc_auc_score(y, h)
    return {"ap": ap, "pmap": max(ap, average_precision_score(y, -h)), "auc": max(auc, 1 - auc),
            "f1": f1, "mcc": mcc, "best_ciou": ciou}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), levels=st.sampled_from([2, 3, 5, 1000]),
       shape=st.tuples(st.integers(1, 7), st.integers(2, 9)), dtype=st.sampled_from(["float32", "float64", "uint8"]))
def test_agrees_with_sklearn(seed, levels, shape, dtype):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < rng.uniform(0.1, 0.9)
    if mask.all() or not mask.any():
        mask.flat[0] = not mask.flat[0]
    heat = (rng.integers(0, levels, shape)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = brute_force(heat, mask)
    got = M.localization_scores(heat, mask)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert M.pixel_ap(heat, mask) == pytest.approx(expected["ap"])
    assert M.best_f1(heat, mask) == pytest.approx(expected["f1"])
    assert M.best_mcc(heat, mask) == pytest.approx(expected["mcc"])
    assert M.best_ciou(heat, mask) == pytest.approx(expected["best_ciou"])


def test_per_class_threshold_ciou_is_the_reference_variant(rng):
    for _ in range(20):
        mask = rng.random((5, 6)) < 0.4
        heat = rng.integers(0, 6, mask.shape).astype(np.float32)
        h, y = heat.ravel(), mask.ravel()
        best = 0.0
        for flip in (False, True):
            preds = [(h >= t) ^ flip for t in np.append(np.unique(h), np.inf)]
            pos = max(jaccard_score(y, p, zero_division=1) for p in preds)
            neg = max(jaccard_score(~y, ~p, zero_division=1) for p in preds)
            best = max(best, (pos + neg) / 2)
        got = M.best_ciou(heat, mask, per_class_thresholds=True)
        assert got == pytest.approx(best)
        assert got >= M.best_ciou(heat, mask) - 1e-12


def test_large_map_matches_sklearn(rng):
    mask = np.zeros((300, 400), bool)
    mask[100:200, 50:300] = True
    heat = np.where(mask, 0.3, 0.0) + rng.random(mask.shape)  # float64: the argsort path
    assert M.pixel_ap(heat, mask) == pytest.approx(average_precision_score(mask.ravel(), heat.ravel()))
    h32 = heat.astype(np.float32)                            # float32: the packed-key path
    assert M.pixel_ap(h32, mask) == pytest.approx(average_precision_score(mask.ravel(), h32.ravel()))
    assert M.pixel_auc(h32, mask) == pytest.approx(roc_auc_score(mask.ravel(), h32.ravel()))


def test_detection_metrics_match_sklearn(rng):
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50) + 0.3 * labels
    assert M.detection_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert M.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    # not permuted: a reversed detector is a bad one
    assert M.roc_auc(-scores, labels) == pytest.approx(1 - roc_auc_score(labels, scores))


# -- errors ---------------------------------------------------------------------------------


def test_errors_are_clear():
    mask = square_mask()
    with pytest.raises(ValueError, match="8x8 but the mask is 4x4"):
        M.pixel_ap(np.zeros((8, 8)), mask[:4, :4])
    with pytest.raises(ValueError, match="no spliced pixel"):
        M.pixel_map_score(np.zeros((8, 8)), np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="spliced everywhere"):
        M.best_f1(np.zeros((8, 8)), np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="NaN"):
        M.best_mcc(np.full((8, 8), np.nan), mask)
    with pytest.raises(ValueError, match="mask > 127"):
        M.pixel_ap(np.zeros((8, 8)), mask.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="2-D"):
        M.pixel_ap(np.zeros((8, 8, 3)), mask)
    with pytest.raises(ValueError, match="both spliced"):
        M.detection_ap([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        M.roc_auc([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0.1, np.nan], [1, 0])


# -- evaluation over a dataset ------------------------------------------------------------------


def result(heatmap, mask=None, score=None):
    return SimpleNamespace(heatmap=heatmap, mask=mask, score=score)


def test_evaluate_localization_counts_and_headline(rng):
    m1 = square_mask()
    m2 = np.zeros((6, 10), bool)
    m2[:, :3] = True
    results = [
        result(m1.astype(np.float32), m1, 0.9),                  # perfect
        result(1 - m2.astype(np.float32), ~m2, 0.8),              # inverted: perfect for permuted metrics
        result(rng.random((5, 5)), np.zeros((5, 5), bool), 0.2),  # authentic
        None,                                                      # the localiser failed
        result(rng.random((5, 5)), None, 0.7),                     # spliced, no mask
        result(rng.random((5, 5)), None, float("nan")),            # spliced, one-class mask, no score
    ]
    masks = [m1, m2, None, None, None, np.ones((5, 5), bool)]
    labels = [1, 1, 0, 1, 1, 1]
    report = E.evaluate_localization(results, masks, labels=labels, names=list("abcdef"))
    assert report.pmap == 1.0 and report.ciou == 1.0 and report.f1 == 1.0 and report.mcc == 1.0
    assert report.best_ciou == 1.0 and report.pixel_auc == 1.0
    assert (report.n_images, report.n_spliced, report.n_authentic) == (6, 5, 1)
    assert (report.n_localized, report.n_no_mask, report.n_single_class, report.n_failed) == (2, 1, 1, 1)
    assert report.n_no_score == 1
    # detection over the 4 scored images: spliced 0.9, 0.8, 0.7 vs authentic 0.2
    assert report.detection_ap == 1.0 and report.roc_auc == 1.0
    text = str(report)
    assert text.splitlines()[0].startswith(M.HEADLINE) and "p-mAP (spliced images only)" in text
    d = report.to_dict()
    assert d["headline"] == {"name": "p-mAP (spliced images only)", "key": "pmap", "value": 1.0}
    assert d["per_image"][0]["name"] == "a" and d["per_image"][3]["error"] == "no result"
    json.dumps(d)  # JSON-ready


def test_evaluate_localization_from_bare_heatmaps():
    mask = square_mask()
    report = E.evaluate_localization([mask * 1.0, np.zeros((8, 8))], [mask, None])
    assert report.pmap == 1.0 and report.ciou is None        # no predicted masks given
    assert report.detection_ap is None                        # no scores given
    assert report.n_spliced == 1 and report.n_authentic == 1  # labels from the masks


def test_evaluate_localization_names_the_bad_image():
    mask = square_mask()
    with pytest.raises(ValueError, match=r"image 1: heatmap is 4x4 but the mask is 8x8"):
        E.evaluate_localization([mask * 1.0, np.zeros((4, 4))], [mask, mask])
    with pytest.raises(ValueError, match="2 results but 1 masks"):
        E.evaluate_localization([mask, mask], [mask])


# -- scikit-learn scorers ----------------------------------------------------------------------


class FakeLocalizer(BaseEstimator):
    """Reads the answer hidden in each fake image; `quality` mixes it with noise."""

    def __init__(self, quality=1.0, seed=0):
        self.quality = quality
        self.seed = seed

    def fit(self, X=None, y=None):
        self.fitted_ = True
        return self

    def localize(self, X):
        rng = np.random.default_rng(self.seed)
        out = []
        for img in X:
            truth = img[..., 0] > 0.5
            heat = (self.quality * truth + (1 - self.quality) * rng.random(truth.shape)).astype(np.float32)
            score = float(truth.mean() * self.quality + rng.random() * (1 - self.quality))
            out.append(SimpleNamespace(heatmap=heat, mask=heat > 0.5, score=score))
        return out

    def predict(self, X):
        return [r.mask for r in self.localize(X)]

    def decision_function(self, X):
        return np.array([r.score for r in self.localize(X)])


def fake_data(rng, n=12):
    X, y = [], []
    for i in range(n):
        mask = np.zeros((16, 16), bool)
        if i % 2 == 0:
            r, c = rng.integers(0, 8, 2)
            mask[r:r + 6, c:c + 7] = True
        X.append(np.repeat(mask[..., None].astype(np.float32), 3, axis=2))
        y.append(mask if mask.any() else None)
    return X, y


def test_scorers_on_a_fake_estimator(rng):
    X, y = fake_data(rng)
    good, bad = FakeLocalizer(1.0).fit(), FakeLocalizer(0.0).fit()
    for name, scorer in E.SCORERS.items():
        assert scorer(good, X, y) == pytest.approx(1.0), name
        assert scorer(bad, X, y) < 1.0, name
    all_at_once = E.localization_scoring(good, X, y)
    assert set(all_at_once) == set(E.SCORERS) and all(v == pytest.approx(1.0) for v in all_at_once.values())
    # detection scorers also take plain labels
    labels = np.array([int(m is not None) for m in y])
    assert E.detection_ap_scorer(good, X, labels) == 1.0


def test_scorers_without_spliced_images_warn_and_give_nan(rng):
    X, y = fake_data(rng)
    authentic = [x for x, m in zip(X, y) if m is None]
    with pytest.warns(UserWarning, match="no spliced image"):
        assert np.isnan(E.pmap_scorer(FakeLocalizer(), authentic, [None] * len(authentic)))
    with pytest.warns(UserWarning, match="spliced and authentic"):
        assert np.isnan(E.roc_auc_scorer(FakeLocalizer(), authentic, [None] * len(authentic)))


@pytest.mark.parametrize("scoring", [E.SCORERS, E.localization_scoring])
def test_grid_search_refits_on_pmap(rng, scoring):
    X, y = fake_data(rng, n=16)
    search = GridSearchCV(FakeLocalizer(), {"quality": [0.0, 0.2, 1.0]}, scoring=scoring, refit="pmap",
                          cv=KFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert search.best_params_ == {"quality": 1.0}
    assert search.cv_results_["mean_test_pmap"][2] == pytest.approx(1.0)
    assert set(E.SCORERS) <= {k[len("mean_test_"):] for k in search.cv_results_ if k.startswith("mean_test_")}
