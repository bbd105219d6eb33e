"""Camera-property probes: what do the patch embeddings know about the camera?

Two ways to read a camera property (model, ISO band, flash, processing) off
the pixels alone, with no metadata at test time:

* **Zero shot** (:class:`ExifZeroShotClassifier`): write each candidate value
  as EXIF text, ``"Model: Canon EOS 5D"`` (the ``"Tag: value"`` form of
  :func:`exifclip.exif.exif_to_text`, which the text tower was trained on),
  embed it with the text tower, and compare it with the image's patch
  embeddings as CLIP does (Radford et al., 2021): a softmax over
  ``logit_scale * cos(patch, text)``. No labelled photo is needed.
* **Linear probe** (:func:`make_linear_probe`): image embeddings from
  :class:`~exifclip.embedder.ExifPatchEmbedder`, standardised, into a
  logistic regression trained on labelled photos; a plain scikit-learn
  :class:`~sklearn.pipeline.Pipeline`, so ``GridSearchCV`` can tune both the
  regularisation ``C`` and the embedder's ``patch_size``.

From patch scores to an image score
-----------------------------------
A photo gives many patches; :func:`zero_shot_scores` turns their similarities
into one score per candidate in one of three ways (``pooling=``):

``"mean_log_proba"`` (default)
    Each patch's log-probabilities over the candidates, averaged over the
    patches: the normalised geometric mean of the patch posteriors (a
    product of experts tempered by ``1 / n_patches``).
``"mean_embedding"``
    The image embedding of :func:`~exifclip.embedder.pool_patch_embeddings`
    (the L2-normalised mean patch embedding) compared with the texts once.
``"mean_proba"``
    Each patch's probabilities, averaged (an arithmetic mean: one confident
    patch counts no more than its share).

The first two always rank the candidates alike. The mean over patches of
``log softmax(s * z_p . t_c)`` is ``s * m . t_c`` minus a term that does not
depend on the candidate ``c`` (``m`` the mean of the unit patch embeddings
``z_p``), and ``m = |m| * pool(z)``: ``"mean_log_proba"`` is
``"mean_embedding"`` at the temperature ``1 / |m|`` (``|m| <= 1``, smaller
when the patches disagree). Same predictions and accuracy; they differ only
in confidence. ``"mean_proba"`` is genuinely different.

``"mean_log_proba"`` is the default: of the two that rank alike it gave the
lower log-loss in ``benchmarks/bench_probes.py`` (figures in the docs'
benchmarks page).

The functional core is :func:`zero_shot_logits`, :func:`zero_shot_scores`
and :func:`candidate_texts`; the estimator validates, caches the model and
the candidates' text embeddings, and calls them.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import ImageEstimator
from .embedder import ExifPatchEmbedder
from .modeling.embedding import embed_texts, pool_patch_embeddings
from .io import DEFAULT_MAX_PIXELS

__all__ = [
    "ExifZeroShotClassifier",
    "POOLINGS",
    "candidate_texts",
    "make_linear_probe",
    "zero_shot_logits",
    "zero_shot_scores",
]

#: How patch-level similarities become one image-level score per candidate.
POOLINGS = ("mean_log_proba", "mean_embedding", "mean_proba")

#: The default text of a candidate: the ``"Tag: value"`` pair of
#: :func:`exifclip.exif.exif_to_text` (one pair, no other tags).
DEFAULT_TEMPLATE = "{tag}: {value}"


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def zero_shot_logits(image_embeddings: np.ndarray, text_embeddings: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP logits: ``logit_scale`` times the cosine of every (image, text) pair.

    Parameters
    ----------
    image_embeddings : array-like of shape (n_images, dim)
        Image or patch embeddings (normalised here; zero rows stay zero).
    text_embeddings : array-like of shape (n_texts, dim)
        Text embeddings of the candidates (normalised here).
    logit_scale : float
        The multiplier itself (``model.get_logit_scale()``), not its logarithm.

    Returns
    -------
    ndarray of shape (n_images, n_texts), float64
        A softmax over each row gives the probability of each text.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [3.0, 4.0]])
    >>> texts = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> zero_shot_logits(images, texts, 10.0).tolist()
    [[10.0, 0.0], [6.0, 8.0]]
    """
    images = _unit_rows(image_embeddings, "image_embeddings")
    texts = _unit_rows(text_embeddings, "text_embeddings")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image_embeddings have dimension {images.shape[1]} but text_embeddings "
            f"{texts.shape[1]}: they must come from the same model"
        )
    scale = float(logit_scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"logit_scale must be a positive number, got {logit_scale!r}")
    return scale * (images @ texts.T)


