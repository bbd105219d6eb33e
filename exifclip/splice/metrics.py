"""Splice localisation and detection metrics, computed as the papers compute them.

Conventions
-----------
* A **heatmap** is a real ``HxW`` array, high = spliced. Only the ranking of
  its values matters, so any range works.
* A **mask** is a boolean ``HxW`` array (``0``/``1`` integers are accepted),
  ``True`` = spliced. Heatmap and mask must have the same ``HxW``: nothing is
  resized here.
* A **threshold sweep** predicts "spliced" where ``heatmap >= t`` for every
  distinct heatmap value ``t``, plus the empty prediction. It costs one sort
  of the pixels and cumulative sums, never a Python loop over thresholds
  (:func:`localization_scores` computes every metric from one sweep).
* **Permutation invariance.** Zero-shot self-consistency methods find the
  region that disagrees with the majority but cannot tell which side is the
  splice, so EXIF-SC (Huh et al., ECCV 2018) scores each image with the
  prediction *and its inverse* and keeps the better one ("permuted" metrics);
  "EXIF as Language" (Zheng et al., CVPR 2023) follows it: its evaluator
  (``eval/image_splice/metrics.py`` in github.com/hellomuffin/exif-as-language)
  takes ``max(metric(map), metric(1 - map))`` per image. Every pixel metric
  here but :func:`pixel_ap` does the same. The inverse is taken on the
  ranking (exact), not as ``1 - map`` in floating point, which can merge
  nearly equal values.
* **p-mAP**, the papers' headline localisation number, is the mean over the
  *spliced* images of :func:`pixel_map_score`. Authentic images have no
  spliced pixel, so their AP is undefined: they are left out of every pixel
  metric and only enter the detection metrics. (The official evaluator's
  loop also feeds the authentic images of Columbia and DSO-1, whose AP is
  undefined, into its mean; here p-mAP is over the spliced images only, and
  every output says so.) A spliced image whose mask is all one class is
  likewise left out, and counted (:class:`LocalizationReport`
  ``n_single_class``).
* **cIoU** is EXIF-SC's class-balanced IoU: the mean of the IoU of the
  spliced class and the IoU of the authentic class, permuted as above
  (:func:`ciou`). It is computed on boolean masks: inverting a ``uint8``
  0/1 mask with ``~`` gives 255/254, both "true", which is how the official
  evaluator's negative-class IoU went wrong (it inverts a ``uint8`` tensor).

Per-image functions raise :class:`ValueError` for inputs they cannot score;
:func:`evaluate_localization` and the scorers skip and count those images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "pixel_ap",
    "pixel_map_score",
    "pixel_auc",
    "best_f1",
    "best_mcc",
    "ciou",
    "best_ciou",
    "localization_scores",
    "detection_ap",
    "roc_auc",
    "HEADLINE",
    "as_mask",
    "check_pair",
]

#: The headline metric, named as every output names it.
HEADLINE = "p-mAP (spliced images only)"

# -- input checks ------------------------------------------------------------------


def _where(index: int | None) -> str:
    return "" if index is None else f"image {index}: "


def _as_heatmap(heatmap: Any, index: int | None = None) -> np.ndarray:
    h = np.asarray(heatmap)
    if h.ndim == 3 and h.shape[2] == 1:
        h = h[:, :, 0]
    if h.ndim != 2:
        raise ValueError(f"{_where(index)}heatmap must be a 2-D HxW array, got shape {h.shape}")
    if h.dtype == bool:
        h = h.astype(np.uint8)
    if not (np.issubdtype(h.dtype, np.floating) or np.issubdtype(h.dtype, np.integer)):
        raise ValueError(f"{_where(index)}heatmap must be numeric, got dtype {h.dtype}")
    if np.issubdtype(h.dtype, np.floating) and not np.isfinite(h).all():
        raise ValueError(f"{_where(index)}heatmap contains NaN or infinite values")
    return h


def as_mask(mask: Any, index: int | None = None, what: str = "mask") -> np.ndarray:
    """A ground-truth or predicted mask as an HxW bool array; 0/1 numbers are accepted.

    Raises ``ValueError`` naming the image (``index``) and what is wrong
    (shape, dtype, values other than 0 and 1).

    Examples
    --------
    >>> as_mask([[0, 1], [1, 0]]).tolist()
    [[False, True], [True, False]]
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise ValueError(f"{_where(index)}{what} must be a 2-D HxW array, got shape {m.shape}")
    if m.dtype == bool:
        return m
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"{_where(index)}{what} must be boolean, got dtype {m.dtype}")
    if not ((m == 0) | (m == 1)).all():
        raise ValueError(
            f"{_where(index)}{what} must be boolean or 0/1, got values outside {{0, 1}} "
            f"(e.g. a 0/255 image: pass mask > 127)")
    return m != 0


