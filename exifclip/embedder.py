"""ExifPatchEmbedder: photos in, camera-trace embeddings out.

The estimator validates its parameters, loads the model through the
process-level cache of :mod:`exifclip.modeling.hub`, and calls the functional
core of :mod:`exifclip.modeling.embedding` (:func:`embed_patches`, exact;
:func:`embed_patches_fast`, fast mode; :func:`embed_texts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._base import EMBEDDING_MODES, POSITIVE_INT, ImageEstimator
from ._device import resolve_device, resolve_dtype
from .batch import BatchErrors, BatchFailure
from .exif import exif_to_text
from .io import DEFAULT_MAX_PIXELS, as_source_list
from .modeling.embedding import (  # noqa: F401 - embed_patches and PatchEmbeddings: their exifclip 0.1 path
    PatchEmbeddings,
    embed_patches,
    embed_patches_fast,
    embed_texts,
    pool_patch_embeddings,
)
from .modeling.hub import load_model

__all__ = ["EMBEDDING_MODES", "ExifPatchEmbedder"]


class ExifPatchEmbedder(TransformerMixin, ImageEstimator):
    """Embed photos by their camera traces, with no metadata needed.

    Each image is cut into the paper's grid of full-resolution patches; each
    patch is embedded by the image tower; an image's embedding is the
    L2-normalised mean of its patch embeddings.

    Parameters
    ----------
    model : str, default="exifclip-small"
        Packaged model name, local directory, or Hugging Face Hub id.
    revision : str, optional
        Hub branch, tag or commit.
    patch_size : int, optional
        Patch side in pixels; defaults to the model's own.
    num_per_dim : int, default=30
        Patches along the longer side (the paper's grid).
    stride : int, optional
        Explicit stride, overriding ``num_per_dim``.
    batch_size : int, default=256
        Patches per forward pass, across images.
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
    errors : {"warn", "skip", "raise"}, default="warn"
        What an image that cannot be embedded (unreadable, corrupt, smaller
        than a patch, ...) does to a call over many images. ``"warn"``: it
        gets a row of NaN (``transform``) or ``None`` (``transform_patches``),
        a :class:`~exifclip.batch.BatchItemWarning` names it, and the others
        are embedded; ``"skip"``: the same, silently; ``"raise"``:
        :class:`~exifclip.batch.BatchItemError` naming it. Either way
        ``failures_`` lists what failed. The default keeps a long batch going
        without hiding anything; see :mod:`exifclip.batch`.
    progress : bool, default=False
        Show a progress bar.
    allow_truncated : bool, default=False
        Decode truncated JPEGs (missing rows become a flat fill, with a
        warning) instead of counting them as failed images; see
        :func:`exifclip.io.load_image`.
    max_pixels : int or None, default=exifclip.io.DEFAULT_MAX_PIXELS
        Images with more pixels are refused before decoding (decompression
        bombs); ``None`` lifts exifclip's limit (Pillow's own still applies).
    fine_tune : bool, default=False
        If True, :meth:`fit` fine-tunes a private copy of the model on the
        photos it is given, contrastively against their own EXIF (``y`` is
        ignored; photos with no EXIF tag or smaller than a patch are skipped),
        through :func:`exifclip.training.train`. The process-wide cached
        model is never changed.
    train_steps : int, default=200
        Optimiser steps of fine-tuning.
    train_batch_size : int, default=32
        Photos per step (one patch each); lowered, with a warning, to the
        number of usable photos when there are fewer.
    learning_rate : float, default=5e-5
        Peak AdamW learning rate (10 % linear warm-up, then cosine decay).
    seed : int, default=0
        Seed of the patch positions, data order and dropout.

    Attributes
    ----------
    model_ : ExifClipModel
        The loaded model (shared with other estimators through the cache), or
        with ``fine_tune=True`` the fine-tuned copy.
    patch_size_ : int
        The patch size in use.
    embedding_dim_ : int
        Size of the embeddings.
    train_losses_ : ndarray of shape (train_steps,)
        With ``fine_tune=True``: the contrastive loss of every step.
    failures_ : list of BatchFailure
        The images that failed in the most recent call (``fit``,
        ``transform``, ``transform_patches``) as ``(index, source, reason)``,
        in input order; empty if none did.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from exifclip.modeling import create_model
    >>> d = tempfile.mkdtemp(); create_model("small", seed=0).save_pretrained(d)
    >>> emb = ExifPatchEmbedder(model=d, device="cpu").fit()
    >>> img = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    >>> emb.transform([img, img]).shape
    (2, 128)
    >>> emb.embed_exif(["Make: Canon, Model: Canon EOS 5D"]).shape
    (1, 128)
    """

    def __init__(
        self,
        model: str = "exifclip-small",
        revision: str | None = None,
        patch_size: int | None = None,
        num_per_dim: int = 30,
        stride: int | None = None,
        batch_size: int = 256,
        device: str = "auto",
        dtype: str | None = None,
        mode: str = "exact",
        errors: str = "warn",
        progress: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fine_tune: bool = False,
        train_steps: int = 200,
        train_batch_size: int = 32,
        learning_rate: float = 5e-5,
        seed: int = 0,
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
        self.errors = errors
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels
        self.fine_tune = fine_tune
        self.train_steps = train_steps
        self.train_batch_size = train_batch_size
        self.learning_rate = learning_rate
        self.seed = seed

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "fine_tune": ["boolean"],
        "train_steps": [POSITIVE_INT],
        "train_batch_size": [POSITIVE_INT],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }

    def _load(self) -> None:
        self.model_ = load_model(
            self.model, revision=self.revision, device=resolve_device(self.device), dtype=self.dtype
        )
        self.patch_size_ = int(self.patch_size or self.model_.config.patch_size)
        self.embedding_dim_ = int(self.model_.config.embed_dim)

    def fit(self, X: Any = None, y: Any = None) -> ExifPatchEmbedder:
        """Load the model; with ``fine_tune=True`` also fine-tune it on ``X``.

        Parameters
        ----------
        X : image source or list of them
            Not used zero shot. With ``fine_tune=True``: the photos (paths,
            bytes or file objects: they must carry their EXIF).
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        self._fine_tuned = False
        self.failures_: list[BatchFailure] = []
        if not self.fine_tune:
            self._load()
            return self
        if X is None:
            raise ValueError("fine_tune=True needs photos: call fit(paths) with images that carry their EXIF")
        self._fine_tune(as_source_list(X))
        return self

    def _fine_tune(self, sources: list) -> None:
        from .training.finetune import fine_tune

        device = resolve_device(self.device)
        model = load_model(self.model, revision=self.revision, device="cpu", use_cache=False)  # float32 to train
        patch_size = int(self.patch_size or model.config.patch_size)
        with self._failure_report() as report:
            result = fine_tune(
                model,
                sources,
                report=report,
                patch_size=patch_size,
                steps=self.train_steps,
                batch_size=self.train_batch_size,
                learning_rate=self.learning_rate,
                seed=self.seed,
                device=str(device),
                progress=self.progress,
            )
        self.model_ = result.model.eval()
        if self.dtype is not None:
            self.model_ = self.model_.to(dtype=resolve_dtype(self.dtype))
        self.patch_size_ = patch_size
        self.embedding_dim_ = int(self.model_.config.embed_dim)
        self.train_losses_ = np.asarray(result.losses, dtype=np.float64)
        self._fine_tuned = True

    def save_pretrained(self, save_directory: Any) -> Any:
        """Write the fitted (possibly fine-tuned) model as a model directory.

        ``load_model(save_directory)`` and every estimator's ``model=`` accept
        it: config, ``model.safetensors`` and the tokenizer.

        Returns
        -------
        The directory.
        """
        check_is_fitted(self, "model_")
        self.model_.save_pretrained(save_directory)
        return save_directory

    def __getstate__(self) -> dict:
        # A loaded model is not pickled: the fitted estimator stores where it
        # came from and reloads it when restored. A fine-tuned model exists
        # nowhere else, so its files (safetensors weights, config, tokenizer)
        # travel in the pickle as bytes.
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        if state.get("_fine_tuned") and model is not None:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                state["_model_files"] = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        return state

    def __setstate__(self, state: dict) -> None:
        files = state.pop("_model_files", None)
        self.__dict__.update(state)
        if files is not None:
            import tempfile
            from pathlib import Path

            device = resolve_device(self.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
                self.model_ = load_model(tmp, device="cpu", use_cache=False).to(device).eval()
        elif "patch_size_" in state:
            self._load()

    # -- transforms ---------------------------------------------------------
    def transform_patches(self, X: Any, *, report: BatchErrors | None = None) -> list[PatchEmbeddings | None]:
        """Per image, the patch embeddings and their grid.

        Parameters
        ----------
        X : image source or list of them
        report : BatchErrors, optional
            Where failed images go, for a caller (another estimator, the
            command line) that keeps its own record; then ``failures_`` of
            this embedder is left as it was. By default a report made from
            ``errors``, whose failures end in ``failures_``.

        Returns
        -------
        list of PatchEmbeddings or None
            Aligned with ``X``: ``None`` where an image failed (``errors``
            ``"warn"`` or ``"skip"``; listed in ``failures_``).

        Raises
        ------
        BatchItemError
            With ``errors="raise"``, at the first image that fails.
        """
        check_is_fitted(self, "model_")
        sources = as_source_list(X)
        if report is not None:
            return self._embed(sources, report)
        with self._failure_report() as own:
            return self._embed(sources, own)

    def _embed(self, sources: list, report: BatchErrors) -> list[PatchEmbeddings | None]:
        common = dict(patch_size=self.patch_size_, num_per_dim=self.num_per_dim, stride=self.stride, errors=report,
                      progress=self.progress,
                      load_options={"allow_truncated": bool(self.allow_truncated), "max_pixels": self.max_pixels})
        if self.mode == "fast":
            return embed_patches_fast(self.model_, sources, **common)
        return embed_patches(self.model_, sources, batch_size=self.batch_size, **common)

    def transform(self, X: Any) -> np.ndarray:
        """Image embeddings: the L2-normalised mean of each image's patches.

        Parameters
        ----------
        X : image source or list of them

        Returns
        -------
        ndarray of shape (n_images, embedding_dim_), float32
            Aligned with ``X``: rows of images that failed (``errors``
            ``"warn"`` or ``"skip"``; listed in ``failures_``) are NaN.

        Raises
        ------
        BatchItemError
            With ``errors="raise"``, at the first image that fails.
        """
        per_image = self.transform_patches(X)
        out = np.full((len(per_image), self.embedding_dim_), np.nan, np.float32)
        for i, item in enumerate(per_image):
            if item is not None:
                out[i] = pool_patch_embeddings(item.embeddings)
        return out

    def embed_exif(self, texts: str | dict | Iterable[str | dict]) -> np.ndarray:
        """Embed EXIF metadata on the text side.

        Parameters
        ----------
        texts : str, dict, or a list of them
            EXIF sentences, or dicts from :func:`exifclip.exif.read_exif`
            (written with :func:`exifclip.exif.exif_to_text`).

        Returns
        -------
        ndarray of shape (n_texts, embedding_dim_), float32, L2-normalised
        """
        check_is_fitted(self, "model_")
        if isinstance(texts, (str, dict)):
            texts = [texts]
        items = [exif_to_text(t) if isinstance(t, dict) else t for t in texts]
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected a str or an EXIF dict, got {type(t).__name__}")
        if not items:
            raise ValueError("no texts given: the input list is empty")
        return embed_texts(self.model_, items, batch_size=self.batch_size)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, ``exifpatchembedder0``, ...."""
        check_is_fitted(self, "embedding_dim_")
        return np.asarray([f"exifpatchembedder{i}" for i in range(self.embedding_dim_)], dtype=object)
