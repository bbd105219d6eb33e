"""ExifPatchEmbedder: photos in, camera-trace embeddings out.

The estimator validates its parameters, loads the model through the
process-level cache of :mod:`exifclip.modeling.hub`, and calls the functional
core of :mod:`exifclip.modeling.embedding` (:func:`embed_patches`, exact;
:func:`embed_patches_fast`, fast mode; :func:`embed_texts`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ._base import EMBEDDING_MODES, POSITIVE_INT, ImageEstimator
from ._device import resolve_device, resolve_dtype
from .batch import BatchErrors, BatchFailure
from .exif import exif_to_text
from .io import DEFAULT_MAX_PIXELS, as_source_list
from .modeling.embedding import (  # noqa: F401 - embed_patches and PatchEmbeddings: their exifclip 0.1 path
    PatchEmbeddings,
    embed_patches,
    embed_texts,
    pool_patch_embeddings,
)
from .modeling.hub import load_model
from .sources import iter_sources
from .streaming import iter_embed_patches

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
    runtime : {"torch", "onnxruntime"}, default="torch"
        What runs the image tower: PyTorch, or ONNX Runtime on the CPU
        (``pip install "exifclip[onnx]"``; float32, ``device="cpu"``): the
        same embeddings to about 1e-6, in less time (see
        :mod:`exifclip.modeling.onnx_runtime`).
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
    memory : str, path or joblib.Memory, optional
        Where to keep patch embeddings between calls (a folder, or a
        ``joblib.Memory`` whose ``location`` is used; ``None``: no cache).
        Entries are keyed by the image's content (a SHA-256 of the file's
        bytes or of the pixels), the model's weights and configuration, the
        grid and the mode, so the candidates of a ``GridSearchCV`` and
        repeated runs embed each photo once, whatever it is called. See
        :class:`exifclip.cache.EmbeddingCache`.

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
        ``transform``, ``transform_patches``, an ``iter_transform_patches``
        iterated to its end) as ``(index, source, reason)``, in input order;
        empty if none did.

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
        runtime: str = "torch",
        errors: str = "warn",
        progress: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fine_tune: bool = False,
        train_steps: int = 200,
        train_batch_size: int = 32,
        learning_rate: float = 5e-5,
        seed: int = 0,
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
        self.errors = errors
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels
        self.fine_tune = fine_tune
        self.train_steps = train_steps
        self.train_batch_size = train_batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.memory = memory

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "fine_tune": ["boolean"],
        "train_steps": [POSITIVE_INT],
        "train_batch_size": [POSITIVE_INT],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    }

    def _load(self) -> None:
        self.model_ = self._runtime_model(load_model(
            self.model, revision=self.revision, device=resolve_device(self.device), dtype=self.dtype
        ))
        self.patch_size_ = int(self.patch_size or self.model_.config.patch_size)
        self.embedding_dim_ = int(self.model_.config.embed_dim)

    def _runtime_model(self, model: Any) -> Any:
        """``model``, its image tower in ONNX Runtime when ``runtime="onnxruntime"``."""
        if self.runtime == "torch":
            return model
        from .modeling.onnx_runtime import onnx_runtime_model

        return onnx_runtime_model(model)

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
        self.model_ = self._runtime_model(self.model_)
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
        state.pop("_cache", None)  # made again from ``memory`` when needed
        state.pop("_cache_ident", None)
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
                self.model_ = self._runtime_model(load_model(tmp, device="cpu", use_cache=False).to(device).eval())
        elif "patch_size_" in state:
            self._load()

    # -- transforms ---------------------------------------------------------
    def transform_patches(self, X: Any, *, report: BatchErrors | None = None) -> list[PatchEmbeddings | None]:
        """Per image, the patch embeddings and their grid.

        Parameters
        ----------
        X : image source, or a list, array, Series or iterable of them
            A NumPy array of paths (str or object dtype) is a list of paths.
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

        See Also
        --------
        iter_transform_patches : the same, one image at a time, for collections.
        """
        return list(self.iter_transform_patches(X, report=report))

    def iter_transform_patches(self, X: Any, *, report: BatchErrors | None = None
                               ) -> Iterator[PatchEmbeddings | None]:
        """:meth:`transform_patches` as a stream: each image's result as soon as it is ready, in input order.

        Patches are still batched across images (small images fill a
        batch); ``X`` is read only as far as the next batch needs, and
        nothing is kept of a result once it is yielded, so memory stays flat
        over a collection of any size.

        Parameters
        ----------
        X : image source, or a list, array, Series or iterable (a generator) of them
        report : BatchErrors, optional
            As in :meth:`transform_patches`.

        Yields
        ------
        PatchEmbeddings or None
            One per item of ``X``, in order; ``None`` where an image failed.
            ``failures_`` is complete when the iteration ends.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from exifclip.modeling import create_model
        >>> d = tempfile.mkdtemp(); create_model("small", seed=0).save_pretrained(d)
        >>> emb = ExifPatchEmbedder(model=d, device="cpu", stride=32).fit()
        >>> photos = (np.zeros((96, 128, 3), np.uint8) for _ in range(1000))
        >>> first = next(emb.iter_transform_patches(photos))
        >>> first.embeddings.shape, first.grid.n_rows, first.grid.n_cols
        ((6, 128), 2, 3)
        """
        check_is_fitted(self, "model_")
        sources = iter_sources(X)  # a bad X fails here, before the first item is asked for
        total = len(X) if hasattr(X, "__len__") and not isinstance(X, (str, bytes, np.ndarray)) else None
        return self._stream(sources, report, total)

    def _stream(self, sources: Iterator, report: BatchErrors | None, total: int | None
                ) -> Iterator[PatchEmbeddings | None]:
        if report is not None:
            yield from self._embed(sources, report, total)
            return
        with self._failure_report() as own:
            yield from self._embed(sources, own, total)

    def _embedding_cache(self):
        """The cache ``memory`` names for this fitted model, or None (made once per fitted model and place)."""
        location = self.memory
        if location is not None and not isinstance(location, (str, os.PathLike)):
            location = getattr(location, "location", None)  # joblib.Memory(None) caches nothing
        if location is None:
            return None
        from .cache import EmbeddingCache, model_fingerprint

        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = model_fingerprint(self.model_)
        settings = {"model": self._fingerprint, "patch_size": self.patch_size_, "num_per_dim": self.num_per_dim,
                    "stride": self.stride, "mode": self.mode}
        if self.runtime != "torch":  # only then: caches written before the option stay valid
            settings["runtime"] = self.runtime
        ident = (os.fspath(location), tuple(sorted(settings.items())))
        if getattr(self, "_cache_ident", None) != ident:
            self._cache, self._cache_ident = EmbeddingCache(location, settings), ident
        return self._cache

    def _embed(self, sources: Iterator, report: BatchErrors, total: int | None) -> Iterator[PatchEmbeddings | None]:
        cache = self._embedding_cache()
        stream = iter_embed_patches(
            self.model_, sources, patch_size=self.patch_size_, num_per_dim=self.num_per_dim, stride=self.stride,
            batch_size=self.batch_size, mode=self.mode, errors=report, progress=self.progress,
            load_options={"allow_truncated": bool(self.allow_truncated), "max_pixels": self.max_pixels},
            lookup=None if cache is None else cache.get, total=total,
        )
        for _, source, item in stream:
            if cache is not None:
                cache.remember(source, item)
            yield item

    def transform(self, X: Any) -> np.ndarray:
        """Image embeddings: the L2-normalised mean of each image's patches.

        Parameters
        ----------
        X : image source, or a list, array, Series or iterable (a generator) of them
            Streamed: only each image's pooled row is kept.

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
        missing = np.full(self.embedding_dim_, np.nan, np.float32) if hasattr(self, "embedding_dim_") else None
        rows = [missing if item is None else pool_patch_embeddings(item.embeddings)
                for item in self.iter_transform_patches(X)]
        return np.stack(rows).astype(np.float32, copy=False)

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