def check_pair(heatmap: Any, mask: Any, index: int | None = None,
               what: str = "heatmap") -> tuple[np.ndarray, np.ndarray]:
    """A heatmap (or, with ``what="predicted mask"``, a mask) and its ground-truth mask,
    checked to be 2-D arrays of the same HxW; nothing is resized."""
    h = _as_heatmap(heatmap, index) if what == "heatmap" else as_mask(heatmap, index, what)
    m = as_mask(mask, index)
    if h.shape != m.shape:
        raise ValueError(
            f"{_where(index)}{what} is {h.shape[0]}x{h.shape[1]} but the mask is "
            f"{m.shape[0]}x{m.shape[1]}; metrics need the same HxW (nothing is resized)")
    return h, m


def _check_two_classes(m: np.ndarray, index: int | None = None) -> None:
    n_pos = int(np.count_nonzero(m))
    if n_pos == 0:
        raise ValueError(f"{_where(index)}mask has no spliced pixel: pixel metrics are undefined "
                         "(authentic images only count for detection)")
    if n_pos == m.size:
        raise ValueError(f"{_where(index)}mask is spliced everywhere: pixel metrics are undefined")


# -- the sweep ---------------------------------------------------------------------------


def _sort_keys(flat: np.ndarray) -> np.ndarray | None:
    """Monotonic int64 keys of ``flat`` (float order), or None if float32 is not exact."""
    if flat.dtype in (np.float16, np.float32) or (np.issubdtype(flat.dtype, np.integer)
                                                   and flat.dtype.itemsize <= 2):
        f32 = flat.astype(np.float32)
    else:
        f32 = flat.astype(np.float32)
        if not np.array_equal(f32, flat):
            return None
    f32 = f32 + np.float32(0.0)  # -0.0 -> +0.0, so equal values get equal keys
    bits = f32.view(np.int32).astype(np.int64)
    # Negative floats order backwards as integers: flip their 31 magnitude bits.
    np.bitwise_xor(bits, 0x7FFFFFFF, out=bits, where=bits < 0)
    return bits


@dataclass(frozen=True)
class _Sweep:
    """Counts at every threshold, from "nothing predicted" (k=0) to "all" (k=G)."""

    tp: np.ndarray  # spliced pixels predicted spliced, float64, shape (G + 1,)
    n: np.ndarray   # pixels predicted spliced
    pos: int        # spliced pixels
    total: int      # all pixels

    @property
    def neg(self) -> int:
        return self.total - self.pos

    def inverted(self) -> "_Sweep":
        """The sweep of the inverted map: complements of the thresholded sets, reversed."""
        return _Sweep(self.pos - self.tp[::-1], self.total - self.n[::-1], self.pos, self.total)


