"""ExifPatchEmbedder: photos in, camera-trace embeddings out.

The functional core is :func:`embed_patches` (images -> per-image patch
embeddings) and :func:`embed_texts` (EXIF text -> text embeddings); the
estimator only validates its parameters, loads the model through the
process-level cache of :mod:`exifclip.modeling.hub`, and calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numbers import Integral, Real

from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._device import autocast, resolve_device, resolve_dtype
from ._base import POSITIVE_INT, ImageEstimator
from .batch import ITEM_ERRORS, BatchErrors, BatchFailure
from .exif import exif_to_text
from .modeling.hub import load_model
from .io import DEFAULT_MAX_PIXELS, ImageLoadError, as_source_list, load_image, source_name
from .modeling.model import ExifClipModel, patches_to_pixel_values
from .patches import PatchGrid, iter_patch_batches, make_grid, patch_view, prefetch

__all__ = ["ExifPatchEmbedder", "PatchEmbeddings", "embed_patches", "embed_texts", "pool_patch_embeddings"]


@dataclass
class PatchEmbeddings:
    """The patch embeddings of one image.

    Attributes
    ----------
    embeddings : ndarray of shape (n_patches, dim), float32
        L2-normalised, row-major over the grid.
    grid : PatchGrid
        Where each patch was cut.
    """

    embeddings: np.ndarray
    grid: PatchGrid


#: Patches per forward pass on the CPU, whatever ``batch_size`` says (see
#: :func:`embed_patches`): oneDNN picks kernels by batch size, and outputs for
#: the same patch differ by ~1e-7 between batch sizes; a fixed chunk does not.
CPU_FORWARD_CHUNK = 64


def _forward(model, patches: np.ndarray, device, mean, std, pixel_dtype, chunk: int | None) -> np.ndarray:
    """Unit-norm embeddings of a batch of uint8 patches, in fixed chunks when ``chunk`` is set."""
    x = torch.from_numpy(patches).to(device, non_blocking=True)
    n = x.shape[0]
    if chunk is None:
        z = model.get_image_features(patches_to_pixel_values(x, mean, std, dtype=pixel_dtype))
    else:
        padded = -(-n // chunk) * chunk
        if padded != n:
            x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
        z = torch.cat(
            [
                model.get_image_features(patches_to_pixel_values(x[i : i + chunk], mean, std, dtype=pixel_dtype))
                for i in range(0, padded, chunk)
            ]
        )[:n]
    return F.normalize(z.float(), dim=-1).cpu().numpy()


def embed_patches(
    model: ExifClipModel,
    sources: Sequence[Any],
    patch_size: int | None = None,
    num_per_dim: int = 30,
    stride: int | None = None,
    batch_size: int = 256,
    errors: str | BatchErrors = "raise",
    progress: bool = False,
    on_error: Callable[[int, Exception], None] | None = None,
    load_options: dict | None = None,
) -> list[PatchEmbeddings | None]:
    """Embed every grid patch of every image, batching across images.

    Parameters
    ----------
    model : ExifClipModel
        Used in inference mode on its own device; CUDA runs under autocast.
    sources : sequence of image sources
        Anything :func:`exifclip.io.load_image` accepts.
    patch_size : int, optional
        Defaults to the model's ``config.patch_size``.
    num_per_dim, stride : int
        The grid (see :func:`exifclip.patches.make_grid`).
    batch_size : int, default=256
        Patches per forward pass. On the CPU it is rounded down to a multiple
        of :data:`CPU_FORWARD_CHUNK` (at least one chunk) and the model sees
        fixed chunks of that size, the last one zero-padded: the CPU kernels
        are chosen by batch size and differ in the last bits, so fixed chunks
        make every embedding bit-identical whatever the batch size and
        whatever other images share the batch.
    errors : {"raise", "skip", "warn"} or BatchErrors, default="raise"
        What a bad image does (see :mod:`exifclip.batch`): raise
        :class:`~exifclip.batch.BatchItemError` naming it, or leave ``None``
        in its place (with a warning for ``"warn"``) and embed the others.
        Patches of the other images that shared a batch with it are kept. A
        :class:`~exifclip.batch.BatchErrors` passed here collects the
        failures for the caller.
    progress : bool, default=False
        Show a progress bar over images.
    on_error : callable, optional
        Called as ``on_error(index, exception)`` for each skipped image.
    load_options : dict, optional
        Keyword options of :func:`exifclip.io.load_image` (``allow_truncated``,
        ``max_pixels``).

    Returns
    -------
    list of PatchEmbeddings or None
        Aligned with ``sources``.
    """
    report = errors if isinstance(errors, BatchErrors) else BatchErrors(errors)
    patch_size = int(patch_size or model.config.patch_size)
    device = next(model.parameters()).device
    n = len(sources)
    grids: list[PatchGrid | None] = [None] * n
    outputs: list[np.ndarray | None] = [None] * n
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="img", desc="embedding")
    failed: list[tuple[int, Exception]] = []

    def views() -> Iterator[np.ndarray]:
        # May run in the prefetch thread: warnings wait for the caller's thread.
        for i, source in enumerate(sources):
            try:
                image = load_image(source, **(load_options or {}))
                try:
                    grid = make_grid(image.shape, patch_size, num_per_dim=num_per_dim, stride=stride)
                except ValueError as exc:
                    raise ImageLoadError(f"{source_name(source)}: {exc}") from None
            except ITEM_ERRORS as exc:
                report.fail(i, source, exc, defer=True)
                failed.append((i, exc))
                if bar is not None:
                    bar.update(1)
                yield np.empty((0, 0, patch_size, patch_size, 3), np.uint8)  # keeps the index
                continue
            grids[i] = grid
            outputs[i] = np.empty((grid.n_patches, model.config.embed_dim), np.float32)
            yield patch_view(image, grid)

    mean, std = model.config.image_mean, model.config.image_std
    pixel_dtype = next(model.parameters()).dtype  # bf16 weights on the CPU need bf16 inputs
    remaining: dict[int, int] = {}
    chunk = CPU_FORWARD_CHUNK if device.type == "cpu" else None
    if chunk is not None:
        batch_size = max(chunk, batch_size // chunk * chunk)
    batches = iter_patch_batches(views(), batch_size)
    if device.type != "cpu":
        # An accelerator leaves the CPU idle during the forward pass: decode and
        # gather ahead in a thread. On the CPU they would only compete with it.
        batches = prefetch(batches)
    try:
        with torch.inference_mode(), autocast(device):
            for patches, image_index, patch_index in batches:
                z = _forward(model, patches, device, mean, std, pixel_dtype, chunk)
                for i in np.unique(image_index):
                    sel = image_index == i
                    outputs[i][patch_index[sel]] = z[sel]
                    if bar is not None:
                        remaining.setdefault(int(i), grids[i].n_patches)
                        remaining[int(i)] -= int(sel.sum())
                        if remaining[int(i)] == 0:
                            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        report.flush()
    if on_error is not None:
        for i, exc in failed:
            on_error(i, exc)
    return [None if g is None else PatchEmbeddings(outputs[i], g) for i, g in enumerate(grids)]


def pool_patch_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """One image's embedding: the L2-normalised mean of its patch embeddings.

    Examples
    --------
    >>> [round(float(v), 3) for v in pool_patch_embeddings(np.array([[1.0, 0.0], [0.0, 1.0]]))]
    [0.707, 0.707]
    """
    mean = np.asarray(embeddings, np.float64).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def embed_texts(model: ExifClipModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings of EXIF sentences, ``(n, dim)`` float32."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer saved with it; text embeddings need one")
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(texts), batch_size):
            tokens = model.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=model.config.max_text_length,
                return_tensors="pt",
            )
            z = model.get_text_features(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
            out.append(F.normalize(z.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, model.config.embed_dim), np.float32)


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
        return embed_patches(
            self.model_,
            sources,
            patch_size=self.patch_size_,
            num_per_dim=self.num_per_dim,
            stride=self.stride,
            batch_size=self.batch_size,
            errors=report,
            progress=self.progress,
            load_options={"allow_truncated": bool(self.allow_truncated), "max_pixels": self.max_pixels},
        )

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
