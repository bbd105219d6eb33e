"""Patch embeddings of a stream of images, yielded one image at a time, in input order.

:func:`iter_embed_patches` is the streaming form of
:func:`exifclip.modeling.embedding.embed_patches` (and, with
``mode="fast"``, of :func:`~exifclip.modeling.embedding.embed_patches_fast`):
the same grid, the same batches of patches across images, the same
embeddings bit for bit on the CPU, but an image's result is handed to the
caller as soon as its last patch is embedded and the images before it have
been handed over, and nothing of it is kept after that. Memory is one batch
of patches, the few images whose patches are in that batch, and the results
of images that finished ahead of an earlier, larger one; never the whole
input. Every estimator call over many images goes through here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ._device import autocast
from .batch import ITEM_ERRORS, BatchErrors
from .io import ImageLoadError, load_image, source_name
from .modeling.dense import DEFAULT_MARGIN, DEFAULT_TILE, dense_patch_embeddings
from .modeling.embedding import CPU_FORWARD_CHUNK, PatchEmbeddings, forward_patches
from .patches import make_grid, model_view, prefetch

__all__ = ["DECODE_AHEAD_ON_CPU", "Lookup", "iter_embed_patches"]

#: Decode the next photos in a thread while the CPU embeds this one. On an accelerator the CPU is idle during the
#: forward pass and decoding ahead always pays; on a CPU the thread competes with the intra-op threads
#: (benchmarks/bench_cpu_levers.py, "threads", measures both ways).
DECODE_AHEAD_ON_CPU = False

#: ``lookup(source) -> PatchEmbeddings | None``: results known before any decoding (a cache).
Lookup = Callable[[Any], "PatchEmbeddings | None"]


class _Decoded:
    """One input, read: a known result (``item``), a failure (``error``), or an image and its grid."""

    __slots__ = ("index", "source", "image", "grid", "error", "item")

    def __init__(self, index, source, image=None, grid=None, error=None, item=None):
        self.index, self.source, self.image, self.grid, self.error, self.item = index, source, image, grid, error, item


def _decode_all(sources: Iterable, patch_size: int, num_per_dim: int, stride: int | None,
                load_options: dict | None, lookup: Lookup | None) -> Iterator[_Decoded]:
    """Read each source in turn; the failures of one image are returned as values, not raised."""
    for i, source in enumerate(sources):
        if lookup is not None:
            hit = lookup(source)
            if hit is not None:
                yield _Decoded(i, source, item=hit)
                continue
        try:
            image = load_image(source, **(load_options or {}))
            try:
                grid = make_grid(image.shape, patch_size, num_per_dim=num_per_dim, stride=stride)
            except ValueError as exc:
                raise ImageLoadError(f"{source_name(source)}: {exc}") from None
        except ITEM_ERRORS as exc:
            yield _Decoded(i, source, error=exc)
            continue
        yield _Decoded(i, source, image=image, grid=grid)


class _Queue:
    """Patches waiting for a batch, from several images, and the images waiting for their turn."""

    def __init__(self, model: Any):
        self.model = model  # its embedding size, and how its patches are cut (model_view)
        self.dim = int(model.config.embed_dim)
        self.waiting: deque[list] = deque()  # [index, view, patch indices still to batch]
        self.n_waiting = 0
        self.open: dict[int, list] = {}  # index -> [source, grid, out, patches not yet embedded]
        self.ready: dict[int, tuple[Any, PatchEmbeddings | None]] = {}
        self.next = 0  # the index of the next result to hand over

    def pop_ready(self) -> Iterator[tuple[int, Any, PatchEmbeddings | None]]:
        """Hand over the finished results that are next in input order, forgetting them."""
        while self.next in self.ready:
            source, item = self.ready.pop(self.next)
            self.next += 1
            yield self.next - 1, source, item

    def embed(self, model: Any, n: int, chunk: int | None) -> None:
        """Embed the next ``n`` waiting patches; images whose last patch this was become ready."""
        patches, image_index, patch_index = self.take(n)
        self.store(forward_patches(model, patches, chunk), image_index, patch_index)

    def add(self, d: _Decoded) -> None:
        grid = d.grid
        self.open[d.index] = [d.source, grid, np.empty((grid.n_patches, self.dim), np.float32), grid.n_patches]
        self.waiting.append([d.index, model_view(self.model, d.image, grid), np.arange(grid.n_patches)])
        self.n_waiting += grid.n_patches

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``n`` waiting patches, copied out of their views, with their image and patch index."""
        chunks, image_index, patch_index = [], [], []
        while n > 0 and self.waiting:
            entry = self.waiting[0]
            i, view, idx = entry
            part = idx[:n]
            chunks.append(view[part // view.shape[1], part % view.shape[1]])
            image_index.append(np.full(len(part), i))
            patch_index.append(part)
            n -= len(part)
            self.n_waiting -= len(part)
            if len(part) < len(idx):
                entry[2] = idx[len(part):]
            else:
                self.waiting.popleft()  # the image itself is let go here
        return np.concatenate(chunks), np.concatenate(image_index), np.concatenate(patch_index)

    def store(self, z: np.ndarray, image_index: np.ndarray, patch_index: np.ndarray) -> None:
        for i in np.unique(image_index):
            sel = image_index == i
            entry = self.open[int(i)]
            entry[2][patch_index[sel]] = z[sel]
            entry[3] -= int(sel.sum())
            if entry[3] == 0:
                source, grid, out, _ = self.open.pop(int(i))
                self.ready[int(i)] = (source, PatchEmbeddings(out, grid))


def _progress_bar(progress: bool, total: int | None):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="embedding")


def iter_embed_patches(
    model: Any,
    sources: Iterable[Any],
    patch_size: int | None = None,
    num_per_dim: int = 30,
    stride: int | None = None,
    batch_size: int = 256,
    mode: str = "exact",
    errors: str | BatchErrors = "raise",
    progress: bool = False,
    load_options: dict | None = None,
    lookup: Lookup | None = None,
    total: int | None = None,
) -> Iterator[tuple[int, Any, PatchEmbeddings | None]]:
    """Embed every grid patch of a stream of images, yielding each image's result in input order.

    Parameters
    ----------
    model : ExifClipModel
        Used in inference mode on its own device (only while it runs: the
        caller's code between items is not in inference mode).
    sources : iterable of image sources
        A list or a generator: read one item at a time, as batches need them.
    patch_size : int, optional
        Defaults to the model's ``config.patch_size``.
    num_per_dim, stride : int
        The grid (see :func:`exifclip.patches.make_grid`).
    batch_size : int, default=256
        Patches per forward pass, across images; on the CPU rounded as
        :func:`~exifclip.modeling.embedding.embed_patches` does, with the
        same fixed chunks, so the embeddings are the same bit for bit.
    mode : {"exact", "fast"}, default="exact"
        ``"fast"``: each photo's trunk once, pooled per patch
        (:func:`exifclip.modeling.dense.dense_patch_embeddings`), one photo
        at a time.
    errors : {"raise", "skip", "warn"} or BatchErrors, default="raise"
        What a bad image does (see :mod:`exifclip.batch`); a failed image is
        yielded as ``None`` in its place.
    progress : bool, default=False
        Show a progress bar over images.
    load_options : dict, optional
        Keyword options of :func:`exifclip.io.load_image`.
    lookup : callable, optional
        ``lookup(source)``: a result known without the model (a cache hit),
        or ``None``. Called once per source, before it is decoded.
    total : int, optional
        Number of sources, for the progress bar.

    Yields
    ------
    index : int
        Position in ``sources``.
    source : image source
        The item itself (to name it, or to look at it again).
    embeddings : PatchEmbeddings or None
        ``None`` where the image failed.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> model = create_model("small", seed=0)
    >>> images = (np.zeros((96, 128, 3), np.uint8) for _ in range(3))
    >>> [(i, e.embeddings.shape) for i, _, e in iter_embed_patches(model, images, stride=32)]
    [(0, (6, 128)), (1, (6, 128)), (2, (6, 128))]
    """
    report = errors if isinstance(errors, BatchErrors) else BatchErrors(errors)
    patch_size = int(patch_size or model.config.patch_size)
    device = next(model.parameters()).device
    chunk = CPU_FORWARD_CHUNK if device.type == "cpu" else None
    if chunk is not None:
        batch_size = max(chunk, batch_size // chunk * chunk)
    decoded = _decode_all(sources, patch_size, num_per_dim, stride, load_options, lookup)
    if device.type != "cpu" or DECODE_AHEAD_ON_CPU:
        decoded = prefetch(decoded)
    queue = _Queue(model)
    bar = _progress_bar(progress, total)
    try:
        for d in decoded:
            if d.error is not None:
                report.fail(d.index, d.source, d.error)
                queue.ready[d.index] = (d.source, None)
            elif d.item is not None:
                queue.ready[d.index] = (d.source, d.item)
            elif mode == "fast":
                with torch.inference_mode(), autocast(device):
                    z = dense_patch_embeddings(model, d.image, d.grid, DEFAULT_TILE, DEFAULT_MARGIN)
                queue.ready[d.index] = (d.source, PatchEmbeddings(z, d.grid))
            else:
                queue.add(d)
            del d  # the image lives on in the queue's view only until its patches are batched
            while queue.n_waiting >= batch_size:
                queue.embed(model, batch_size, chunk)
            for result in queue.pop_ready():
                if bar is not None:
                    bar.update(1)
                yield result
        while queue.n_waiting:
            queue.embed(model, batch_size, chunk)
        for result in queue.pop_ready():
            if bar is not None:
                bar.update(1)
            yield result
    finally:
        close = getattr(decoded, "close", None)
        if close is not None:
            close()
        if bar is not None:
            bar.close()
        report.flush()
