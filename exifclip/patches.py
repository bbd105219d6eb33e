"""The patch grid: where patches are cut, and the patches as views.

The paper cuts every photo into a grid of overlapping, full-resolution
patches. With patch size ``P`` and ``num_per_dim`` patches wanted along the
longer side, the official evaluation uses one stride for both axes::

    stride = (max(H, W) - P) // num_per_dim
    n_rows = 1 + (H - P) // stride,  n_cols = 1 + (W - P) // stride

so the longer side gets ``num_per_dim + 1`` patches (or a few more when the
division is not exact) and the shorter side proportionally fewer. The stride
is clamped to at least 1 pixel for images barely larger than a patch. An
explicit ``stride`` overrides the formula.

Patches are never copied until they are batched: :func:`patch_view` returns a
strided view of the image, and :func:`iter_patch_batches` gathers only the
patches of one batch at a time, so a 50-megapixel photo costs memory for its
batch, not for all of its patches.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from collections import deque
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["PatchGrid", "context_view", "iter_patch_batches", "make_grid", "model_view", "patch_view", "prefetch"]


@dataclass(frozen=True)
class PatchGrid:
    """Geometry of the patches cut from one image.

    Attributes
    ----------
    height, width : int
        Image size in pixels.
    patch_size : int
        Side of the square patches.
    stride : int
        Step between neighbouring patches, the same on both axes.
    n_rows, n_cols : int
        Number of patches along each axis; patches are ordered row-major.
    """

    height: int
    width: int
    patch_size: int
    stride: int
    n_rows: int
    n_cols: int

    @property
    def n_patches(self) -> int:
        """Total number of patches, ``n_rows * n_cols``."""
        return self.n_rows * self.n_cols

    def positions(self) -> np.ndarray:
        """Top-left ``(y, x)`` pixel of every patch, row-major, shape ``(n_patches, 2)``."""
        ys = np.arange(self.n_rows) * self.stride
        xs = np.arange(self.n_cols) * self.stride
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1)


def make_grid(shape: Sequence[int], patch_size: int, num_per_dim: int = 30, stride: int | None = None) -> PatchGrid:
    """Lay the paper's patch grid over an image of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        ``(H, W)`` or ``(H, W, C)``.
    patch_size : int
        Side of the square patches, in pixels.
    num_per_dim : int, default=30
        Patches wanted along the longer side (the paper's evaluation uses 30).
        Ignored when ``stride`` is given.
    stride : int, optional
        Explicit step between patches, in pixels.

    Returns
    -------
    PatchGrid

    Raises
    ------
    ValueError
        If the image is smaller than one patch or a parameter is not positive.

    Examples
    --------
    >>> g = make_grid((480, 640), patch_size=124, num_per_dim=30)
    >>> g.stride, g.n_rows, g.n_cols
    (17, 21, 31)
    >>> make_grid((480, 640), 124, stride=100).n_cols
    6
    """
    height, width = int(shape[0]), int(shape[1])
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"image of {height}x{width} pixels is smaller than one {patch_size}x{patch_size} patch"
        )
    if stride is None:
        if num_per_dim < 1:
            raise ValueError(f"num_per_dim must be a positive integer, got {num_per_dim}")
        stride = max((max(height, width) - patch_size) // num_per_dim, 1)
    elif stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    stride = int(stride)
    return PatchGrid(
        height=height,
        width=width,
        patch_size=int(patch_size),
        stride=stride,
        n_rows=1 + (height - patch_size) // stride,
        n_cols=1 + (width - patch_size) // stride,
    )


def patch_view(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """All patches of ``image`` on ``grid`` as a read-only view, no copy.

    Parameters
    ----------
    image : ndarray of shape (H, W, C)
    grid : PatchGrid
        A grid made for this image's size.

    Returns
    -------
    ndarray of shape (n_rows, n_cols, P, P, C)
        ``view[r, c]`` is the patch whose top-left pixel is
        ``(r * stride, c * stride)``.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    >>> g = make_grid(img.shape, patch_size=4, stride=2)
    >>> v = patch_view(img, g)
    >>> v.shape, np.shares_memory(v, img)
    ((2, 2, 4, 4, 3), True)
    >>> bool((v[1, 1] == img[2:6, 2:6]).all())
    True
    """
    if image.shape[0] != grid.height or image.shape[1] != grid.width:
        raise ValueError(f"grid is for {grid.height}x{grid.width} images, got {image.shape[:2]}")
    p, s = grid.patch_size, grid.stride
    windows = np.lib.stride_tricks.sliding_window_view(image, (p, p), axis=(0, 1))
    # sliding_window_view puts the window axes last: (rows, cols, C, P, P).
    windows = windows[: (grid.n_rows - 1) * s + 1 : s, : (grid.n_cols - 1) * s + 1 : s]
    return windows.transpose(0, 1, 3, 4, 2)


def context_view(image: np.ndarray, grid: PatchGrid, context: int, fill: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Each patch of ``grid`` with ``context`` pixels of the photo around it: ``(rows, cols, S, S, C)``.

    ``S = patch_size + 2 * context``; beyond the photo's edge the view holds
    ``fill`` (a model's mean colour: zero once normalised, as the network's
    own padding). ``context=0`` is :func:`patch_view`. The view reads a
    padded copy of ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    >>> g = make_grid(img.shape, patch_size=4, stride=2)
    >>> v = context_view(img, g, 1)
    >>> v.shape, bool((v[0, 0, 1:, 1:] == img[0:5, 0:5]).all()), v[0, 0, 0, 0].tolist()
    ((2, 2, 6, 6, 3), True, [0, 0, 0])
    """
    if not context:
        return patch_view(image, grid)
    if image.shape[0] != grid.height or image.shape[1] != grid.width:
        raise ValueError(f"grid is for {grid.height}x{grid.width} images, got {image.shape[:2]}")
    c = int(context)
    padded = np.empty((grid.height + 2 * c, grid.width + 2 * c, image.shape[2]), image.dtype)
    padded[...] = np.asarray(fill, image.dtype)
    padded[c:c + grid.height, c:c + grid.width] = image
    wider = PatchGrid(padded.shape[0], padded.shape[1], grid.patch_size + 2 * c, grid.stride, grid.n_rows,
                      grid.n_cols)
    return patch_view(padded, wider)


def model_view(model, image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """The patches of ``grid`` as ``model`` reads them: with its ``config.patch_context`` around each
    (:func:`context_view`, padded with its mean colour), or the patches alone."""
    config = model.config
    context = int(getattr(config, "patch_context", 0) or 0)
    if not context:
        return patch_view(image, grid)
    return context_view(image, grid, context, [round(255 * m) for m in config.image_mean])


def iter_patch_batches(
    views: Iterable[np.ndarray], batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Gather patches from several images into fixed-size batches.

    Patches of consecutive images share a batch, so small images do not
    leave batches half empty. ``views`` may be a generator: each image is
    held only until its last patch has been batched.

    Parameters
    ----------
    views : iterable of ndarray
        Patch views from :func:`patch_view`, one per image; a view with no
        patches (shape ``(0, 0, ...)``) is skipped but keeps its index.
    batch_size : int
        Patches per batch (the last batch may be smaller).

    Yields
    ------
    patches : ndarray of shape (B, P, P, C)
        A contiguous copy of just this batch's patches.
    image_index : ndarray of shape (B,)
        Which view each patch came from.
    patch_index : ndarray of shape (B,)
        Row-major index of each patch within its image.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8, 3), np.uint8)
    >>> v = patch_view(img, make_grid(img.shape, 4, stride=2))
    >>> [b[0].shape[0] for b in iter_patch_batches([v, v], batch_size=5)]
    [5, 5, 5, 3]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    pending: deque[list] = deque()  # [image index, view, patch indices still to emit]
    n_pending = 0

    def take(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nonlocal n_pending
        chunks, image_index, patch_index = [], [], []
        while n > 0:
            entry = pending[0]
            i, view, idx = entry
            part = idx[:n]
            # Fancy indexing copies only the selected patches out of the view.
            chunks.append(view[part // view.shape[1], part % view.shape[1]])
            image_index.append(np.full(len(part), i))
            patch_index.append(part)
            n -= len(part)
            n_pending -= len(part)
            if len(part) < len(idx):
                entry[2] = idx[len(part):]
            else:
                pending.popleft()
        return np.concatenate(chunks), np.concatenate(image_index), np.concatenate(patch_index)

    for i, view in enumerate(views):
        n = view.shape[0] * view.shape[1]
        if n == 0:
            continue
        pending.append([i, view, np.arange(n)])
        n_pending += n
        while n_pending >= batch_size:
            yield take(batch_size)
    if n_pending:
        yield take(n_pending)


def prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead.

    Decoding (PIL) and patch gathering (numpy) release the GIL, so they
    overlap with the model's forward pass. An exception in the thread is
    raised in the caller's.

    Examples
    --------
    >>> list(prefetch(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            buffer.put(exc)
            return
        buffer.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