def zero_shot_scores(
    patch_embeddings: np.ndarray, text_embeddings: np.ndarray, logit_scale: float, pooling: str = "mean_log_proba"
) -> np.ndarray:
    """One image's score for each candidate text, from its patch embeddings.

    The scores are log-probabilities up to an additive constant:
    ``scipy.special.softmax(scores)`` is the image's probability of each
    candidate, and their argmax its prediction.

    Parameters
    ----------
    patch_embeddings : array-like of shape (n_patches, dim)
        The image's patch embeddings (normalised here; one row is a
        whole-image embedding).
    text_embeddings : array-like of shape (n_candidates, dim)
    logit_scale : float
        The model's similarity multiplier (see :func:`zero_shot_logits`).
    pooling : {"mean_log_proba", "mean_embedding", "mean_proba"}
        How patches combine (module doc): the mean over patches of their
        log-softmax; the logits of the pooled (mean, re-normalised) patch
        embedding; or the log of the mean over patches of their softmax.

    Returns
    -------
    ndarray of shape (n_candidates,), float64

    Examples
    --------
    Two patches, two candidates: one patch points at each candidate, so the
    image is undecided; tilt the first patch towards candidate 1 and the
    image leans that way.

    >>> import numpy as np
    >>> from scipy.special import softmax
    >>> patches = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> texts = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> softmax(zero_shot_scores(patches, texts, 2.0)).round(3).tolist()
    [0.5, 0.5]
    >>> softmax(zero_shot_scores(patches, texts, 2.0, pooling="mean_embedding")).round(3).tolist()
    [0.5, 0.5]
    >>> softmax(zero_shot_scores(np.array([[1.0, 0.2], [0.0, 1.0]]), texts, 2.0)).round(3).tolist()
    [0.446, 0.554]
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    patches = np.asarray(patch_embeddings, dtype=np.float64)
    if patches.ndim != 2 or patches.shape[0] == 0:
        raise ValueError(f"patch_embeddings must be a non-empty 2-D array (n_patches, dim), got shape {patches.shape}")
    patches = _unit_rows(patches, "patch_embeddings")
    if pooling == "mean_embedding":
        return zero_shot_logits(pool_patch_embeddings(patches)[None, :], text_embeddings, logit_scale)[0]
    log_proba = log_softmax(zero_shot_logits(patches, text_embeddings, logit_scale), axis=1)
    if pooling == "mean_log_proba":
        return log_proba.mean(axis=0)
    return logsumexp(log_proba, axis=0) - np.log(len(log_proba))  # log of the mean probability


def candidate_texts(tag: str, candidates: Sequence[Any], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The EXIF text of each candidate value, ``template.format(tag=..., value=...)``.

    With the default template the text is exactly what
    :func:`exifclip.exif.exif_to_text` writes for the single tag
    ``{tag: value}`` (value stripped).

    Parameters
    ----------
    tag : str
        EXIF tag name as :func:`exifclip.exif.read_exif` names it
        (``"Model"``, ``"ISO Speed Ratings"``, ``"Flash"``, ...).
    candidates : sequence of str or int
        The values to choose between.
    template : str, default="{tag}: {value}"
        Must contain ``{value}``; may contain ``{tag}``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> candidate_texts("Model", ["Canon EOS 5D", "NIKON D3200"])
    ['Model: Canon EOS 5D', 'Model: NIKON D3200']
    >>> candidate_texts("ISO Speed Ratings", [100, 1600], template="Make: Canon, {tag}: {value}")
    ['Make: Canon, ISO Speed Ratings: 100', 'Make: Canon, ISO Speed Ratings: 1600']
    """
    if not isinstance(template, str) or "{value}" not in template:
        raise ValueError(f"template must be a str containing '{{value}}', got {template!r}")
    try:
        return [template.format(tag=tag, value=str(value).strip()) for value in candidates]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"template {template!r} cannot be filled: only {{tag}} and {{value}} are known "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _check_candidates(candidates: Any) -> list:
    if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__iter__"):
        raise ValueError(f"candidates must be a list of values (str or int), got {type(candidates).__name__}")
    values = list(candidates)
    if len(values) < 2:
        raise ValueError(f"candidates must hold at least 2 values to choose between, got {values!r}")
    kinds = {isinstance(v, str) for v in values}
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (str, numbers.Integral))]
    if bad or len(kinds) > 1:
        raise ValueError(f"candidates must be all str or all int, got {values!r}")
    if any(isinstance(v, str) and not v.strip() for v in values):
        raise ValueError(f"candidates must not contain empty strings, got {values!r}")
    seen: set = set()
    duplicates = [v for v in values if v in seen or seen.add(v)]
    if duplicates:
        raise ValueError(f"candidates must be distinct; repeated: {sorted(set(map(str, duplicates)))}")
    return values


