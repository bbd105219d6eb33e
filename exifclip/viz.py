"""Pictures of results: coloured heatmaps, mask images and overlays.

No plotting library is needed: a colour map is a 256-entry lookup table
interpolated from a few anchor colours. Heatmaps are drawn on a fixed scale
(``vmin=0, vmax=1`` by default), so the same colour means the same distance
to the majority on every image; pass ``vmax`` to stretch faint maps, and say
so wherever the picture is shown.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ._atomic import atomic_write

__all__ = ["COLORMAPS", "colorize", "mask_image", "overlay", "save_png"]

# Anchor colours (position, RGB) of perceptually ordered dark-to-bright maps.
_ANCHORS = {
    "heat": [
        (0.0, (0, 0, 4)),
        (0.25, (87, 16, 110)),
        (0.5, (188, 55, 84)),
        (0.75, (249, 142, 9)),
        (1.0, (252, 255, 164)),
    ],
    "gray": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
}


def _lut(name: str) -> np.ndarray:
    positions, colours = zip(*_ANCHORS[name])
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, positions, [c[i] for c in colours]) for i in range(3)], axis=1).astype(np.uint8)


COLORMAPS = {name: _lut(name) for name in _ANCHORS}


def colorize(heatmap: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "heat") -> np.ndarray:
    """A float map as a uint8 RGB picture.

    Examples
    --------
    >>> colorize(np.array([[0.0, 1.0]])).shape
    (1, 2, 3)
    """
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colour map {cmap!r}; known: {', '.join(COLORMAPS)}")
    span = max(float(vmax) - float(vmin), 1e-12)
    scaled = np.clip((np.nan_to_num(np.asarray(heatmap, np.float64)) - vmin) / span, 0, 1)
    return COLORMAPS[cmap][(scaled * 255 + 0.5).astype(np.uint8)]


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A bool mask as a uint8 grey picture (255 = spliced)."""
    return np.asarray(mask, bool).astype(np.uint8) * 255


def _edges(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, bool)
    edge = np.zeros_like(m)
    edge[1:] |= m[1:] != m[:-1]
    edge[:-1] |= m[1:] != m[:-1]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, 1:] != m[:, :-1]
    return edge


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    mask: np.ndarray | None = None,
    alpha: float = 0.55,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> np.ndarray:
    """The photo with the coloured heatmap blended on and the mask outlined.

    Parameters
    ----------
    image : ndarray (H, W, 3) uint8
    heatmap : ndarray (H, W)
    mask : ndarray (H, W) bool, optional
        Outlined in cyan.
    alpha : float, default=0.55
        Heatmap opacity where the heatmap is at ``vmax`` (fades to 0 at ``vmin``).

    Returns
    -------
    ndarray (H, W, 3) uint8
    """
    base = np.asarray(image, np.float64)
    if base.shape[:2] != np.shape(heatmap):
        raise ValueError(f"image {base.shape[:2]} and heatmap {np.shape(heatmap)} differ in size")
    weight = alpha * np.clip((np.asarray(heatmap, np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)[..., None]
    out = (1 - weight) * base + weight * colorize(heatmap, vmin, vmax)
    if mask is not None:
        edge = _edges(mask)
        # thicken the outline so it shows on large photos
        thick = max(1, min(base.shape[:2]) // 400)
        for _ in range(thick - 1):
            edge = edge | _edges(edge)
        out[edge] = (0, 255, 255)
    return (out + 0.5).astype(np.uint8)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` as PNG atomically (see :func:`exifclip._atomic.atomic_write`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(np.asarray(array)).save(f, format="PNG")
    return path
