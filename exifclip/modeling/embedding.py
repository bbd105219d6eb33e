"""Patch and EXIF-text embeddings: the functional core under every estimator.

:func:`embed_patches` sends every grid patch through the image tower (exact
mode, the paper's way), batching patches across images;
:func:`embed_patches_fast` runs the tower's trunk once per photo and pools
each patch from its feature map (:mod:`exifclip.modeling.dense`);
:func:`embed_texts` embeds EXIF sentences on the text side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._device import autocast
from ..batch import ITEM_ERRORS, BatchErrors
from ..io import ImageLoadError, load_image, source_name
from ..patches import PatchGrid, iter_patch_batches, make_grid, model_view, prefetch
from .dense import DEFAULT_MARGIN, DEFAULT_TILE, dense_patch_embeddings
from .model import ExifClipModel, patches_to_pixel_values

__all__ = [
    "CPU_FORWARD_CHUNK",
    "PatchEmbeddings",
    "embed_patches",
    "forward_patches",
    "embed_patches_fast",
    "embed_texts",
    "pool_patch_embeddings",
]


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


def forward_patches(model: Any, patches: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Unit-norm embeddings of uint8 patches ``(B, P, P, 3)``: ``(B, dim)`` float32.

    With ``chunk`` the model sees fixed batches of ``chunk`` patches, the last
    one zero-padded, so a patch's embedding does not depend on its neighbours
    in the batch (see :data:`CPU_FORWARD_CHUNK`). Runs under
    ``torch.inference_mode`` and, on CUDA, autocast.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> model = create_model("small", seed=0)
    >>> patches = np.zeros((3, 64, 64, 3), np.uint8)
    >>> forward_patches(model, patches, chunk=2).shape
    (3, 128)
    """
    first = next(model.parameters())
    device, pixel_dtype = first.device, first.dtype  # bf16 weights on the CPU need bf16 inputs
    mean, std = model.config.image_mean, model.config.image_std
    with torch.inference_mode(), autocast(device):
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(device, non_blocking=True)
        n = x.shape[0]
        if chunk is None:
            z = model.get_image_features(patches_to_pixel_values(x, mean, std, dtype=pixel_dtype))
        else:
            padded = -(-n // chunk) * chunk
            if padded != n:
                x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
            z = torch.cat([
                model.get_image_features(patches_to_pixel_values(x[i : i + chunk], mean, std, dtype=pixel_dtype))
                for i in range(0, padded, chunk)
            ])[:n]
        return F.normalize(z.float(), dim=-1).cpu().numpy()


def _image_and_grid(source: Any, patch_size: int, num_per_dim: int, stride: int | None,
                    load_options: dict | None) -> tuple[np.ndarray, PatchGrid]:
    image = load_image(source, **(load_options or {}))
    try:
        return image, make_grid(image.shape, patch_size, num_per_dim=num_per_dim, stride=stride)
    except ValueError as exc:
        raise ImageLoadError(f"{source_name(source)}: {exc}") from None


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
                image, grid = _image_and_grid(source, patch_size, num_per_dim, stride, load_options)
            except ITEM_ERRORS as exc:
                report.fail(i, source, exc, defer=True)
                failed.append((i, exc))
                if bar is not None:
                    bar.update(1)
                side = patch_size + 2 * model.config.patch_context
                yield np.empty((0, 0, side, side, 3), np.uint8)  # keeps the index
                continue
            grids[i] = grid
            outputs[i] = np.empty((grid.n_patches, model.config.embed_dim), np.float32)
            yield model_view(model, image, grid)

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
                z = forward_patches(model, patches, chunk)
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


def embed_patches_fast(
    model: ExifClipModel,
    sources: Sequence[Any],
    patch_size: int | None = None,
    num_per_dim: int = 30,
    stride: int | None = None,
    errors: str | BatchErrors = "raise",
    progress: bool = False,
    load_options: dict | None = None,
    tile: int = DEFAULT_TILE,
    margin: int | None = DEFAULT_MARGIN,
) -> list[PatchEmbeddings | None]:
    """:func:`embed_patches` in fast mode: the trunk once per photo, pooled per patch.

    Same grid, same output and the same ``errors`` rule as
    :func:`embed_patches`; the embeddings come from
    :func:`exifclip.modeling.dense.dense_patch_embeddings` (the photo in tiles
    of ``tile`` pixels with ``margin`` pixels of context, by default the
    trunk's :func:`~exifclip.modeling.dense.trunk_margin`), so each pixel goes
    through the ResNet about once instead of ``(patch_size / stride) ** 2``
    times. Photos are embedded one at a time; memory is one tile's.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> img = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    >>> [e.embeddings.shape for e in embed_patches_fast(create_model("small", seed=0), [img], stride=32)]
    [(6, 128)]
    """
    report = errors if isinstance(errors, BatchErrors) else BatchErrors(errors)
    patch_size = int(patch_size or model.config.patch_size)
    device = next(model.parameters()).device
    out: list[PatchEmbeddings | None] = [None] * len(sources)
    items = enumerate(sources)
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, total=len(sources), unit="img", desc="embedding")
    with torch.inference_mode(), autocast(device):
        for i, source in items:
            try:
                image, grid = _image_and_grid(source, patch_size, num_per_dim, stride, load_options)
            except ITEM_ERRORS as exc:
                report.fail(i, source, exc)
                continue
            out[i] = PatchEmbeddings(dense_patch_embeddings(model, image, grid, tile, margin), grid)
    return out


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
