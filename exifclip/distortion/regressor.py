"""Regress radial lens distortion from patch embeddings.

:class:`DistortionRegressor` estimates ``k1`` (or ``k1, k2``) of a photo from
its patch embeddings pooled over concentric rings (:func:`ring_features`):
radial distortion is a function of the radius alone, and grows with it. The
functional core is :func:`patch_radii`, :func:`ring_features` and
:func:`fit_ring_regressor` (the warps are in :mod:`exifclip.distortion.lens`,
training data in :mod:`exifclip.distortion.dataset`); the estimator validates,
holds the embedder and the regressor, and calls them. Ring radii are normalised per image (half-diagonals,
the convention of :mod:`exifclip.distortion.lens`), so the output size that barrel
distortion shrinks is not itself a feature.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._base import POSITIVE_INT, ImageEstimator
from ..embedder import ExifPatchEmbedder
from ..io import DEFAULT_MAX_PIXELS, as_source_list
from ..patches import PatchGrid

__all__ = [
    "DistortionRegressor",
    "default_distortion_regressor",
    "fit_ring_regressor",
    "patch_radii",
    "ring_features",
]


# -- features --------------------------------------------------------------------
def patch_radii(grid: PatchGrid) -> np.ndarray:
    """Normalised radius of every patch centre, row-major over ``grid``.

    The radius is measured from the image centre in half-diagonals of the
    image (the module's convention), so the corners are at 1.

    Examples
    --------
    >>> from exifclip.patches import make_grid
    >>> grid = make_grid((30, 30), patch_size=10, stride=10)   # 3 x 3 patches
    >>> patch_radii(grid).reshape(3, 3).round(2).tolist()
    [[0.67, 0.47, 0.67], [0.47, 0.0, 0.47], [0.67, 0.47, 0.67]]
    """
    positions = grid.positions().astype(np.float64)
    offset = (grid.patch_size - 1) / 2.0  # top-left pixel to patch centre
    dy = positions[:, 0] + offset - (grid.height - 1) / 2.0
    dx = positions[:, 1] + offset - (grid.width - 1) / 2.0
    return np.hypot(dx, dy) / (0.5 * math.hypot(grid.width, grid.height))


def ring_features(embeddings: np.ndarray, grid: PatchGrid, n_rings: int = 4, differences: bool = False) -> np.ndarray:
    """One photo's feature vector for distortion: patch embeddings pooled per radial ring.

    Radial distortion is a function of the radius alone, so the patches are
    grouped into ``n_rings`` rings of equal width over ``0 <= r <= 1``
    (:func:`patch_radii`) and averaged per ring; position thus matters,
    while the direction around the centre (where image content varies) is
    averaged out. The ring means are concatenated from the centre outwards,
    followed, with ``differences=True``, by the differences between neighbouring
    rings, the radial change that distortion causes. A ring that no patch
    centre falls in (outer rings of small images) takes the mean of the
    nearest ring that has patches, the inner one on a tie.

    Parameters
    ----------
    embeddings : ndarray of shape (n_patches, dim)
        Patch embeddings, row-major over ``grid`` (e.g.
        :class:`~exifclip.embedder.PatchEmbeddings`).
    grid : PatchGrid
    n_rings : int, default=4
    differences : bool, default=False

    Returns
    -------
    ndarray of shape (n_rings * dim,) or ((2 * n_rings - 1) * dim,), float64

    Examples
    --------
    >>> from exifclip.patches import make_grid
    >>> grid = make_grid((40, 40), patch_size=10, stride=10)   # 4 x 4 patches
    >>> z = np.ones((16, 1)); z[[5, 6, 9, 10]] = 0             # the 4 central patches differ
    >>> ring_features(z, grid, n_rings=2, differences=True).tolist()   # [inner, outer, outer - inner]
    [0.0, 1.0, 1.0]
    """
    z = np.asarray(embeddings, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != grid.n_patches:
        raise ValueError(f"expected embeddings of shape ({grid.n_patches}, dim) for this grid, got {z.shape}")
    if isinstance(n_rings, bool) or not isinstance(n_rings, (int, np.integer)) or n_rings < 1:
        raise ValueError(f"n_rings must be a positive integer, got {n_rings!r}")
    ring = np.minimum((patch_radii(grid) * n_rings).astype(np.intp), n_rings - 1)
    counts = np.bincount(ring, minlength=n_rings)
    sums = np.zeros((n_rings, z.shape[1]))
    np.add.at(sums, ring, z)
    filled = np.flatnonzero(counts)
    means = sums[filled] / counts[filled, None]
    # every ring takes its own mean, or the nearest filled ring's (inner on ties)
    nearest = filled[np.argmin(np.abs(np.arange(n_rings)[:, None] - filled[None, :]), axis=1)]
    per_ring = means[np.searchsorted(filled, nearest)]
    parts = [per_ring.ravel()]
    if differences and n_rings > 1:
        parts.append(np.diff(per_ring, axis=0).ravel())
    return np.concatenate(parts)


# -- the estimator ---------------------------------------------------------------
_TARGETS = ("k1", "k1k2")


_RIDGE_ALPHAS = np.logspace(-2, 5, 15)


def default_distortion_regressor():
    """The regressor :class:`DistortionRegressor` uses by default (unfitted).

    ``StandardScaler`` then ``RidgeCV`` over ``alphas = logspace(-2, 5, 15)``,
    alpha chosen by efficient leave-one-out. When the images come in groups
    (several distortions of one photo), leave-one-out lets the copies of a
    photo vote for too little regularisation: use :func:`fit_ring_regressor`
    with ``groups`` instead.

    Examples
    --------
    >>> default_distortion_regressor()[-1].alphas.shape
    (15,)
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Standardised features, so one alpha grid fits any embedding size; the
    # grid is wide because there are often more features than photos.
    return make_pipeline(StandardScaler(), RidgeCV(alphas=_RIDGE_ALPHAS))


def fit_ring_regressor(features: Any, y: Any, groups: Any = None, regressor: Any = None):
    """Fit the regression from ring features to distortion coefficients.

    Parameters
    ----------
    features : ndarray of shape (n_images, n_features)
        From :func:`ring_features` (or any per-image features).
    y : ndarray of shape (n_images,) or (n_images, n_targets)
    groups : array-like of shape (n_images,), optional
        The source photo of each image (``make_distortion_dataset(...,
        return_source_index=True)``). With the default regressor and at least
        three groups, the ridge alpha is chosen by grouped cross-validation
        (``GroupKFold``, at most 5 folds, mean absolute error) over the same
        grid, so no photo is on both sides of a split: leave-one-out over
        distortions of the same photos picks an alpha far too small (see
        ``benchmarks/bench_distortion.py``).
    regressor : scikit-learn regressor, optional
        Cloned and fitted instead of the default (``groups`` is then unused).

    Returns
    -------
    fitted regressor

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> features, groups = rng.normal(size=(12, 5)), np.repeat(np.arange(4), 3)
    >>> y = features[:, 0] + 0.1 * rng.normal(size=12)
    >>> fit_ring_regressor(features, y, groups=groups).predict(features).shape
    (12,)
    """
    features, y = np.asarray(features, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if regressor is not None:
        return clone(regressor).fit(features, y)
    n_groups = 0 if groups is None else len(np.unique(np.asarray(groups)))
    if n_groups < 3:
        return default_distortion_regressor().fit(features, y)
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    search = GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": _RIDGE_ALPHAS},
        cv=GroupKFold(n_splits=min(5, n_groups)),
        scoring="neg_mean_absolute_error",
    )
    return search.fit(features, y, groups=np.asarray(groups)).best_estimator_


class DistortionRegressor(RegressorMixin, ImageEstimator):
    """Estimate the radial lens distortion of photos from their patch embeddings.

    Each photo is cut into the embedder's patch grid; patch embeddings are
    pooled per concentric ring (:func:`ring_features`) and a regressor maps
    the ring features to ``k1`` (or ``k1, k2``) in the convention of
    :func:`distort` (half-diagonal units, ``k1 < 0`` barrel), with the
    distortion centre assumed at the image centre.

    Parameters
    ----------
    model : str, default="exifclip-small"
        Packaged model name, local directory, or Hugging Face Hub id.
    revision : str, optional
        Hub branch, tag or commit.
    n_rings : int, default=4
        Concentric rings of equal width the patches are pooled over.
    ring_differences : bool, default=False
        Also feed the differences between neighbouring rings (with the
        default standardised ridge they add no information, and measured no
        gain in ``benchmarks/bench_distortion.py``).
    regressor : scikit-learn regressor, optional
        Cloned before fitting. Default: ``StandardScaler`` then ridge
        regression over ``alphas = logspace(-2, 5, 15)``, alpha chosen by
        leave-one-out, or by grouped cross-validation when ``fit`` is given
        ``groups`` (:func:`fit_ring_regressor`). With ``target="k1k2"`` it
        must support two outputs.
    target : {"k1", "k1k2"}, default="k1"
        What ``y`` holds and ``predict`` returns.
    patch_size : int, optional
        Defaults to the model's own.
    num_per_dim : int, default=30
        Patches along the longer side.
    stride : int, optional
        Explicit stride, overriding ``num_per_dim``.
    batch_size : int, default=256
        Patches per forward pass.
    device : str, default="auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ...
    dtype : str, optional
        Weights dtype (default float32; CUDA also runs under autocast).
    mode : {"exact", "fast"}, default="exact"
        ``"exact"``: every patch through the whole image tower, as the
        paper does. ``"fast"``: the tower's trunk once over the photo and
        each patch's embedding pooled from its feature map: faster where
        patches overlap (photos of a few megapixels, dense grids), slower
        on the sparse default grid of large photos, and the results differ
        (see :mod:`exifclip.modeling.dense` and the benchmarks page).
    progress : bool, default=False
    allow_truncated : bool, default=False
        Decode truncated JPEGs (missing rows become a flat fill, with a
        warning) instead of counting them as failed images; see
        :func:`exifclip.io.load_image`.
    max_pixels : int or None, default=exifclip.io.DEFAULT_MAX_PIXELS
        Images with more pixels are refused before decoding (decompression
        bombs); ``None`` lifts exifclip's limit (Pillow's own still applies).
    runtime : {"torch", "onnxruntime"}, default="torch"
        What runs the image tower: PyTorch, or ONNX Runtime on the CPU
        (``pip install "exifclip[onnx]"``; float32, ``device="cpu"``): the
        same embeddings to about 1e-6, in less time (see
        :mod:`exifclip.modeling.onnx_runtime`).
    errors : {"warn", "skip", "raise"}, default="warn"
        What an image that cannot be embedded does (see
        :mod:`exifclip.batch`): ``predict`` gives NaN in its place and
        ``fit`` leaves it out, with a :class:`~exifclip.batch.BatchItemWarning`
        for ``"warn"``; ``"raise"`` raises
        :class:`~exifclip.batch.BatchItemError`. ``failures_`` lists them.

    Attributes
    ----------
    embedder_ : ExifPatchEmbedder
        The fitted embedder (holds the model).
    regressor_ : scikit-learn regressor
        The fitted clone of ``regressor``.
    n_features_ : int
        Length of the ring feature vector.

    Examples
    --------
    >>> from exifclip.distortion import make_distortion_dataset
    >>> y, x = np.mgrid[0:120, 0:160]
    >>> scene = np.stack([128 + 100 * np.sin(x / 4.0), 128 + 100 * np.cos(y / 5.0), x], -1).astype(np.uint8)
    >>> images, params = make_distortion_dataset([scene], n=6, k_range=(-0.2, 0.1), seed=0)
    >>> reg = DistortionRegressor(num_per_dim=4, device="cpu").fit(images, params[:, 0])
    >>> reg.predict(images).shape
    (6,)
    >>> reg.n_features_   # 4 rings x 128 dimensions
    512
    """

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "n_rings": [POSITIVE_INT],
        "ring_differences": ["boolean"],
        "regressor": [HasMethods(["fit", "predict"]), None],
        "target": [StrOptions(set(_TARGETS))],
    }

    def __init__(
        self,
        model: str = "exifclip-small",
        revision: str | None = None,
        n_rings: int = 4,
        ring_differences: bool = False,
        regressor: Any = None,
        target: str = "k1",
        patch_size: int | None = None,
        num_per_dim: int = 30,
        stride: int | None = None,
        batch_size: int = 256,
        device: str = "auto",
        dtype: str | None = None,
        mode: str = "exact",
        runtime: str = "torch",
        progress: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        errors: str = "warn",
    ):
        self.model = model
        self.revision = revision
        self.n_rings = n_rings
        self.ring_differences = ring_differences
        self.regressor = regressor
        self.target = target
        self.patch_size = patch_size
        self.num_per_dim = num_per_dim
        self.stride = stride
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.mode = mode
        self.runtime = runtime
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels
        self.errors = errors

    def _targets(self, y: Any, n_images: int) -> np.ndarray:
        """``y`` as ``(n,)`` for target "k1" or ``(n, 2)`` for "k1k2", validated."""
        try:
            values = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must be numbers: k1 per image, or [k1, k2] rows") from None
        if values.shape[:1] != (n_images,):
            raise ValueError(f"y has {values.shape[0] if values.ndim else 'no'} rows but X has {n_images} images")
        if not np.all(np.isfinite(values)):
            raise ValueError("y contains NaN or infinity")
        if self.target == "k1":
            if values.ndim == 1:
                return values
            if values.ndim == 2 and values.shape[1] in (1, 2):
                return values[:, 0]  # [k1] or [k1, k2] rows, as make_distortion_dataset returns
            raise ValueError(f"target='k1' needs y of shape (n_images,) or (n_images, 2), got {values.shape}")
        if values.ndim != 2 or values.shape[1] != 2:
            raise ValueError(f"target='k1k2' needs y of shape (n_images, 2) with [k1, k2] rows, got {values.shape}")
        return values

    def radial_features(self, X: Any) -> np.ndarray:
        """The ring features of each photo (:func:`ring_features`), ``(n_images, n_features_)``.

        A photo that could not be embedded (see ``errors``) has a row of NaN.
        """
        check_is_fitted(self, "embedder_")
        with self._failure_report() as report:
            per_image = self.embedder_.transform_patches(X, report=report)
        rows = [
            None if item is None else ring_features(item.embeddings, item.grid, int(self.n_rings),
                                                    bool(self.ring_differences))
            for item in per_image
        ]
        done = [r for r in rows if r is not None]
        if not done:
            raise ValueError(f"X: none of the {len(rows)} images could be embedded (see failures_)")
        blank = np.full(done[0].shape, np.nan, dtype=done[0].dtype)
        return np.stack([blank if r is None else r for r in rows])

    def fit(self, X: Any, y: Any, groups: Any = None) -> DistortionRegressor:
        """Embed the photos and fit the regressor on their ring features.

        Parameters
        ----------
        X : image sources
            Distorted photos (e.g. from :func:`make_distortion_dataset`).
        y : array-like of shape (n_images,) or (n_images, 2)
            ``k1`` per photo, or ``[k1, k2]`` rows (with ``target="k1"`` the
            first column is used).
        groups : array-like of shape (n_images,), optional
            The source photo of each image, when several images are
            distortions of one photo: the default regressor then chooses its
            alpha by grouped cross-validation (see :func:`fit_ring_regressor`).

        Returns
        -------
        self
        """
        self._validate_params()
        sources = as_source_list(X)
        targets = self._targets(y, len(sources))
        if len(sources) < 2:
            raise ValueError(f"X has {len(sources)} image; fitting a regressor needs at least 2")
        self.embedder_ = ExifPatchEmbedder(**self._embedding_params()).fit()
        if groups is not None and len(groups) != len(sources):
            raise ValueError(f"groups has {len(groups)} entries but X has {len(sources)} images")
        features = self.radial_features(sources)
        usable = ~np.isnan(features).any(axis=1)  # images that failed (errors="warn"/"skip") are left out
        if usable.sum() < 2:
            raise ValueError(f"X: only {int(usable.sum())} image(s) could be embedded; fitting needs at least 2")
        if groups is not None:
            groups = np.asarray(groups)[usable]
        self.regressor_ = fit_ring_regressor(
            features[usable], targets[usable], groups=groups, regressor=self.regressor
        )
        self.n_features_ = int(features.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Estimated coefficients.

        Returns
        -------
        ndarray of shape (n_images,) (``target="k1"``) or (n_images, 2)
        """
        check_is_fitted(self, "regressor_")
        features = self.radial_features(X)
        usable = ~np.isnan(features).any(axis=1)
        width = 1 if self.target == "k1" else 2
        predicted = np.full((len(features), width), np.nan)
        if usable.any():
            predicted[usable] = np.asarray(self.regressor_.predict(features[usable]), dtype=np.float64).reshape(
                -1, width
            )
        return predicted.reshape(-1) if self.target == "k1" else predicted

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of the prediction (averaged over ``k1, k2`` with ``target="k1k2"``)."""
        from sklearn.metrics import r2_score

        sources = as_source_list(X)
        targets, predicted = self._targets(y, len(sources)), self.predict(sources)
        scored = ~np.isnan(predicted.reshape(len(sources), -1)).any(axis=1)  # failed images are left out
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)[scored]
        return float(
            r2_score(
                targets[scored],
                predicted[scored],
                sample_weight=sample_weight,
            )
        )