def _sweep(h: np.ndarray, m: np.ndarray) -> _Sweep:
    big = m.size >= 2**31
    flat_y = m.ravel().astype(np.int64 if big else np.int32)
    keys = _sort_keys(h.ravel())
    if keys is not None:
        # One integer sort carries both the value (high bits) and the label (low bit).
        keys <<= 1
        keys |= flat_y
        keys.sort()
        labels = keys & 1
        keys >>= 1
        values = keys
    else:
        order = np.argsort(h.ravel(), kind="quicksort")
        values = h.ravel()[order]
        labels = flat_y[order]
    # Ascending order; group g (one distinct value) starts at starts[g]. The
    # prediction "value >= v_g" holds the pixels from starts[g] on.
    cum = np.cumsum(labels, dtype=np.int64 if big else np.int32)
    pos, total = int(cum[-1]), int(values.size)
    starts = np.flatnonzero(values[1:] != values[:-1]) + 1
    pos_below = np.concatenate(([0], cum[starts - 1])).astype(np.float64)
    n_below = np.concatenate(([0], starts)).astype(np.float64)
    # Thresholds from the highest value down, after "nothing predicted".
    tp = np.concatenate(([0.0], pos - pos_below[::-1]))
    n = np.concatenate(([0.0], total - n_below[::-1]))
    return _Sweep(tp, n, pos, total)


def _ap(s: _Sweep) -> float:
    # sklearn's step-wise AP: sum over thresholds of (R_k - R_{k-1}) * P_k.
    dtp = np.diff(s.tp)
    precision = s.tp[1:] / s.n[1:]
    return float(np.sum(dtp * precision) / s.pos)


def _auc(s: _Sweep) -> float:
    tpr = s.tp / s.pos
    fpr = (s.n - s.tp) / s.neg
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def _f1(s: _Sweep) -> np.ndarray:
    return 2.0 * s.tp / (s.pos + s.n)


def _mcc(s: _Sweep) -> np.ndarray:
    tp = s.tp
    fp = s.n - tp
    fn = s.pos - tp
    tn = s.neg - fp
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = (tp * tn - fp * fn) / denom
    return np.where(denom > 0, mcc, 0.0)  # sklearn's convention: 0 when undefined


def _class_ious(s: _Sweep) -> tuple[np.ndarray, np.ndarray]:
    tp = s.tp
    tn = s.neg - (s.n - tp)
    iou_spliced = tp / (s.pos + s.n - tp)
    iou_authentic = tn / (s.neg + (s.total - s.n) - tn)
    return iou_spliced, iou_authentic


def _class_iou(s: _Sweep) -> np.ndarray:
    iou_spliced, iou_authentic = _class_ious(s)
    return (iou_spliced + iou_authentic) / 2.0


def _prepare(heatmap: Any, mask: Any) -> _Sweep:
    h, m = check_pair(heatmap, mask)
    _check_two_classes(m)
    return _sweep(h, m)


# -- per-image pixel metrics ----------------------------------------------------------------


def pixel_ap(heatmap: Any, mask: Any) -> float:
    """Average precision of the pixels of one image (not permuted).

    Parameters
    ----------
    heatmap : array-like of shape (H, W)
        Higher = more likely spliced.
    mask : array-like of shape (H, W), bool
        True = spliced. Must contain both classes.

    Returns
    -------
    float
        The value :func:`sklearn.metrics.average_precision_score` gives on the
        flattened pixels, computed in one sort.

    Raises
    ------
    ValueError
        If the shapes differ, the heatmap is not finite, or the mask has only
        one class.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [False, False]])
    >>> pixel_ap(np.array([[0.9, 0.8], [0.1, 0.2]]), mask)
    1.0
    >>> round(pixel_ap(np.array([[0.1, 0.2], [0.9, 0.8]]), mask), 4)  # worst ranking
    0.4167
    """
    return _ap(_prepare(heatmap, mask))


def pixel_map_score(heatmap: Any, mask: Any) -> float:
    """Permuted AP of one image: ``max(AP(map), AP(inverted map))``.

    The per-image term of p-mAP; p-mAP is its mean over the spliced images
    (see :func:`evaluate_localization`).

    Parameters
    ----------
    heatmap : array-like of shape (H, W)
    mask : array-like of shape (H, W), bool
        Must contain both classes.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [False, False]])
    >>> inverted = np.array([[0.1, 0.2], [0.9, 0.8]])
    >>> pixel_map_score(inverted, mask)   # the inverse ranks perfectly
    1.0
    """
    s = _prepare(heatmap, mask)
    return max(_ap(s), _ap(s.inverted()))


