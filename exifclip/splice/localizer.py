"""The splice-localisation estimator: a scikit-learn shell over
:mod:`exifclip.splice.postprocessing`."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from numbers import Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._base import ImageEstimator
from ..batch import ITEM_ERRORS, BatchFailure
from ..embedder import ExifPatchEmbedder
from ..io import DEFAULT_MAX_PIXELS, as_source_list
from ..sources import iter_sources
from .calibration import ScoreCalibration
from .postprocessing import DETECTION_SCORES, MASK_METHODS, SpliceResult, calibrate_threshold, localize_embeddings

__all__ = ["SpliceLocalizer"]


def _timed(iterator: Iterator) -> Iterator[tuple[float, Any]]:
    """Each item with the seconds spent waiting for it (an image's share of the embedding work)."""
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - start, item




class SpliceLocalizer(ImageEstimator):
    """Find regions of a photo that came from another camera, zero shot.

    Parameters
    ----------
    model : str, default="exifclip-small-s16"
        Packaged model name, local directory, or Hugging Face Hub id. The
        default is the packaged model chosen for splice localisation on
        cameras no training step saw (its card gives the figures).
    revision : str, optional
        Hub branch, tag or commit.
    patch_size : int, optional
        Defaults to the model's own.
    num_per_dim : int, default=30
        Patches along the longer side (the paper's grid).
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
    method : {"meanshift", "ncut"}, default="meanshift"
        How the mask is made (the heatmap always comes from mean shift).
    threshold : float, optional
        Heatmap threshold for the mask (method "meanshift"). ``None``: split
        each image's cells in two by 1-D 2-means, unless ``fit(X, masks)``
        calibrated one.
    score_method : str, default="auto"
        Detection score; see :func:`detection_score` (``"mean"`` is the
        paper's). ``"auto"``: the one the model's score calibration (for
        this ``mode``, if it has one) was made with (its model card says
        why it was chosen), else ``"mean"``.
    alarm_rate : float, default=0.05
        A photo is ``flagged`` when at most this share of authentic photos of
        unseen cameras score as high (the model's
        :class:`~exifclip.splice.calibration.ScoreCalibration`, when it has
        one for these settings). Lower it for fewer false alarms and more
        missed splices; the measured trade-off is in the model card.
    runtime : {"torch", "onnxruntime"}, default="torch"
        What runs the image tower: PyTorch, or ONNX Runtime on the CPU
        (``pip install "exifclip[onnx]"``; float32, ``device="cpu"``): the
        same embeddings to about 1e-6, in less time (see
        :mod:`exifclip.modeling.onnx_runtime`).
    errors : {"warn", "skip", "raise"}, default="warn"
        What an image that fails (unreadable, corrupt, smaller than a patch,
        post-processing error) does to a call over many images.
        ``"warn"``: its place holds ``None`` (``localize``, ``predict``) or
        NaN (``decision_function``), a :class:`~exifclip.batch.BatchItemWarning`
        names it, and the other images are processed; ``"skip"``: the same,
        silently; ``"raise"``: :class:`~exifclip.batch.BatchItemError`
        naming it. ``failures_`` lists the failures either way. A failed
        image never looks like a result: not an empty mask, not a low score.
        The default keeps a long forensic batch going without hiding
        anything; see :mod:`exifclip.batch`.
    progress : bool, default=False
    allow_truncated : bool, default=False
        Decode truncated JPEGs (missing rows become a flat fill, with a
        warning) instead of counting them as failed images; see
        :func:`exifclip.io.load_image`.
    max_pixels : int or None, default=exifclip.io.DEFAULT_MAX_PIXELS
        Images with more pixels are refused before decoding (decompression
        bombs); ``None`` lifts exifclip's limit (Pillow's own still applies).
    memory : str, path or joblib.Memory, optional
        A cache of patch embeddings (see :class:`~exifclip.embedder.ExifPatchEmbedder`):
        a ``GridSearchCV`` over ``method``, ``threshold`` or ``score_method``
        embeds each photo once.

    Attributes
    ----------
    embedder_ : ExifPatchEmbedder
        The fitted embedder (holds the model).
    threshold_ : float or None
        The mask threshold in use.
    score_method_ : str
        The detection score in use (``score_method`` with ``"auto"`` resolved).
    score_calibration_ : ScoreCalibration or None
        The model's score calibration for these settings; without one,
        results have ``false_alarm_rate`` and ``flagged`` set to ``None``.
    failures_ : list of BatchFailure
        The images that failed in the most recent call (``fit`` with images,
        ``localize``, ``predict``, ``decision_function``, ``score``) as
        ``(index, source, reason)``, in input order; empty if none did.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from exifclip.modeling import create_model
    >>> d = tempfile.mkdtemp(); create_model("small", seed=0).save_pretrained(d)
    >>> loc = SpliceLocalizer(model=d, device="cpu").fit()
    >>> img = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    >>> result = loc.localize([img])[0]
    >>> result.heatmap.shape, result.mask.dtype
    ((96, 128), dtype('bool'))
    """

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "method": [StrOptions(set(MASK_METHODS))],
        "threshold": [Interval(Real, 0, 1, closed="both"), None],
        "score_method": [StrOptions({"auto", *DETECTION_SCORES})],
        "alarm_rate": [Interval(Real, 0, 1, closed="neither")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    }

    def __init__(
        self,
        model: str = "exifclip-small-s16",
        revision: str | None = None,
        patch_size: int | None = None,
        num_per_dim: int = 30,
        stride: int | None = None,
        batch_size: int = 256,
        device: str = "auto",
        dtype: str | None = None,
        mode: str = "exact",
        runtime: str = "torch",
        method: str = "meanshift",
        threshold: float | None = None,
        score_method: str = "auto",
        alarm_rate: float = 0.05,
        errors: str = "warn",
        progress: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        memory: Any = None,
    ):
        self.model = model
        self.revision = revision
        self.patch_size = patch_size
        self.num_per_dim = num_per_dim
        self.stride = stride
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.mode = mode
        self.runtime = runtime
        self.method = method
        self.threshold = threshold
        self.score_method = score_method
        self.alarm_rate = alarm_rate
        self.errors = errors
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels
        self.memory = memory

    def fit(self, X: Any = None, y: Any = None) -> SpliceLocalizer:
        """Load the model; with ``X`` and masks ``y``, calibrate the threshold.

        Parameters
        ----------
        X : image sources, optional
        y : list of bool masks (None for authentic images), optional
            When given with ``X``, ``threshold_`` becomes the global heatmap
            threshold that maximises the mean F1 over the spliced images.
            Images that fail are left out of it (``errors``, ``failures_``).

        Returns
        -------
        self
        """
        self._validate_params()
        self.embedder_ = ExifPatchEmbedder(**self._embedding_params(), memory=self.memory).fit()
        self.score_method_, self.score_calibration_ = self._score_calibration()
        self.threshold_ = self.threshold
        self.failures_: list[BatchFailure] = []
        if X is not None and y is not None and self.threshold is None:
            self.threshold_ = self._calibrate(as_source_list(X), list(y))
        return self

    def _score_calibration(self) -> tuple[str, ScoreCalibration | None]:
        """The detection score in use, and the model's calibration of it if it has one for these settings."""
        directory = getattr(self.embedder_.model_, "source_dir", None)  # set by load_model; None when fine-tuned
        calibration = ScoreCalibration.load(directory, self.mode) if directory is not None else None
        score_method = self.score_method
        if score_method == "auto":
            score_method = calibration.settings.get("score_method", "mean") if calibration is not None else "mean"
        settings = {"mode": self.mode, "num_per_dim": self.num_per_dim, "stride": self.stride,
                    "patch_size": self.embedder_.patch_size_, "score_method": score_method}
        applies = calibration is not None and calibration.applies_to(settings)
        return score_method, calibration if applies else None

    def _calibrate(self, X: list, masks: list) -> float | None:
        if len(masks) != len(X):
            raise ValueError(f"fit got {len(X)} images and {len(masks)} masks")
        results = self._localize(X, threshold=None)
        pairs = [
            (r.heatmap, np.asarray(m, bool))
            for r, m in zip(results, masks)
            if r is not None and m is not None and np.asarray(m).any()
        ]
        if not pairs:
            return None
        return calibrate_threshold([h for h, _ in pairs], [m for _, m in pairs])

    def _localize(self, X: Any, threshold: float | None) -> list[SpliceResult | None]:
        """Localise every image; failures go through one report and end in ``failures_``."""
        return list(self._stream(iter_sources(X), threshold))

    def _stream(self, sources: Iterator, threshold: float | None) -> Iterator[SpliceResult | None]:
        with self._failure_report() as report:
            read: deque = deque()  # sources handed to the embedder whose results have not come back yet

            def tap() -> Iterator:
                for source in sources:
                    read.append(source)
                    yield source

            embedded = _timed(self.embedder_.iter_transform_patches(tap(), report=report))
            for i, (embed_s, item) in enumerate(embedded):
                source = read.popleft()
                if item is None:
                    yield None
                    continue
                try:
                    result = localize_embeddings(item.embeddings, item.grid, method=self.method,
                                                 threshold=threshold, score_method=self.score_method_)
                except ITEM_ERRORS as exc:  # one image's post-processing: the others are kept
                    report.fail(i, source, exc)
                    yield None
                    continue
                result.timings["embed_s"] = embed_s
                if self.score_calibration_ is not None:
                    result.false_alarm_rate = self.score_calibration_.false_alarm_rate(result.score)
                    result.flagged = result.false_alarm_rate <= self.alarm_rate
                del item, source
                yield result

    def iter_localize(self, X: Any) -> Iterator[SpliceResult | None]:
        """:meth:`localize` as a stream: each image's result as soon as it is ready, in input order.

        For collections: patches are still batched across images, ``X`` (a
        list, a NumPy array of paths, a pandas Series or a generator) is
        read only as far as the next batch needs, and nothing is kept of a
        result once it is yielded, so a caller that writes each result and
        drops it runs in flat memory however many photos there are.

        Parameters
        ----------
        X : image source, or a list, array, Series or iterable of them

        Yields
        ------
        SpliceResult or None
            One per item of ``X``, in order; ``None`` where an image failed
            (``errors`` ``"warn"`` or ``"skip"``). ``failures_`` is complete
            when the iteration ends.

        Raises
        ------
        BatchItemError
            With ``errors="raise"``, at the first image that fails.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from exifclip.modeling import create_model
        >>> d = tempfile.mkdtemp(); create_model("small", seed=0).save_pretrained(d)
        >>> loc = SpliceLocalizer(model=d, device="cpu", stride=32).fit()
        >>> photos = (np.random.default_rng(i).integers(0, 256, (96, 128, 3), dtype=np.uint8) for i in range(3))
        >>> [r.mask.shape for r in loc.iter_localize(photos)]
        [(96, 128), (96, 128), (96, 128)]
        """
        check_is_fitted(self, "embedder_")
        return self._stream(iter_sources(X), self.threshold_)

    def localize(self, X: Any) -> list[SpliceResult | None]:
        """Heatmap, mask and score for each image.

        Parameters
        ----------
        X : image source, or a list, array, Series or iterable of them
            A NumPy array of paths (str or object dtype) is a list of paths.

        Returns
        -------
        list of SpliceResult or None
            Aligned with ``X``; ``None`` where an image failed (``errors``
            ``"warn"`` or ``"skip"``; listed in ``failures_``).

        Raises
        ------
        BatchItemError
            With ``errors="raise"``, at the first image that fails.

        See Also
        --------
        iter_localize : the same, one image at a time, for collections.
        """
        check_is_fitted(self, "embedder_")
        return self._localize(X, self.threshold_)

    def predict(self, X: Any) -> list[np.ndarray | None]:
        """The predicted spliced region of each image.

        Returns
        -------
        list of ndarray (H, W) bool, or None
            Aligned with ``X``. A failed image (``errors`` ``"warn"`` or
            ``"skip"``) gives ``None``, not an all-False mask: "not analysed"
            must not read as "nothing spliced" (and its size may be unknown).
        """
        return [None if r is None else r.mask for r in self.localize(X)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Detection scores, one per image (higher = more likely spliced).

        Returns
        -------
        ndarray of shape (n_images,), float64
            NaN for images that failed (``errors`` ``"warn"`` or ``"skip"``):
            never a score that could rank as authentic.
        """
        return np.array([np.nan if r is None else r.score for r in self.localize(X)], dtype=np.float64)

    def score(self, X: Any, y: Any) -> float:
        """p-mAP over the spliced images of ``X`` (masks ``y``; None = authentic).

        Images that fail (``errors`` ``"warn"`` or ``"skip"``) are left out
        of the mean and listed in ``failures_``.
        """
        from .evaluation import pmap_scorer

        return pmap_scorer(self, X, y)
