"""Zero-shot splice localisation and detection from patch embeddings.

The method of Zheng, Shrivastava and Owens ("EXIF as Language", CVPR 2023),
after EXIF-SC (Huh et al., ECCV 2018), as pure functions on arrays:

1. :func:`consistency` - every pair of patches gets the distance
   ``d = 1 - cos``; each patch spreads it onto the grid *cells* it covers and
   each cell pair averages what it received: the cell-level consistency
   ``R`` (``n_cells x n_cells``).
2. :func:`mean_shift_heatmap` - the rows of ``R`` are points; mean shift finds
   the majority mode; the heatmap is that mode's row: each cell's distance to
   the majority.
3. :func:`ncut_mask` - a normalised cut of the cells into two groups.
4. :func:`to_image` - a cell map to pixels, at the positions the cells cover.
5. :func:`detection_score` - one number per image: is it spliced at all?

:class:`~exifclip.splice.localizer.SpliceLocalizer` is the estimator shell over them.

Cells. With stride ``s`` and patch size ``P``, cell ``(r, c)`` is the pixel
block ``[r*s, (r+1)*s) x [c*s, (c+1)*s)`` and a patch covers the
``spread = max(1, P // s)`` cells along each axis that lie inside it, as in
the official code (``eval/image_splice/exif_sc.py``), so ``R`` is the paper's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..patches import PatchGrid

__all__ = [
    "DETECTION_SCORES",
    "MASK_METHODS",
    "SpliceResult",
    "calibrate_threshold",
    "cell_shape",
    "consistency",
    "coverage_matrix",
    "detection_score",
    "localize_embeddings",
    "mean_shift_heatmap",
    "ncut_mask",
    "split_two_means",
    "to_image",
]


# -- cells --------------------------------------------------------------------
def _spread(grid: PatchGrid) -> int:
    return max(1, grid.patch_size // grid.stride)


def cell_shape(grid: PatchGrid) -> tuple[int, int]:
    """``(n_cell_rows, n_cell_cols)`` of the consistency map of ``grid``.

    Examples
    --------
    >>> from exifclip.patches import make_grid
    >>> cell_shape(make_grid((480, 640), 124))   # stride 17, spread 7
    (27, 37)
    """
    k = _spread(grid)
    return grid.n_rows + k - 1, grid.n_cols + k - 1


def coverage_matrix(grid: PatchGrid) -> np.ndarray:
    """Which cells each patch covers: ``(n_patches, n_cells)`` of 0/1.

    Patches and cells are both row-major.
    """
    cover_r, cover_c = _axis_coverage(grid)
    hc, wc = cover_r.shape[1], cover_c.shape[1]
    # patch (i, j) covers cell (r, c) iff row i covers r and column j covers c
    return np.einsum("ir,jc->ijrc", cover_r, cover_c).reshape(grid.n_patches, hc * wc)


def _axis_coverage(grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, which cell rows (columns) each patch row (column) covers."""
    k = _spread(grid)
    hc, wc = cell_shape(grid)
    cover_r = np.zeros((grid.n_rows, hc))
    cover_c = np.zeros((grid.n_cols, wc))
    np.put_along_axis(cover_r, np.arange(grid.n_rows)[:, None] + np.arange(k)[None, :], 1.0, axis=1)
    np.put_along_axis(cover_c, np.arange(grid.n_cols)[:, None] + np.arange(k)[None, :], 1.0, axis=1)
    return cover_r, cover_c


# -- 1. consistency ---------------------------------------------------------------
#: Cells above which the consistency map is pooled (see :func:`cell_pooling`).
#: Mean shift costs ``cells^3``; the paper's grid on a 4000x3000 photo has
#: about 700 cells, a 640x480 one about 1000, but a 200x200 image with 64-px
#: patches has 2500 (stride 4, a cell per 4 pixels) and took seconds.
MAX_CELLS = 1600