def pixel_auc(heatmap: Any, mask: Any) -> float:
    """Permuted pixel ROC AUC of one image: ``max(AUC, 1 - AUC)``.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, False], [False, False]])
    >>> pixel_auc(np.array([[0.0, 1.0], [1.0, 1.0]]), mask)
    1.0
    """
    auc = _auc(_prepare(heatmap, mask))
    return max(auc, 1.0 - auc)


def best_f1(heatmap: Any, mask: Any) -> float:
    """Best pixel F1 over all thresholds of the map and of its inverse.

    Parameters
    ----------
    heatmap : array-like of shape (H, W)
    mask : array-like of shape (H, W), bool
        Must contain both classes.

    Returns
    -------
    float
        ``max`` over thresholds ``t`` and over the map and its inverse of the
        F1 of ``heatmap >= t`` (the official evaluator's "optimal F1", with
        permutation).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [False, False]])
    >>> best_f1(np.array([[0.9, 0.9], [0.1, 0.1]]), mask)
    1.0
    >>> round(best_f1(np.array([[0.9, 0.1], [0.9, 0.1]]), mask), 4)
    0.6667
    """
    s = _prepare(heatmap, mask)
    return float(max(_f1(s).max(), _f1(s.inverted()).max()))


def best_mcc(heatmap: Any, mask: Any) -> float:
    """Best Matthews correlation over thresholds, permuted: ``max |MCC|``.

    Inverting the prediction negates the MCC, so the permuted best is the
    largest absolute MCC over thresholds. Undefined MCCs (a constant
    prediction) count as 0, as in :func:`sklearn.metrics.matthews_corrcoef`.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [False, False]])
    >>> best_mcc(np.array([[0.1, 0.1], [0.9, 0.9]]), mask)
    1.0
    """
    s = _prepare(heatmap, mask)
    return float(np.abs(_mcc(s)).max())


def ciou(pred_mask: Any, mask: Any) -> float:
    """Class-balanced IoU of a predicted mask, permuted, as EXIF-SC defines it.

    ``cIoU(p, m) = (IoU(p, m) + IoU(~p, ~m)) / 2``, the mean IoU of the
    spliced and the authentic class, and the result is
    ``max(cIoU(p, m), cIoU(~p, m))`` because the method does not know which
    segment is the splice (EXIF-SC, Huh et al. ECCV 2018, localisation
    benchmark; the official EXIF-as-Language evaluator computes the same two
    class IoUs and the same max over the inverted map). ``~`` is a boolean
    NOT here: both masks are converted to bool first.

    Parameters
    ----------
    pred_mask : array-like of shape (H, W), bool or 0/1
    mask : array-like of shape (H, W), bool or 0/1

    Returns
    -------
    float
        In [0, 1]. The IoU of a class absent from both masks counts as 1
        (nothing to disagree on), so a mask and prediction that are both
        empty score 1.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((4, 4), bool); mask[:2, :2] = True      # 4 spliced pixels
    >>> pred = np.zeros((4, 4), bool); pred[:2, :3] = True      # 6 predicted
    >>> # spliced IoU 4/6, authentic IoU 10/12 -> (0.6667 + 0.8333) / 2
    >>> ciou(pred, mask)
    0.75
    >>> ciou(~pred, mask)   # the inverse scores the same
    0.75
    """
    p, m = check_pair(pred_mask, mask, what="predicted mask")
    return float(max(_ciou_once(p, m), _ciou_once(~p, m)))


def _ciou_once(p: np.ndarray, m: np.ndarray) -> float:
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        union = np.count_nonzero(a | b)
        return 1.0 if union == 0 else np.count_nonzero(a & b) / union

    return (iou(p, m) + iou(~p, ~m)) / 2.0


