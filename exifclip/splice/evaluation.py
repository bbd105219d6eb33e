"""Benchmark-level evaluation: the report over many images, and sklearn scorers.

Built on the per-image functions of :mod:`exifclip.splice.metrics` (see its
conventions: permuted pixel metrics, p-mAP over spliced images only, cIoU on
boolean masks).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .metrics import (
    HEADLINE,
    as_mask,
    check_pair,
    best_f1,
    best_mcc,
    ciou,
    detection_ap,
    localization_scores,
    pixel_map_score,
    roc_auc,
)

__all__ = [
    "evaluate_localization",
    "LocalizationReport",
    "pmap_scorer",
    "ciou_scorer",
    "f1_scorer",
    "mcc_scorer",
    "detection_ap_scorer",
    "roc_auc_scorer",
    "localization_scoring",
    "SCORERS",
]

_DESCRIPTIONS = {
    "pmap": HEADLINE + ": mean over spliced images of max(AP(map), AP(inverted map)); the headline",
    "ciou": "cIoU of the predicted masks (EXIF-SC class-balanced IoU, permuted), spliced images only",
    "best_ciou": "cIoU at each image's best heatmap threshold (oracle), spliced images only",
    "f1": "pixel F1 at each image's best threshold, permuted, spliced images only",
    "mcc": "pixel MCC at each image's best threshold, permuted, spliced images only",
    "pixel_auc": "pixel ROC AUC, permuted, spliced images only",
    "detection_ap": "image-level average precision of the scores, all scored images",
    "roc_auc": "image-level ROC AUC of the scores, all scored images",
}


@dataclass
class LocalizationReport:
    """Every metric over a dataset, with the counts behind them.

    Localisation metrics are means over the *spliced* images whose mask has
    both classes (``n_localized``); ``None`` where nothing could be scored.
    The headline is ``pmap``, printed as "p-mAP (spliced images only)".

    Attributes
    ----------
    pmap, ciou, best_ciou, f1, mcc, pixel_auc : float or None
        See :data:`LocalizationReport.descriptions`.
    detection_ap, roc_auc : float or None
        Image-level, over every image with a score; ``None`` without scores
        or without both classes.
    n_images, n_spliced, n_authentic : int
    n_localized : int
        Spliced images that entered the pixel metrics.
    n_no_mask : int
        Spliced images without a mask (detection only).
    n_single_class : int
        Spliced images whose mask is all one class (left out of pixel metrics).
    n_failed : int
        Images with no result (``None``: the localiser skipped them).
    n_no_score : int
        Images left out of detection because their score was missing or NaN.
    per_image : list of dict
        ``index``, ``name``, ``label``, ``score`` and each pixel metric.
    """

    pmap: float | None = None
    ciou: float | None = None
    best_ciou: float | None = None
    f1: float | None = None
    mcc: float | None = None
    pixel_auc: float | None = None
    detection_ap: float | None = None
    roc_auc: float | None = None
    n_images: int = 0
    n_spliced: int = 0
    n_authentic: int = 0
    n_localized: int = 0
    n_no_mask: int = 0
    n_single_class: int = 0
    n_failed: int = 0
    n_no_score: int = 0
    per_image: list = field(default_factory=list, repr=False)

    descriptions = _DESCRIPTIONS
    headline = HEADLINE

    _METRICS = ("pmap", "ciou", "best_ciou", "f1", "mcc", "pixel_auc", "detection_ap", "roc_auc")
    _COUNTS = ("n_images", "n_spliced", "n_authentic", "n_localized", "n_no_mask", "n_single_class",
               "n_failed", "n_no_score")

    def to_dict(self, per_image: bool = True) -> dict:
        """A JSON-ready dict: ``headline``, ``metrics``, ``descriptions``, ``counts``, ``per_image``."""
        out = {
            "headline": {"name": HEADLINE, "key": "pmap", "value": self.pmap},
            "metrics": {k: getattr(self, k) for k in self._METRICS},
            "descriptions": dict(_DESCRIPTIONS),
            "counts": {k: getattr(self, k) for k in self._COUNTS},
        }
        if per_image:
            out["per_image"] = list(self.per_image)
        return out

    def __str__(self) -> str:
        def fmt(v: float | None) -> str:
            return "   n/a" if v is None else f"{v:6.4f}"

        loc = f"n={self.n_localized} spliced"
        det = f"n={self.n_images - self.n_failed - self.n_no_score} images"
        rows = [
            (HEADLINE, self.pmap, loc),
            ("cIoU (predicted masks)", self.ciou, loc),
            ("cIoU (best threshold)", self.best_ciou, loc),
            ("F1 (best threshold)", self.f1, loc),
            ("MCC (best threshold)", self.mcc, loc),
            ("pixel AUC", self.pixel_auc, loc),
            ("detection AP", self.detection_ap, det),
            ("detection ROC AUC", self.roc_auc, det),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {fmt(v)}  {note}" for name, v, note in rows]
        lines.append(
            f"images: {self.n_images} ({self.n_spliced} spliced, {self.n_authentic} authentic); "
            f"pixel metrics on spliced images only; left out: {self.n_no_mask} without mask, "
            f"{self.n_single_class} with a one-class mask, {self.n_failed} failed")
        return "\n".join(lines)


def _get(result: Any, attr: str) -> Any:
    return getattr(result, attr, None)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate_localization(results: Sequence[Any], masks: Sequence[Any], labels: Sequence[int] | None = None,
                          scores: Sequence[float] | None = None,
                          names: Sequence[str] | None = None) -> LocalizationReport:
    """Score a localiser's outputs on a dataset.

    Parameters
    ----------
    results : sequence of SpliceResult, heatmap arrays or None
        Per image, either an object with ``heatmap`` (and optionally
        ``mask`` and ``score``), e.g. :class:`exifclip.splice.SpliceResult`,
        or a bare ``HxW`` heatmap. ``None`` marks an image the localiser
        could not process (counted in ``n_failed``, left out).
    masks : sequence of bool arrays or None
        Ground truth, the same ``HxW`` as each heatmap; ``None`` for an
        authentic image (or a spliced one without a mask).
    labels : sequence of {0, 1}, optional
        1 = spliced. Default: 1 where the mask has a spliced pixel, else 0.
    scores : sequence of float, optional
        Detection scores. Default: each result's ``score`` when it has one.
    names : sequence of str, optional
        Shown in ``per_image``.

    Returns
    -------
    LocalizationReport
        ``pmap`` is the headline, "p-mAP (spliced images only)".

    Raises
    ------
    ValueError
        If the lengths differ, or a heatmap and its mask differ in size (the
        message names the image index).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((4, 4), bool); mask[:2] = True
    >>> heat = mask.astype(np.float32)
    >>> report = evaluate_localization([heat, np.zeros((4, 4))], [mask, None],
    ...                                scores=[0.9, 0.1])
    >>> report.pmap, report.n_spliced, report.n_authentic, report.detection_ap
    (1.0, 1, 1, 1.0)
    >>> print(str(report).splitlines()[0])
    p-mAP (spliced images only)  1.0000  n=1 spliced
    """
    results = list(results)
    masks = list(masks)
    n = len(results)
    if len(masks) != n:
        raise ValueError(f"got {n} results but {len(masks)} masks")
    for arg, what in ((labels, "labels"), (scores, "scores"), (names, "names")):
        if arg is not None and len(arg) != n:
            raise ValueError(f"got {n} results but {len(arg)} {what}")

    report = LocalizationReport(n_images=n)
    per_metric: dict[str, list[float]] = {k: [] for k in ("pmap", "ciou", "best_ciou", "f1", "mcc", "pixel_auc")}
    det_scores: list[float] = []
    det_labels: list[int] = []
    for i, (result, mask) in enumerate(zip(results, masks)):
        mask_arr = None if mask is None else as_mask(mask, i)
        if labels is not None:
            label = int(labels[i])
            if label not in (0, 1):
                raise ValueError(f"image {i}: label must be 0 or 1, got {labels[i]!r}")
        else:
            label = int(mask_arr is not None and bool(mask_arr.any()))
        report.n_spliced += label
        report.n_authentic += 1 - label
        row: dict[str, Any] = {"index": i, "name": None if names is None else str(names[i]), "label": label}
        report.per_image.append(row)
        if result is None:
            report.n_failed += 1
            row["error"] = "no result"
            continue
        heatmap = result if isinstance(result, np.ndarray) else _get(result, "heatmap")
        if heatmap is None:
            raise ValueError(f"image {i}: expected a heatmap array or an object with .heatmap, "
                             f"got {type(result).__name__}")
        score = scores[i] if scores is not None else _get(result, "score")
        row["score"] = None if score is None else float(score)
        if score is None or not math.isfinite(float(score)):
            report.n_no_score += 1
        else:
            det_scores.append(float(score))
            det_labels.append(label)
        if label != 1:
            continue
        if mask_arr is None:
            report.n_no_mask += 1
            continue
        h, m = check_pair(heatmap, mask_arr, i)
        if not m.any() or m.all():
            report.n_single_class += 1
            continue
        s = localization_scores(h, m)
        row.update({k: s[k] for k in ("pmap", "f1", "mcc", "best_ciou")}, pixel_auc=s["auc"])
        for k in ("pmap", "f1", "mcc", "best_ciou"):
            per_metric[k].append(s[k])
        per_metric["pixel_auc"].append(s["auc"])
        pred = None if isinstance(result, np.ndarray) else _get(result, "mask")
        if pred is not None:
            row["ciou"] = ciou(check_pair(pred, m, i, what="predicted mask")[0], m)
            per_metric["ciou"].append(row["ciou"])
        report.n_localized += 1
    for k, values in per_metric.items():
        setattr(report, k, _mean(values))
    if len(set(det_labels)) == 2:
        report.detection_ap = detection_ap(det_scores, det_labels)
        report.roc_auc = roc_auc(det_scores, det_labels)
    return report


# -- scikit-learn scorers ----------------------------------------------------------------------------
#
# ``scorer(estimator, X, y)`` callables for GridSearchCV / cross_validate. ``y`` is
# a list of ground-truth masks with None for authentic images; the detection
# scorers also accept a plain array of 0/1 labels.


def _labels_from_y(y: Sequence[Any]) -> np.ndarray:
    out = []
    for item in y:
        if item is None:
            out.append(0)
        elif np.ndim(item) == 0:
            out.append(int(item))
        else:
            out.append(int(np.asarray(item).any()))
    return np.asarray(out, dtype=int)


def _pixel_score(estimator: Any, X: Any, y: Sequence[Any], metric: Callable[[Any, np.ndarray], float],
                 uses: str) -> float:
    y = list(y)
    results = estimator.localize(X)
    if len(results) != len(y):
        raise ValueError(f"localize returned {len(results)} results for {len(y)} masks")
    values = []
    for i, (r, mask) in enumerate(zip(results, y)):
        if r is None or mask is None or np.ndim(mask) == 0:
            continue
        m = as_mask(mask, i)
        if not m.any() or m.all():
            continue
        values.append(metric(getattr(r, uses), m))
    if not values:
        warnings.warn("no spliced image with a two-class mask in this split: score is NaN", UserWarning,
                      stacklevel=3)
        return float("nan")
    return float(np.mean(values))


def pmap_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """p-mAP (spliced images only) of ``estimator.localize(X)`` against masks ``y``.

    Usable as ``scoring=`` in :class:`sklearn.model_selection.GridSearchCV`;
    ``y`` holds a bool mask per image, ``None`` for authentic ones. NaN (with
    a warning) if no image of ``X`` is spliced with a two-class mask.
    """
    return _pixel_score(estimator, X, y, pixel_map_score, "heatmap")


def ciou_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """Mean :func:`ciou` of the predicted masks (``localize(X)[i].mask``), spliced images only."""
    return _pixel_score(estimator, X, y, ciou, "mask")


def f1_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """Mean :func:`best_f1` of the heatmaps, spliced images only."""
    return _pixel_score(estimator, X, y, best_f1, "heatmap")


def mcc_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """Mean :func:`best_mcc` of the heatmaps, spliced images only."""
    return _pixel_score(estimator, X, y, best_mcc, "heatmap")


def _detection_inputs(estimator: Any, X: Any, y: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels_from_y(list(y))
    scores = np.asarray(estimator.decision_function(X), dtype=np.float64).ravel()
    if scores.size != labels.size:
        raise ValueError(f"decision_function returned {scores.size} scores for {labels.size} images")
    ok = np.isfinite(scores)
    if not ok.all():
        warnings.warn(f"{int((~ok).sum())} images without a score (NaN) left out of detection",
                      UserWarning, stacklevel=3)
    return scores[ok], labels[ok]


def _detection_score(metric: Callable, estimator: Any, X: Any, y: Sequence[Any]) -> float:
    scores, labels = _detection_inputs(estimator, X, y)
    if labels.size == 0 or labels.min() == labels.max():
        warnings.warn("detection needs spliced and authentic images in the split: score is NaN",
                      UserWarning, stacklevel=3)
        return float("nan")
    return metric(scores, labels)


def detection_ap_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """:func:`detection_ap` of ``estimator.decision_function(X)``; labels from ``y``."""
    return _detection_score(detection_ap, estimator, X, y)


def roc_auc_scorer(estimator: Any, X: Any, y: Sequence[Any]) -> float:
    """:func:`roc_auc` of ``estimator.decision_function(X)``; labels from ``y``."""
    return _detection_score(roc_auc, estimator, X, y)


def localization_scoring(estimator: Any, X: Any, y: Sequence[Any]) -> dict[str, float]:
    """Every scorer's value from a single ``localize(X)`` call.

    Pass as ``GridSearchCV(scoring=localization_scoring, refit="pmap")`` to
    localise each split once instead of once per metric (what a dict of
    scorers costs). Detection uses each result's ``score``.

    Returns
    -------
    dict
        Keys of :data:`SCORERS`; NaN where a metric is undefined on the split.
    """
    y = list(y)
    results = list(estimator.localize(X))
    if len(results) != len(y):
        raise ValueError(f"localize returned {len(results)} results for {len(y)} masks")
    masks = [None if (m is None or np.ndim(m) == 0) else m for m in y]
    labels = _labels_from_y(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = evaluate_localization(results, masks, labels=labels)
    out = {k: getattr(report, k) for k in SCORERS}
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


#: Scorers by name, for ``GridSearchCV(scoring=SCORERS, refit="pmap")``.
SCORERS: dict[str, Callable[[Any, Any, Sequence[Any]], float]] = {
    "pmap": pmap_scorer,
    "ciou": ciou_scorer,
    "f1": f1_scorer,
    "mcc": mcc_scorer,
    "detection_ap": detection_ap_scorer,
    "roc_auc": roc_auc_scorer,
}