class ExifZeroShotClassifier(ClassifierMixin, ImageEstimator):
    """Predict an EXIF value of a photo from its pixels alone, zero shot.

    Each candidate value is written as EXIF text (``"Model: Canon EOS 5D"``)
    and embedded by the model's text tower; each photo is cut into the
    grid of full-resolution patches and embedded by the image tower; the
    class probabilities are a softmax over ``logit_scale * cos(patch, text)``,
    combined over the patches as ``pooling`` says (module doc). Nothing is
    learnt from labelled photos: :meth:`fit` only validates and loads.

    Parameters
    ----------
    tag : str, default="Model"
        The EXIF tag to predict, as :func:`exifclip.exif.read_exif` names it.
    candidates : sequence of str or int, default=None
        The values to choose between (at least two, distinct). Required.
        They become ``classes_`` in this order.
    model : str, default="exifclip-small"
        Packaged model name, local directory, or Hugging Face Hub id.
    revision : str, optional
        Hub branch, tag or commit.
    template : str, default="{tag}: {value}"
        How a candidate is written, the single ``"Tag: value"`` pair of
        :func:`exifclip.exif.exif_to_text`. Must contain ``{value}``.
        Write values as the model's training text had them: for a model
        trained on ``exif_to_text(style="paper")`` text (the converted
        official checkpoint), pass the paper-style values
        (``"NIKONCORPORATION"``) or whole ``prompts``.
    prompts : sequence of str, optional
        The text of each candidate, in the order of ``candidates``; overrides
        ``template`` (e.g. whole sentences, ``"Make: Canon, Model: Canon EOS
        5D"``).
    pooling : {"mean_log_proba", "mean_embedding", "mean_proba"}, default="mean_log_proba"
        How patch scores combine into the image score (module doc).
    patch_size : int, optional
        Defaults to the model's own.
    num_per_dim : int, default=10
        Patches along the longer side. Fewer than the localiser's 30: the
        denser grid costs 9 times the patches and its gain in
        ``benchmarks/bench_probes.py`` was within that benchmark's noise.
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
    runtime : {"torch", "onnxruntime"}, default="torch"
        What runs the image tower: PyTorch, or ONNX Runtime on the CPU
        (``pip install "exifclip[onnx]"``; float32, ``device="cpu"``): the
        same embeddings to about 1e-6, in less time (see
        :mod:`exifclip.modeling.onnx_runtime`).
    errors : {"warn", "skip", "raise"}, default="warn"
        What an image that cannot be embedded does to a call over many
        (the rule of every exifclip estimator, :mod:`exifclip.batch`):
        ``"warn"`` leaves it out with a warning naming it, ``"skip"``
        silently; its row is NaN (:meth:`predict_proba`,
        :meth:`decision_function`) and its prediction ``None``
        (:meth:`predict`). ``"raise"`` raises naming it.
    progress : bool, default=False
    allow_truncated : bool, default=False
        Decode truncated JPEGs (missing rows become a flat fill, with a
        warning) instead of counting them as failed images; see
        :func:`exifclip.io.load_image`.
    max_pixels : int or None, default=exifclip.io.DEFAULT_MAX_PIXELS
        Images with more pixels are refused before decoding (decompression
        bombs); ``None`` lifts exifclip's limit (Pillow's own still applies).

    Attributes
    ----------
    classes_ : ndarray of shape (n_candidates,)
        The candidates, in the given order.
    texts_ : list of str
        The text embedded for each class.
    text_embeddings_ : ndarray of shape (n_candidates, dim), float32
        L2-normalised text embeddings of ``texts_``.
    logit_scale_ : float
        The model's similarity multiplier.
    embedder_ : ExifPatchEmbedder
        The fitted embedder (holds the model).
    failures_ : list of BatchFailure
        The images that failed in the most recent call, as
        ``(index, source, reason)``; empty if none did.

    See Also
    --------
    make_linear_probe : the supervised alternative, trained on labelled photos.

    Examples
    --------
    >>> import numpy as np
    >>> clf = ExifZeroShotClassifier("Flash", ["Flash fired", "Flash did not fire"], device="cpu").fit()
    >>> clf.texts_
    ['Flash: Flash fired', 'Flash: Flash did not fire']
    >>> img = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    >>> proba = clf.predict_proba([img, img])
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1.0))
    ((2, 2), True)
    >>> str(clf.predict([img])[0]) in clf.classes_
    True
    """

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "tag": [str],
        "candidates": ["array-like", None],  # checked by name in fit, with a hint
        "template": [str],
        "prompts": ["array-like", None],
        "pooling": [StrOptions(set(POOLINGS))],
    }

    def __init__(
        self,
        tag: str = "Model",
        candidates: Sequence[Any] | None = None,
        model: str = "exifclip-small",
        revision: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        prompts: Sequence[str] | None = None,
        pooling: str = "mean_log_proba",
        patch_size: int | None = None,
        num_per_dim: int = 10,
        stride: int | None = None,
        batch_size: int = 256,
        device: str = "auto",
        dtype: str | None = None,
        mode: str = "exact",
        runtime: str = "torch",
        errors: str = "warn",
        progress: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        self.tag = tag
        self.candidates = candidates
        self.model = model
        self.revision = revision
        self.template = template
        self.prompts = prompts
        self.pooling = pooling
        self.patch_size = patch_size
        self.num_per_dim = num_per_dim
        self.stride = stride
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.mode = mode
        self.runtime = runtime
        self.errors = errors
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels

    def _candidate_texts(self) -> tuple[list, list[str]]:
        """The validated candidates and the text of each."""
        if not self.tag.strip():
            raise ValueError(f"tag must be a non-empty EXIF tag name such as 'Model', got {self.tag!r}")
        if self.candidates is None:
            raise ValueError(
                "candidates is required: the EXIF values to choose between, e.g. "
                "candidates=['Canon EOS 5D', 'NIKON D3200']"
            )
        values = _check_candidates(self.candidates)
        if self.prompts is None:
            texts = candidate_texts(self.tag, values, self.template)
        else:
            if isinstance(self.prompts, str) or not all(isinstance(p, str) and p.strip() for p in self.prompts):
                raise ValueError(f"prompts must be a list of non-empty str, one per candidate, got {self.prompts!r}")
            texts = list(self.prompts)
            if len(texts) != len(values):
                raise ValueError(
                    f"prompts has {len(texts)} texts but candidates has {len(values)} values: "
                    "give one prompt per candidate"
                )
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ValueError(
                f"candidates give identical texts {repeated}: each class needs its own text "
                "(check candidates, template and prompts)"
            )
        return values, texts

    def fit(self, X: Any = None, y: Any = None) -> "ExifZeroShotClassifier":
        """Validate, load the model and embed the candidates' texts.

        Zero shot: nothing is learnt from ``X`` or ``y``.

        Parameters
        ----------
        X : ignored
        y : array-like, optional
            If given, every label must be one of ``candidates`` (so that a
            ``GridSearchCV`` over mislabelled data fails early).

        Returns
        -------
        self
        """
        self._validate_params()
        values, texts = self._candidate_texts()
        classes = np.asarray(values)
        if y is not None:
            labels = np.asarray(y).ravel()
            known = set(classes.tolist())
            unknown = sorted({str(v) for v in labels.tolist() if v not in known})
            if unknown:
                raise ValueError(
                    f"y has labels that are not among the candidates: {unknown}; candidates are {classes.tolist()}"
                )
        self.embedder_ = ExifPatchEmbedder(**self._embedding_params()).fit()
        model = self.embedder_.model_
        self.classes_ = classes
        self.texts_ = texts
        self.text_embeddings_ = embed_texts(model, texts, batch_size=self.batch_size)
        self.logit_scale_ = float(model.get_logit_scale().detach().float().cpu())
        self.failures_ = []
        return self

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "text_embeddings_")
        with self._failure_report() as report:
            per_image = self.embedder_.transform_patches(X, report=report)
        out = np.full((len(per_image), len(self.classes_)), np.nan)
        for i, item in enumerate(per_image):
            if item is not None:
                out[i] = zero_shot_scores(item.embeddings, self.text_embeddings_, self.logit_scale_, self.pooling)
        return out

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-probabilities of the classes, ``(n_images, n_candidates)``."""
        return log_softmax(self._scores(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the classes, ``(n_images, n_candidates)``; rows sum to one.

        Parameters
        ----------
        X : image source or list of them

        Returns
        -------
        ndarray of shape (n_images, n_candidates), float64
            Columns follow ``classes_``; rows of images that failed are NaN.
        """
        return softmax(self._scores(X), axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """Image scores per class (log-probabilities up to a per-row constant).

        Returns
        -------
        ndarray of shape (n_images, n_candidates), or (n_images,) with two
        candidates: the score of ``classes_[1]`` minus that of
        ``classes_[0]`` (scikit-learn's binary convention).
        """
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """The most probable candidate for each image.

        Returns
        -------
        ndarray of shape (n_images,)
            Values of ``classes_`` (``None``, in an object array, for images
            that failed; see ``errors``).
        """
        scores = self._scores(X)
        missing = np.isnan(scores).any(axis=1)
        best = self.classes_[np.argmax(np.where(missing[:, None], 0.0, scores), axis=1)]
        if missing.any():
            best = best.astype(object)
            best[missing] = None
        return best


def make_linear_probe(
    model: str = "exifclip-small",
    C: float = 1.0,
    patch_size: int | None = None,
    num_per_dim: int = 10,
    device: str = "auto",
    max_iter: int = 2000,
    memory: Any = None,
    **embedder_params: Any,
):
    """A camera-property linear probe: embedder, standardiser, logistic regression.

    The steps are named ``embed`` (:class:`~exifclip.embedder.ExifPatchEmbedder`),
    ``scale`` (:class:`~sklearn.preprocessing.StandardScaler`) and
    ``classify`` (:class:`~sklearn.linear_model.LogisticRegression`), so a
    grid search names ``classify__C`` and ``embed__patch_size``.

    Parameters
    ----------
    model : str, default="exifclip-small"
    C : float, default=1.0
        Inverse regularisation strength of the logistic regression.
    patch_size : int, optional
        The embedder's patch side; defaults to the model's own.
    num_per_dim : int, default=10
        Patches along the longer side of each photo.
    device : str, default="auto"
    max_iter : int, default=2000
        Iterations of the logistic regression's solver.
    memory : str, joblib.Memory or None
        Passed to :class:`~sklearn.pipeline.Pipeline`: caches the fitted
        embedder and its training embeddings, so a grid over ``C`` embeds
        each training fold once per ``patch_size``.
    **embedder_params
        Any other :class:`~exifclip.embedder.ExifPatchEmbedder` parameter
        (``batch_size``, ``stride``, ``errors``, ...).

    Returns
    -------
    sklearn.pipeline.Pipeline

    Examples
    --------
    >>> probe = make_linear_probe(device="cpu")
    >>> [name for name, _ in probe.steps]
    ['embed', 'scale', 'classify']
    >>> sorted(p for p in probe.get_params() if p in ("classify__C", "embed__patch_size"))
    ['classify__C', 'embed__patch_size']
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    embedder = ExifPatchEmbedder(
        model=model, patch_size=patch_size, num_per_dim=num_per_dim, device=device, **embedder_params
    )
    return Pipeline(
        [("embed", embedder), ("scale", StandardScaler()), ("classify", LogisticRegression(C=C, max_iter=max_iter))],
        memory=memory,
    )