def best_ciou(heatmap: Any, mask: Any, per_class_thresholds: bool = False) -> float:
    """Best :func:`ciou` over all thresholds of a heatmap, permuted.

    Parameters
    ----------
    heatmap : array-like of shape (H, W)
    mask : array-like of shape (H, W), bool
        Must contain both classes.
    per_class_thresholds : bool, default False
        False: one threshold makes one binary mask, which is then scored, so
        the value is the cIoU of a mask the method could actually output.
        True: the best spliced-class IoU and the best authentic-class IoU
        are found at *separate* thresholds and averaged, as the official
        EXIF-as-Language evaluator (and the EXIF-SC reimplementation it
        derives from) does; never lower than the default. Use it only to
        compare with numbers computed that way.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [False, False]])
    >>> best_ciou(np.array([[0.2, 0.3], [0.9, 0.7]]), mask)
    1.0
    >>> h = np.array([[0.9, 0.5], [0.5, 0.1]])
    >>> round(best_ciou(h, mask), 4), round(best_ciou(h, mask, per_class_thresholds=True), 4)
    (0.5833, 0.6667)
    """
    s = _prepare(heatmap, mask)
    if per_class_thresholds:
        def split(sw: _Sweep) -> float:
            spliced, authentic = _class_ious(sw)
            return (spliced.max() + authentic.max()) / 2.0

        return float(max(split(s), split(s.inverted())))
    return float(max(_class_iou(s).max(), _class_iou(s.inverted()).max()))


def localization_scores(heatmap: Any, mask: Any) -> dict[str, float]:
    """Every permuted pixel metric of one image from a single sort.

    Returns
    -------
    dict
        ``{"pmap", "ap", "auc", "f1", "mcc", "best_ciou"}``: see
        :func:`pixel_map_score`, :func:`pixel_ap`, :func:`pixel_auc`,
        :func:`best_f1`, :func:`best_mcc`, :func:`best_ciou`.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, False], [False, False]])
    >>> scores = localization_scores(np.array([[0.9, 0.1], [0.2, 0.3]]), mask)
    >>> scores["pmap"], scores["f1"], scores["mcc"]
    (1.0, 1.0, 1.0)
    """
    s = _prepare(heatmap, mask)
    inv = s.inverted()
    ap = _ap(s)
    auc = _auc(s)
    return {
        "pmap": max(ap, _ap(inv)),
        "ap": ap,
        "auc": max(auc, 1.0 - auc),
        "f1": float(max(_f1(s).max(), _f1(inv).max())),
        "mcc": float(np.abs(_mcc(s)).max()),
        "best_ciou": float(max(_class_iou(s).max(), _class_iou(inv).max())),
    }


# -- detection ---------------------------------------------------------------------------------


def _check_detection(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("detection scores contain NaN or infinite values "
                         f"(at indices {np.flatnonzero(~np.isfinite(s))[:10].tolist()})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (authentic) or 1 (spliced)")
    y = y.astype(int)
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("detection metrics need both spliced (1) and authentic (0) images, "
                         f"got only label {int(y[0]) if y.size else 'none'}")
    return s, y


def detection_ap(scores: Any, labels: Any) -> float:
    """Image-level average precision: are spliced images scored above authentic ones?

    Parameters
    ----------
    scores : array-like of shape (n_images,)
        Detection scores, higher = more likely spliced.
    labels : array-like of shape (n_images,)
        1 = spliced, 0 = authentic; both must occur.

    Returns
    -------
    float
        :func:`sklearn.metrics.average_precision_score`. Not permuted: a
        detector must know which way is "spliced".

    Examples
    --------
    >>> detection_ap([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import average_precision_score

    s, y = _check_detection(scores, labels)
    return float(average_precision_score(y, s))


def roc_auc(scores: Any, labels: Any) -> float:
    """Image-level ROC AUC (:func:`sklearn.metrics.roc_auc_score`), not permuted.

    Examples
    --------
    >>> roc_auc([0.9, 0.2, 0.3, 0.1], [1, 1, 0, 0])
    0.75
    """
    from sklearn.metrics import roc_auc_score

    s, y = _check_detection(scores, labels)
    return float(roc_auc_score(y, s))


# -- evaluation over a dataset -------------------------------------------------------------------