def cell_pooling(grid: PatchGrid, max_cells: int | None = MAX_CELLS) -> int:
    """Side of the square blocks of cells pooled so that at most ``max_cells`` remain.

    1 (no pooling) for the paper's grid on ordinary photos; ``None`` never pools.

    Examples
    --------
    >>> from exifclip.patches import make_grid
    >>> cell_pooling(make_grid((3000, 4000), 124)), cell_pooling(make_grid((200, 200), 64))
    (1, 2)
    """
    if max_cells is None:
        return 1
    if max_cells < 1:
        raise ValueError(f"max_cells must be a positive integer or None, got {max_cells!r}")
    hc, wc = cell_shape(grid)
    factor = 1
    while -(-hc // factor) * -(-wc // factor) > max_cells:
        factor += 1
    return factor


def _pool_cells(cell_means: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Mean of the cell means over ``factor x factor`` blocks (ragged at the edges).

    ``1 - mean(m_a) . mean(m_b)`` is the mean of ``1 - m_a . m_b`` over the
    pairs of the two blocks, so the pooled ``R`` is exactly the block average
    of the paper's ``R``."""
    hc, wc = shape
    m = cell_means.reshape(hc, wc, -1)
    rows = np.add.reduceat(m, np.arange(0, hc, factor), axis=0)
    sums = np.add.reduceat(rows, np.arange(0, wc, factor), axis=1)
    counts = np.outer(np.diff(np.r_[np.arange(0, hc, factor), hc]), np.diff(np.r_[np.arange(0, wc, factor), wc]))
    return (sums / counts[..., None]).reshape(-1, m.shape[-1])


def _unpool(cell_map: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """A pooled cell map back on the full cell grid (each block's value repeated)."""
    hc, wc = shape
    coarse = cell_map.reshape(-(-hc // factor), -(-wc // factor))
    return np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)[:hc, :wc].reshape(-1)


def consistency(embeddings: np.ndarray, grid: PatchGrid, pool: int = 1) -> np.ndarray:
    """The paper's cell-level consistency ``R``.

    ``R[a, b]`` is the mean of ``1 - cos(z_p, z_q)`` over all patches ``p``
    covering cell ``a`` and ``q`` covering cell ``b`` (self pairs included,
    as in the official code). Since the mean of ``1 - z_p . z_q`` is
    ``1 - m_a . m_b`` with ``m_a`` the mean embedding over the patches that
    cover ``a``, it is computed as ``1 - M M^T`` with ``M = C^T Z / n``: two
    matrix products, no loop over pairs.

    Parameters
    ----------
    embeddings : ndarray of shape (n_patches, dim)
        Patch embeddings, row-major over ``grid`` (normalised here).
    grid : PatchGrid
    pool : int, default=1
        Average blocks of ``pool x pool`` cells first (:func:`cell_pooling`):
        the result is the block average of the unpooled ``R``.

    Returns
    -------
    ndarray of shape (n_cells, n_cells), float64
        Symmetric, in ``[0, 2]``; reshape to ``cell_shape(grid) * 2`` for the
        4-D view (with ``pool > 1``, the pooled cell grid's shape).

    Examples
    --------
    >>> import numpy as np
    >>> from exifclip.patches import make_grid
    >>> g = make_grid((8, 8), patch_size=4, stride=4)
    >>> z = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    >>> consistency(z, g)[3].round(2).tolist()
    [1.0, 1.0, 1.0, 0.0]
    """
    z = np.asarray(embeddings, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != grid.n_patches:
        raise ValueError(f"expected embeddings of shape ({grid.n_patches}, dim) for this grid, got {z.shape}")
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    cell_means = _cell_means(z, grid)
    if pool > 1:
        cell_means = _pool_cells(cell_means, cell_shape(grid), pool)
    r = 1.0 - cell_means @ cell_means.T
    return np.clip(r, 0.0, 2.0)


def _cell_means(z: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """``C^T Z / n``: the coverage is separable (rows x columns), so the sum over
    the patches covering each cell is two small products, not one big one."""
    cover_r, cover_c = _axis_coverage(grid)
    dim = z.shape[1]
    per_row = z.reshape(grid.n_rows, grid.n_cols, dim).transpose(0, 2, 1) @ cover_c  # (rows, dim, wc)
    sums = (cover_r.T @ per_row.reshape(grid.n_rows, -1)).reshape(cover_r.shape[1], dim, cover_c.shape[1])
    counts = np.outer(cover_r.sum(0), cover_c.sum(0))
    return (sums.transpose(0, 2, 1) / counts[..., None]).reshape(-1, dim)


_FLOAT32_ABOVE = 256  # cells; below this mean shift runs in float64


# -- 2. mean shift -----------------------------------------------------------------
def _squared_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.maximum(sq, 0.0, out=sq)


def mean_shift_heatmap(R: np.ndarray, bandwidth_percentile: float = 10.0, n_iter: int = 5) -> np.ndarray:
    """Each cell's distance to the majority mode of ``R``'s rows.

    The paper's mean shift: the points are the rows of ``R``; the bandwidth
    is the ``bandwidth_percentile``-th percentile of all pairwise row
    distances (self pairs included); each of ``n_iter`` iterations moves
    every point to the mean of the current positions of the original points
    within the bandwidth (flat kernel); the mode is the mean of the shifted
    points that have the most original points within the bandwidth.

    Differences from the official loop (``mean_shift`` in
    ``eval/image_splice/exif_sc.py``), which updates points one by one in
    place: here all points move at once (vectorised), and a point left with
    no neighbour stays where it is instead of becoming NaN.

    Degenerate inputs are defined, never an error: one cell gives
    ``[R[0, 0]]``; identical rows (all patches alike, or zero bandwidth)
    give the common row; ties for the mode are averaged.

    Parameters
    ----------
    R : ndarray of shape (n_cells, n_cells)
    bandwidth_percentile : float, default=10
    n_iter : int, default=5

    Returns
    -------
    ndarray of shape (n_cells,), float64
        High values are cells inconsistent with the majority.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.array([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [1, 1, 1, 0]], float)
    >>> mean_shift_heatmap(R).tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    points = np.asarray(R, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != points.shape[1]:
        raise ValueError(f"R must be a square matrix, got shape {points.shape}")
    n = points.shape[0]
    if n == 1:
        return points[0].copy()
    if n > _FLOAT32_ABOVE:
        # Large maps: the O(n^3) products in float32 (twice as fast); R is in
        # [0, 2], so distances keep ~1e-6 relative precision.
        points = points.astype(np.float32)
    points_sq = (points * points).sum(1)
    sq_dist = _squared_distances(points, points, points_sq)
    bandwidth = float(np.percentile(np.sqrt(sq_dist), bandwidth_percentile))
    # Distances come from a Gram matrix, exact to ~1e-8 of the row norms (1e-6
    # in float32): the tolerance keeps a point and its duplicates in its window.
    radius = bandwidth + 1e-6 * max(1.0, float(np.sqrt(points_sq.max())))
    radius_sq = radius * radius
    shifted = points
    for _ in range(n_iter):
        near = sq_dist <= radius_sq
        counts = near.sum(1)
        moved = (near.astype(points.dtype) @ shifted) / np.maximum(counts, 1)[:, None].astype(points.dtype)
        shifted = np.where(counts[:, None] > 0, moved, shifted)
        sq_dist = _squared_distances(shifted, points, points_sq)
    support = (sq_dist <= radius_sq).sum(1)
    return shifted[support == support.max()].mean(axis=0, dtype=np.float64)


# -- 3. normalised cut ---------------------------------------------------------------
def split_two_means(values: np.ndarray) -> np.ndarray:
    """Best split of 1-D values into two groups (exact 1-D 2-means).

    Returns a bool array, True for the group of larger values; all False if
    the values are constant.

    Examples
    --------
    >>> split_two_means(np.array([0.1, 0.9, 0.15, 0.8])).tolist()
    [False, True, False, True]
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2 or np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
        return np.zeros(v.shape, bool)
    order = np.sort(v)
    csum, csq = np.cumsum(order), np.cumsum(order**2)
    k = np.arange(1, v.size)  # size of the low group
    low_sse = csq[:-1] - csum[:-1] ** 2 / k
    high_sum, high_sq = csum[-1] - csum[:-1], csq[-1] - csq[:-1]
    high_sse = high_sq - high_sum**2 / (v.size - k)
    best = int(np.argmin(low_sse + high_sse))
    threshold = 0.5 * (order[best] + order[best + 1])
    return v > threshold


def ncut_mask(R: np.ndarray, seed: int = 0) -> np.ndarray:
    """Normalised cut of the cells into two groups; True marks the smaller.

    The affinity is ``max(1 - R, 0)`` (the official code feeds ``1 - R`` to
    scikit-learn's spectral clustering). The cut is the relaxed normalised
    cut of Shi and Malik (2000): the second eigenvector of
    ``D^-1/2 W D^-1/2`` (Lanczos from a start vector drawn with ``seed``),
    rescaled by ``D^-1/2`` and split by exact 1-D 2-means. The same input
    and seed always give the same mask.

    Parameters
    ----------
    R : ndarray of shape (n_cells, n_cells)
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n_cells,), bool
        True for the smaller group (the candidate splice); all False when
        there is nothing to split.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.ones((5, 5)); R[:3, :3] = 0; R[3:, 3:] = 0
    >>> ncut_mask(R).tolist()
    [False, False, False, True, True]
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    w = np.maximum(1.0 - np.asarray(R, dtype=np.float64), 0.0)
    n = w.shape[0]
    if n < 3:
        return np.zeros(n, bool)
    degree = np.maximum(w.sum(1), 1e-12)
    inv_sqrt = 1.0 / np.sqrt(degree)
    s = w * inv_sqrt[:, None] * inv_sqrt[None, :]
    v0 = np.random.default_rng(seed).standard_normal(n)
    try:
        _, vectors = eigsh(s, k=2, which="LA", v0=v0)
    except ArpackNoConvergence:
        _, vectors = np.linalg.eigh(s)
        vectors = vectors[:, -2:]
    second = vectors[:, 0] * inv_sqrt  # eigsh sorts ascending: column 0 is the second largest
    group = split_two_means(second)
    if group.sum() * 2 > n or (group.sum() * 2 == n and group[0]):
        group = ~group
    return group


# -- 4. pixels -----------------------------------------------------------------------
def to_image(cell_map: np.ndarray, grid: PatchGrid, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Put a per-cell map onto the image's pixels.

    Cell ``(r, c)`` paints exactly its block ``[r*s, (r+1)*s) x [c*s, (c+1)*s)``;
    the strip past the last cell's block (where fewer patches reach) takes
    the last cell's value. The official code instead resizes the cell map
    bilinearly over the whole image, which stretches it: a region appears
    shifted by up to the uncovered margin and blurred over neighbouring
    cells.

    Parameters
    ----------
    cell_map : ndarray of shape (n_cells,) or cell_shape(grid)
    grid : PatchGrid
    shape : tuple, optional
        ``(H, W)``; defaults to the grid's image size.

    Returns
    -------
    ndarray of shape (H, W), same dtype as ``cell_map``

    Examples
    --------
    >>> from exifclip.patches import make_grid
    >>> g = make_grid((6, 6), patch_size=4, stride=2)   # spread 2: 3 x 3 cells
    >>> to_image(np.arange(9), g)[:, 0].tolist()
    [0, 0, 3, 3, 6, 6]
    """
    hc, wc = cell_shape(grid)
    cells = np.asarray(cell_map).reshape(hc, wc)
    height, width = (grid.height, grid.width) if shape is None else (int(shape[0]), int(shape[1]))
    s = grid.stride
    # Repeat each cell over its block (fast copies), then extend the last
    # row/column of cells over the remaining strip, or crop.
    n_r, n_c = min(hc, -(-height // s)), min(wc, -(-width // s))
    out = np.repeat(np.repeat(cells[:n_r, :n_c], s, axis=0), s, axis=1)[:height, :width]
    if out.shape != (height, width):
        out = np.pad(out, ((0, height - out.shape[0]), (0, width - out.shape[1])), mode="edge")
    return np.ascontiguousarray(out)


# -- 5. detection ----------------------------------------------------------------------
def _score_mean(R, heatmap):
    return float(np.mean(R))


def _score_heatmap_p95(R, heatmap):
    return float(np.percentile(heatmap, 95))


def _score_heatmap_spread(R, heatmap):
    return float(np.percentile(heatmap, 95) - np.percentile(heatmap, 50))


DETECTION_SCORES = {
    "mean": _score_mean,  # the paper's: mean of R over all cell pairs
    "heatmap_p95": _score_heatmap_p95,  # how far the most inconsistent 5 % of cells are from the mode
    "heatmap_spread": _score_heatmap_spread,  # same, relative to the typical cell
}


def detection_score(R: np.ndarray, method: str = "mean", heatmap: np.ndarray | None = None) -> float:
    """One number per image; higher means more likely spliced.

    Parameters
    ----------
    R : ndarray of shape (n_cells, n_cells)
    method : {"mean", "heatmap_p95", "heatmap_spread"}, default="mean"
        ``"mean"`` is the paper's score (mean of ``R``). The others use the
        mean-shift heatmap (computed if not given).
    heatmap : ndarray of shape (n_cells,), optional

    Examples
    --------
    >>> detection_score(np.array([[0.0, 1.0], [1.0, 0.0]]))
    0.5
    """
    if method not in DETECTION_SCORES:
        raise ValueError(f"unknown detection score {method!r}; known: {', '.join(DETECTION_SCORES)}")
    if heatmap is None and method != "mean":
        heatmap = mean_shift_heatmap(R)
    return DETECTION_SCORES[method](np.asarray(R), heatmap)


def calibrate_threshold(heatmaps: list, masks: list, n_bins: int = 256) -> float:
    """The global heatmap threshold that maximises the mean per-image F1.

    Heatmaps are on an absolute [0, 1] scale, so one threshold means the same
    on every image. Each image's pixels are histogrammed once (``n_bins``
    bins over [0, 1]); F1 at every bin edge follows from cumulative sums.

    Examples
    --------
    >>> h = np.array([[0.1, 0.2], [0.7, 0.8]]); m = h > 0.5
    >>> 0.2 <= calibrate_threshold([h], [m]) < 0.7
    True
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = np.zeros(n_bins + 1)
    for heatmap, mask in zip(heatmaps, masks):
        h = np.clip(np.asarray(heatmap, np.float64), 0, 1)
        m = np.asarray(mask, bool)
        if h.shape != m.shape:
            raise ValueError(f"heatmap {h.shape} and mask {m.shape} differ in shape")
        pos = np.histogram(h[m], bins=edges)[0]
        neg = np.histogram(h[~m], bins=edges)[0]
        # pixels strictly above edge k are predicted spliced: counts from the top
        tp = np.concatenate([np.cumsum(pos[::-1])[::-1], [0]])
        fp = np.concatenate([np.cumsum(neg[::-1])[::-1], [0]])
        fn = m.sum() - tp
        total += 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    # threshold between bin k-1 and k: the mask is "heatmap > edges[k]" up to binning
    return float(edges[int(np.argmax(total))])


# -- the estimator -------------------------------------------------------------------
@dataclass
class SpliceResult:
    """What :meth:`SpliceLocalizer.localize` says about one image.

    Attributes
    ----------
    heatmap : ndarray of shape (H, W), float32 in [0, 1]
        Each pixel's cell distance ``1 - cos`` to the majority mode, clipped
        to [0, 1]: 0 = same traces as most of the image; high = inconsistent
        with the majority. An absolute scale, not stretched per image.
    mask : ndarray of shape (H, W), bool
        The region that disagrees most with the rest. A finding only when
        ``flagged`` is True: otherwise nothing was found at the localiser's
        ``alarm_rate`` and the mask is what a splice would have been.
    score : float
        Detection score (higher = more likely spliced).
    false_alarm_rate : float or None
        The share of authentic photos of unseen cameras that score at least
        ``score`` (:class:`~exifclip.splice.calibration.ScoreCalibration`);
        ``None`` when the model has no calibration for these settings.
    flagged : bool or None
        ``false_alarm_rate <= alarm_rate``: the photo is reported as likely
        spliced; ``None`` without a calibration.
    grid : PatchGrid
    cell_map : ndarray of shape cell_shape(grid), float32
        The heatmap per cell, before clipping.
    scores : dict
        Every detection score of :data:`DETECTION_SCORES` (``score`` is one of them).
    timings : dict
        Seconds spent embedding and post-processing.
    """

    heatmap: np.ndarray
    mask: np.ndarray
    score: float
    grid: PatchGrid
    cell_map: np.ndarray
    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    false_alarm_rate: float | None = None
    flagged: bool | None = None


#: How the mask is made: threshold the mean-shift heatmap, or a normalised cut.
MASK_METHODS = ("meanshift", "ncut")


def localize_embeddings(
    embeddings: np.ndarray,
    grid: PatchGrid,
    method: str = "meanshift",
    threshold: float | None = None,
    score_method: str = "mean",
    seed: int = 0,
    max_cells: int | None = MAX_CELLS,
) -> SpliceResult:
    """Heatmap, mask and score of one image from its patch embeddings.

    ``threshold=None`` splits the cell heatmap by 1-D 2-means (method
    ``"meanshift"``); a float thresholds the heatmap. Method ``"ncut"`` takes
    the mask from :func:`ncut_mask` and the heatmap from mean shift. Grids
    with more than ``max_cells`` cells are analysed on pooled blocks of cells
    (:func:`cell_pooling`), which bounds the cost on small images with a fine
    stride; ``max_cells=None`` never pools.
    """
    start = time.perf_counter()
    shape = cell_shape(grid)
    pool = cell_pooling(grid, max_cells)
    R = consistency(embeddings, grid, pool=pool)
    cells = mean_shift_heatmap(R)
    if method == "ncut":
        cell_mask = ncut_mask(R, seed=seed)
    elif threshold is None:
        cell_mask = split_two_means(cells)
    else:
        cell_mask = cells > threshold
    scores = {name: detection_score(R, name, heatmap=cells) for name in DETECTION_SCORES}
    if pool > 1:
        cells, cell_mask = _unpool(cells, shape, pool), _unpool(cell_mask, shape, pool)
    score = scores[score_method]
    hc, wc = cell_shape(grid)
    heatmap = to_image(np.clip(cells, 0.0, 1.0).astype(np.float32), grid)
    mask = to_image(cell_mask, grid)
    return SpliceResult(
        heatmap=heatmap,
        mask=mask,
        score=score,
        grid=grid,
        cell_map=cells.reshape(hc, wc).astype(np.float32),
        scores=scores,
        timings={"postprocess_s": time.perf_counter() - start},
    )
