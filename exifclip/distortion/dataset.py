"""Distorted copies of photos with known coefficients: training and test data for
:class:`~exifclip.distortion.regressor.DistortionRegressor`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..io import load_image
from .lens import check_warp_options, distort

__all__ = ["make_distortion_dataset"]


def _check_range(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name} must be finite with low <= high, got {value!r}")
    return low, high


def make_distortion_dataset(
    images: Sequence[Any],
    n: int,
    k_range: tuple[float, float],
    seed: int = 0,
    *,
    k2_range: tuple[float, float] = (0.0, 0.0),
    model: str = "division",
    center: Any = None,
    return_source_index: bool = False,
):
    """Distorted copies of photos with their coefficients, deterministic by seed.

    Sample ``i`` distorts photo ``source[i]`` with ``k1`` and ``k2`` drawn
    uniformly from ``k_range`` and ``k2_range``. Every photo is used
    ``n // len(images)`` or one more times (a shuffled round robin), so
    grouped cross-validation by photo stays balanced. Each photo is decoded
    once, when its first sample is made.

    Parameters
    ----------
    images : sequence of image sources
        Undistorted photos (paths, arrays, ...).
    n : int
        Number of samples.
    k_range : (float, float)
        Range of ``k1`` (``k1 < 0`` barrel), in half-diagonals of the
        distorted images.
    seed : int, default=0
    k2_range : (float, float), default=(0, 0)
    model : {"division", "brown"}, default="division"
    center : (float, float), optional
        Distortion centre (fractions of width and height).
    return_source_index : bool, default=False
        Also return which photo each sample came from (the groups for
        :class:`sklearn.model_selection.GroupKFold`).

    Returns
    -------
    distorted : list of ndarray (h, w, 3) uint8
    params : ndarray of shape (n, 2), float64
        ``[k1, k2]`` of each sample.
    source_index : ndarray of shape (n,), int
        Only with ``return_source_index=True``.

    Examples
    --------
    >>> photo = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    >>> images, params = make_distortion_dataset([photo], n=3, k_range=(-0.2, 0.1), seed=0)
    >>> len(images), params.shape, bool(np.all(params[:, 1] == 0))
    (3, (3, 2), True)
    """
    sources = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    if not sources:
        raise ValueError("images is empty: give at least one photo to distort")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    k1_low, k1_high = _check_range("k_range", k_range)
    k2_low, k2_high = _check_range("k2_range", k2_range)
    model, center = check_warp_options(model, center)
    rng = np.random.default_rng(seed)
    source_index = rng.permutation(np.arange(n) % len(sources))
    params = np.column_stack([rng.uniform(k1_low, k1_high, n), rng.uniform(k2_low, k2_high, n)])
    distorted: list[np.ndarray | None] = [None] * n
    for s in np.unique(source_index):
        photo = load_image(sources[s])
        for i in np.flatnonzero(source_index == s):
            distorted[i] = distort(photo, params[i, 0], params[i, 1], model=model, center=center)
    if return_source_index:
        return distorted, params, source_index
    return distorted, params
