"""Fast mode: the image tower's trunk runs once over the whole photo, and each
grid patch is embedded by pooling the final feature map over its window.

The paper's grid overlaps so much (a 124-px patch every ~30 px) that exact
mode sends each pixel through the ResNet about 16 times. Here the trunk
(stem and stages) sees every pixel about once: the photo is cut into tiles
aligned to the trunk's total stride, each read with a margin of real pixels
around it (:func:`trunk_margin`) so that the features kept are those of the
whole photo, and the patch embedding is the average of the feature map over
the patch's window (the tower's own global average pool, over the window,
with cells cut by the window's edge weighted by the part inside) followed by
the projection.

It differs from exact mode where the ResNet sees a patch's border: exact mode
pads each patch with zeros, fast mode sees the pixels around it. BatchNorm is
in eval mode, a fixed per-channel affine map, so it does not differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..patches import PatchGrid
from .model import patches_to_pixel_values

__all__ = ["DEFAULT_MARGIN", "DEFAULT_TILE", "dense_patch_embeddings", "feature_stride", "receptive_field",
           "trunk_features", "trunk_margin", "window_weights"]

#: Side of the square tiles the trunk sees at once, in pixels (rounded up to the stride). Each tile re-reads
#: the trunk's margin around it, so larger tiles cost less time; memory grows with the tile (docs/benchmarks.md).
DEFAULT_TILE = 2048
#: Pixels of real context read around each tile; ``None``: the trunk's own, :func:`trunk_margin`.
DEFAULT_MARGIN = None


def feature_stride(model: Any) -> int:
    """Pixels per cell of the trunk's final feature map (32 for the ResNets here).

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> feature_stride(create_model("small", seed=0))
    32
    """
    return model.config.feature_stride


def _round_up(value: int, step: int) -> int:
    return -(-int(value) // step) * step


def _cell_field(model: Any) -> tuple[int, int]:
    """The input pixels ``[lo, hi]`` that cell 0 of the trunk's final feature map depends on.

    Walks the front-end and the ResNet's main path (convolutions and
    pooling, in order; the shortcuts' 1x1 convolutions see a subset of it)
    back from the cell: a layer of kernel ``k``, stride ``s``, padding ``p``
    and dilation ``d`` maps ``[lo, hi]`` to ``[s lo - p, s hi - p + (k - 1) d]``.
    Cell ``i`` depends on the same span shifted by ``i`` times the stride.
    """
    k = getattr(model.front_end, "kernel_size", 1)
    layers = [(k, 1, k // 2, 1)]
    for name, module in model.vision_model.named_modules():
        if "shortcut" in name.split(".") or not isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            continue
        layers.append(tuple(v[0] if isinstance(v, tuple) else v
                            for v in (module.kernel_size, module.stride, module.padding, module.dilation)))
    lo = hi = 0
    for kernel, stride, padding, dilation in reversed(layers):
        lo, hi = stride * lo - padding, stride * hi - padding + (kernel - 1) * dilation
    return lo, hi


def receptive_field(model: Any) -> int:
    """Side, in pixels, of the square of input that one cell of the trunk's final feature map depends on.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> receptive_field(create_model("small", seed=0)), receptive_field(create_model("small", seed=0,
    ...     vision_front_end="srm"))
    (195, 199)
    """
    lo, hi = _cell_field(model)
    return hi - lo + 1


def trunk_margin(model: Any) -> int:
    """Pixels of context that a block of whole feature cells needs for its cells to be the whole photo's,
    rounded up to :func:`feature_stride`.

    It is fast mode's default margin around each tile. It is also the least
    ``patch_context`` (:class:`~exifclip.modeling.configuration.ExifClipConfig`)
    with which exact mode embeds a patch as fast mode does, where the grid is
    aligned to the cells: no zero padding of the patch's view reaches the
    cells pooled. With less context (the paper's none) the view's border is
    inside the cells' receptive field, and trained networks learn to use it
    (the measured gap is on the benchmarks page).

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> trunk_margin(create_model("small", seed=0)), trunk_margin(create_model("paper-resnet50", seed=0))
    (128, 224)
    """
    s = feature_stride(model)
    lo, hi = _cell_field(model)  # cell 0 spans pixels [0, s): its field reaches -lo before, hi - s + 1 after
    return _round_up(max(-lo, hi - s + 1, 0), s)


def trunk_features(model: Any, image: np.ndarray, tile: int = DEFAULT_TILE, margin: int | None = DEFAULT_MARGIN,
                   ) -> torch.Tensor:
    """The trunk's final feature map of a whole photo, computed tile by tile.

    Parameters
    ----------
    model : ExifClipModel
        In eval mode; runs on its own device and dtype.
    image : ndarray of shape (H, W, 3), uint8
    tile : int
        Tile side, in pixels, rounded up to :func:`feature_stride`. Memory is
        that of one tile plus its margin.
    margin : int, optional
        Real pixels read around each tile, rounded up to the stride; by
        default :func:`trunk_margin`, with which the tiles' seams leave no
        trace. Less is cheaper and approximate.

    Returns
    -------
    Tensor of shape (C, ceil(H / s), ceil(W / s)), float32, on the model's device
        Cell ``(i, j)`` describes pixels ``[i s, (i + 1) s) x [j s, (j + 1) s)``.
    """
    s = feature_stride(model)
    tile, margin = _round_up(tile, s), _round_up(trunk_margin(model) if margin is None else margin, s)
    height, width = image.shape[:2]
    param = next(model.parameters())
    mean, std = model.config.image_mean, model.config.image_std
    out = None
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(height, y0 + tile + margin), min(width, x0 + tile + margin)
            block = torch.from_numpy(np.array(image[ya:yb, xa:xb]))[None].to(param.device)  # a copy: writable
            pixels = patches_to_pixel_values(block, mean, std, dtype=param.dtype)
            features = model.image_trunk(pixels)[0].float()
            if out is None:
                out = features.new_empty((features.shape[0], -(-height // s), -(-width // s)))
            r0, c0 = (y0 - ya) // s, (x0 - xa) // s  # the tile's first cell inside the block
            rows, cols = -(-min(tile, height - y0) // s), -(-min(tile, width - x0) // s)
            out[:, y0 // s: y0 // s + rows, x0 // s: x0 // s + cols] = features[:, r0:r0 + rows, c0:c0 + cols]
    return out


def window_weights(starts: np.ndarray, size: int, n_cells: int, stride: int) -> np.ndarray:
    """Pooling weights of 1-D windows ``[start, start + size)`` over cells of ``stride`` pixels.

    Row ``k`` gives each cell the share of window ``k`` that it covers: the
    rows sum to one, and a window's average of a cell map is ``weights @ map``.

    Examples
    --------
    >>> window_weights(np.array([0, 16]), size=64, n_cells=3, stride=32).tolist()
    [[0.5, 0.5, 0.0], [0.25, 0.5, 0.25]]
    """
    edges = np.arange(n_cells + 1) * stride
    lo = np.maximum(starts[:, None], edges[None, :-1])
    hi = np.minimum(starts[:, None] + size, edges[None, 1:])
    return np.clip(hi - lo, 0, None) / float(size)


def dense_patch_embeddings(model: Any, image: np.ndarray, grid: PatchGrid, tile: int = DEFAULT_TILE,
                           margin: int | None = DEFAULT_MARGIN) -> np.ndarray:
    """Fast-mode embeddings of every patch of ``grid``: ``(n_patches, dim)``, L2-normalised, row-major.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> from exifclip.patches import make_grid
    >>> model = create_model("small", seed=0)
    >>> image = np.random.default_rng(0).integers(0, 256, (100, 140, 3), dtype=np.uint8)
    >>> with torch.inference_mode():
    ...     z = dense_patch_embeddings(model, image, make_grid(image.shape, 64, stride=16))
    >>> z.shape, bool(np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5))
    ((15, 128), True)
    """
    features = trunk_features(model, image, tile, margin)
    s = feature_stride(model)
    device = features.device
    rows = torch.from_numpy(window_weights(np.arange(grid.n_rows) * grid.stride, grid.patch_size,
                                           features.shape[1], s)).to(device, torch.float32)
    cols = torch.from_numpy(window_weights(np.arange(grid.n_cols) * grid.stride, grid.patch_size,
                                           features.shape[2], s)).to(device, torch.float32)
    pooled = torch.einsum("ih,chw,jw->ijc", rows, features, cols).reshape(grid.n_patches, -1)
    projection = model.image_projection
    z = projection(pooled.to(next(projection.parameters(), pooled).dtype))
    return F.normalize(z.float(), dim=-1).cpu().numpy()
