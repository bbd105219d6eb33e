"""Radial lens distortion: synthesise it and undo it.

Conventions, shared by every function here:

- Pixel ``(row i, column j)`` has its centre at ``(x, y) = (j, i)``; the
  distortion centre is given as fractions of width and height (``(0.5, 0.5)``
  is the image centre), which keep their meaning under centred crops.
- Radii are normalised by the half-diagonal of the **distorted** image (the
  photo as recorded), so its corners are at ``r = 1`` whatever its size.
- Models (``r_u``: where a pinhole camera puts a point; ``r_d``: where the
  lens puts it): ``"brown"`` (Brown-Conrady) ``r_d = r_u (1 + k1 r_u^2 + k2
  r_u^4)``; ``"division"`` (Fitzgibbon, CVPR 2001) ``r_u = r_d / (1 + k1
  r_d^2 + k2 r_d^4)``. They agree to first order in ``k``.
- In both, **k1 < 0 is barrel** (``r_d < r_u``) and k1 > 0 pincushion.
- Nothing is zoomed (``dr_d / dr_u = 1`` at the centre). The output is the
  largest centred rectangle with the input's aspect ratio and parity whose
  pixels all sample inside the input: no border of missing pixels that a
  model could read the distortion from.
- Coefficients whose radial map folds back within the image are refused,
  naming them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..io import load_image

__all__ = [
    "DISTORTION_MODELS",
    "check_warp_options",
    "distort",
    "distorted_radius",
    "monotonic_radius_limit",
    "undistort",
    "undistorted_radius",
]

DISTORTION_MODELS = ("division", "brown")
_TABLE_SIZE = 4097  # radial samples of the per-pixel map (interpolation error < 1e-3 px on a 12 MP photo)
_INSIDE_TOLERANCE = 1e-6  # pixels: float rounding at the exact edge still counts as inside


# -- parameters ------------------------------------------------------------------
def _check_model(model: str) -> str:
    if model not in DISTORTION_MODELS:
        raise ValueError(f"model must be one of {DISTORTION_MODELS}, got {model!r}")
    return model


def _check_coefficient(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_center(center: Any) -> tuple[float, float]:
    if center is None:
        return 0.5, 0.5
    try:
        cx, cy = (float(c) for c in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be None or (x, y) fractions of width and height, got {center!r}") from None
    if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
        raise ValueError(f"center must be fractions in [0, 1] of width and height, got {center!r}")
    return cx, cy


def check_warp_options(model: str, center: Any) -> tuple[str, tuple[float, float]]:
    """``model`` and ``center`` of :func:`distort` / :func:`undistort`, validated.

    Examples
    --------
    >>> check_warp_options("brown", None)
    ('brown', (0.5, 0.5))
    """
    return _check_model(model), _check_center(center)


def _smallest_positive_root(a: float, b: float, c: float) -> float:
    """Smallest ``s > 0`` with ``a + b s + c s^2 = 0`` (``a > 0``); ``inf`` if none."""
    if c == 0.0:
        return -a / b if b < 0.0 else math.inf
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return math.inf
    # The cancellation-free pair of roots (Numerical Recipes, section 5.6): the
    # textbook formula loses the small root when |c| is tiny.
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
    roots = [s for s in ((q / c) if q != 0.0 else math.inf, (a / q) if q != 0.0 else math.inf) if s > 0.0]
    return min(roots, default=math.inf)


def monotonic_radius_limit(k1: float, k2: float = 0.0, model: str = "division") -> float:
    """The distorted radius up to which the radial map is one-to-one.

    Within ``0 <= r_d < limit`` both ``r_u(r_d)`` and ``r_d(r_u)`` are strictly
    increasing, so the map can be inverted; beyond it the map folds back (or
    ``r_u`` runs to infinity) and an image reaching that far cannot be warped.

    Parameters
    ----------
    k1, k2 : float
    model : {"division", "brown"}

    Returns
    -------
    float
        In half-diagonal units (see the module doc); ``inf`` if the map is
        monotonic for every radius.

    Examples
    --------
    >>> monotonic_radius_limit(-0.5, model="division")  # 1 + k1 r^2 reaches 0 at r = sqrt(2)
    1.4142135623730951
    >>> round(monotonic_radius_limit(-0.5, model="brown"), 4)  # dr_d/dr_u = 1 - 1.5 r_u^2 = 0
    0.5443
    >>> monotonic_radius_limit(0.1, 0.01, model="brown")
    inf
    """
    k1, k2 = _check_coefficient("k1", k1), _check_coefficient("k2", k2)
    _check_model(model)
    if model == "division":
        # r_u = r_d / D with D = 1 + k1 s + k2 s^2 (s = r_d^2): it must stay
        # positive, and dr_u/dr_d = (1 - k1 s - 3 k2 s^2) / D^2 too.
        s = min(
            _smallest_positive_root(1.0, k1, k2),
            _smallest_positive_root(1.0, -k1, -3.0 * k2),
        )
        return math.sqrt(s)
    # brown: dr_d/dr_u = 1 + 3 k1 s + 5 k2 s^2 (s = r_u^2); the limit is where r_d peaks.
    s = _smallest_positive_root(1.0, 3.0 * k1, 5.0 * k2)
    if math.isinf(s):
        return math.inf
    r_u = math.sqrt(s)
    return r_u * (1.0 + k1 * s + k2 * s * s)


def _fold_error(k1: float, k2: float, model: str, where: str) -> ValueError:
    names = f"k1={k1:g} makes" if k2 == 0.0 else f"k1={k1:g} and k2={k2:g} make"
    return ValueError(
        f"{names} the {model} radial map non-monotonic where it is used: {where}; use coefficients of smaller magnitude"
    )


def _check_monotonic(k1: float, k2: float, model: str, r_max: float) -> None:
    """Refuse coefficients whose map folds back at a distorted radius ``<= r_max``."""
    limit = monotonic_radius_limit(k1, k2, model)
    if not r_max < limit:
        raise _fold_error(
            k1,
            k2,
            model,
            f"it folds back at r = {limit:.4g} half-diagonals and the image reaches r = {r_max:.4g}",
        )


# -- radial maps -----------------------------------------------------------------
def _division_r_u(r_d: np.ndarray, k1: float, k2: float) -> np.ndarray:
    s = r_d * r_d
    return r_d / (1.0 + k1 * s + k2 * s * s)


def _brown_r_d(r_u: np.ndarray, k1: float, k2: float) -> np.ndarray:
    s = r_u * r_u
    return r_u * (1.0 + k1 * s + k2 * s * s)


def _invert_increasing(
    fn: Callable[[np.ndarray], np.ndarray],
    derivative: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
    upper: float,
    max_iter: int = 100,
) -> np.ndarray:
    """Solve ``fn(x) = target`` for ``x`` in ``[0, upper]``, ``fn`` increasing there.

    Newton steps from ``x = target``, kept inside a bracket that shrinks
    with every step; a step leaving the bracket is replaced by bisection,
    so it converges whatever the curvature (typically in < 6 steps).
    """
    target = np.asarray(target, dtype=np.float64)
    lo = np.zeros_like(target)
    hi = np.full_like(target, upper)
    x = np.clip(target, lo, hi)
    for _ in range(max_iter):
        value = fn(x) - target
        lo = np.where(value <= 0.0, x, lo)
        hi = np.where(value >= 0.0, x, hi)
        slope = derivative(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - value / slope
        outside = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(outside, 0.5 * (lo + hi), step)
        if np.all(np.abs(new - x) <= 1e-14 * np.maximum(1.0, np.abs(x))):
            return new
        x = new
    return x


def _upper_bound(fn: Callable[[np.ndarray], np.ndarray], needed: float, limit: float) -> float:
    """An ``x`` with ``fn(x) >= needed`` on the monotonic branch ``[0, limit)``."""
    x = max(needed, 1.0)
    while fn(np.array(x)) < needed and x < limit:
        x *= 2.0
    return min(x, limit)


def undistorted_radius(r_d: Any, k1: float, k2: float = 0.0, model: str = "division") -> np.ndarray:
    """Where a pinhole camera puts the point the lens recorded at radius ``r_d``.

    Parameters
    ----------
    r_d : array-like of float
        Distorted radii, in half-diagonals of the distorted image, ``>= 0``.
    k1, k2 : float
        Coefficients (``k1 < 0``: barrel, ``r_u > r_d``).
    model : {"division", "brown"}
        The division model is explicit in this direction; the Brown model
        is inverted numerically (safeguarded Newton on ``r_u``, to ~1e-14).

    Returns
    -------
    ndarray of float64, the shape of ``r_d``

    Raises
    ------
    ValueError
        If the map is not monotonic up to ``max(r_d)`` (the message names
        the coefficients).

    Examples
    --------
    >>> float(undistorted_radius(1.0, -0.2))  # division: 1 / (1 - 0.2)
    1.25
    >>> round(float(undistorted_radius(0.5, -0.1, model="brown")), 6)  # r_u (1 - 0.1 r_u^2) = 0.5
    0.513544
    """
    k1, k2 = _check_coefficient("k1", k1), _check_coefficient("k2", k2)
    _check_model(model)
    r_d = np.asarray(r_d, dtype=np.float64)
    if r_d.size and (not np.all(np.isfinite(r_d)) or r_d.min() < 0):
        raise ValueError("r_d must be finite and non-negative")
    r_max = float(r_d.max()) if r_d.size else 0.0
    _check_monotonic(k1, k2, model, r_max)
    if model == "division":
        return _division_r_u(r_d, k1, k2)
    limit = _brown_radius_limit(k1, k2)
    upper = _upper_bound(lambda r: _brown_r_d(r, k1, k2), r_max, limit)
    return _invert_increasing(
        lambda r: _brown_r_d(r, k1, k2),
        lambda r: 1.0 + 3.0 * k1 * r * r + 5.0 * k2 * r**4,
        r_d,
        upper,
    )


def distorted_radius(r_u: Any, k1: float, k2: float = 0.0, model: str = "division") -> np.ndarray:
    """Where the lens records a point a pinhole camera puts at radius ``r_u``.

    The inverse of :func:`undistorted_radius`: explicit for the Brown model,
    numerical (safeguarded Newton on ``r_d``) for the division model.

    Parameters
    ----------
    r_u : array-like of float
        Undistorted radii, in half-diagonals of the distorted image, ``>= 0``.
    k1, k2 : float
    model : {"division", "brown"}

    Returns
    -------
    ndarray of float64, the shape of ``r_u``

    Raises
    ------
    ValueError
        If some ``r_u`` has no distorted radius on the monotonic branch.

    Examples
    --------
    >>> float(distorted_radius(1.25, -0.2))
    1.0
    >>> r = np.linspace(0, 1, 5)
    >>> bool(np.allclose(undistorted_radius(distorted_radius(r, 0.1, 0.05), 0.1, 0.05), r))
    True
    """
    k1, k2 = _check_coefficient("k1", k1), _check_coefficient("k2", k2)
    _check_model(model)
    r_u = np.asarray(r_u, dtype=np.float64)
    if r_u.size and (not np.all(np.isfinite(r_u)) or r_u.min() < 0):
        raise ValueError("r_u must be finite and non-negative")
    needed = float(r_u.max()) if r_u.size else 0.0
    if model == "brown":
        if not needed < _brown_radius_limit(k1, k2):
            raise _fold_error(
                k1,
                k2,
                model,
                f"r_d stops increasing at r_u = {_brown_radius_limit(k1, k2):.4g} "
                f"half-diagonals and r_u reaches {needed:.4g}",
            )
        return _brown_r_d(r_u, k1, k2)
    limit = monotonic_radius_limit(k1, k2, model)

    def forward(r):
        return _division_r_u(r, k1, k2)

    def slope(r):
        s = r * r
        return (1.0 - k1 * s - 3.0 * k2 * s * s) / (1.0 + k1 * s + k2 * s * s) ** 2

    branch_end = limit * (1.0 - 1e-12) if math.isfinite(limit) else math.inf
    if math.isfinite(limit):
        # The largest r_u the monotonic branch reaches: infinite where
        # 1 + k1 s + k2 s^2 vanishes first, the peak of r_u(r_d) where it folds.
        with np.errstate(divide="ignore", over="ignore"):
            reach = float(forward(np.array(branch_end)))
        if not needed < reach:
            raise _fold_error(
                k1,
                k2,
                model,
                f"r_u peaks at {reach:.4g} (r_d = {limit:.4g}) half-diagonals and r_u reaches {needed:.4g}",
            )
    return _invert_increasing(forward, slope, r_u, _upper_bound(forward, needed, branch_end))


def _brown_radius_limit(k1: float, k2: float) -> float:
    """The undistorted radius at which the Brown map stops increasing (``inf`` if never)."""
    return math.sqrt(_smallest_positive_root(1.0, 3.0 * k1, 5.0 * k2))


# -- warping ---------------------------------------------------------------------
def _corner_radius(center: tuple[float, float], shape: tuple[int, int]) -> float:
    """Largest normalised radius of an image of ``shape`` about ``center`` (1 at the image centre)."""
    height, width = shape
    cx, cy = center
    far_x, far_y = max(cx, 1.0 - cx) * width, max(cy, 1.0 - cy) * height
    return math.hypot(far_x, far_y) / (0.5 * math.hypot(width, height))


def _pixel_center(center: tuple[float, float], shape: tuple[int, int]) -> tuple[float, float]:
    return center[0] * shape[1] - 0.5, center[1] * shape[0] - 0.5


def _nearest_with_parity(value: float, parity: int) -> int:
    return int(2 * round((value - parity) / 2.0) + parity)


def _candidate_shape(long_side: int, shape: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` with ``long_side`` along the input's longer axis, its aspect ratio and parities."""
    height, width = shape
    if height >= width:
        w = max(_nearest_with_parity(long_side * width / height, width % 2), 2 - width % 2)
        return long_side, min(w, width)
    h = max(_nearest_with_parity(long_side * height / width, height % 2), 2 - height % 2)
    return min(h, height), long_side


class _RadialWarp:
    """Output pixel ``p`` samples the input at ``c_in + (p - c_out) * ratio(|p - c_out| / unit)``.

    ``ratio`` is tabulated once on ``_TABLE_SIZE`` radii and linearly
    interpolated per pixel: the radial map is smooth, so this is exact to far
    below a pixel and costs one ``np.interp`` instead of a Newton solve per
    pixel.
    """

    def __init__(
        self,
        radii: np.ndarray,
        ratio: np.ndarray,
        unit_of: Callable[[int, int], float],
        center: tuple[float, float],
        in_shape: tuple[int, int],
    ):
        self.radii, self.ratio, self.unit_of = radii, ratio, unit_of
        self.center, self.in_shape = center, in_shape

    def sample_positions(self, xs: np.ndarray, ys: np.ndarray, out_shape: tuple[int, int]):
        """Input ``(x, y)`` sampled by output pixels at ``(xs, ys)`` (broadcast)."""
        out_cx, out_cy = _pixel_center(self.center, out_shape)
        in_cx, in_cy = _pixel_center(self.center, self.in_shape)
        dx, dy = xs - out_cx, ys - out_cy
        r = np.hypot(dx, dy) / self.unit_of(*out_shape)
        g = np.interp(r, self.radii, self.ratio)
        return in_cx + dx * g, in_cy + dy * g

    def is_valid(self, out_shape: tuple[int, int]) -> bool:
        """Do all pixels of an ``out_shape`` output sample inside the input?

        Checking the border is enough: the map is a radial homeomorphism, so
        the border's image encloses the image of the inside, and the input
        rectangle is convex.
        """
        h, w = out_shape
        xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(np.float64)
        ys = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(np.float64)
        x, y = self.sample_positions(xs, ys, out_shape)
        height, width = self.in_shape
        tol = _INSIDE_TOLERANCE
        return bool(np.all((x >= -tol) & (x <= width - 1 + tol) & (y >= -tol) & (y <= height - 1 + tol)))

    def largest_valid_shape(self) -> tuple[int, int]:
        """Binary search over the longer side (validity only grows as the output shrinks)."""
        height, width = self.in_shape
        long_side = max(height, width)
        candidates = np.arange(2 - long_side % 2, long_side + 1, 2)
        lo, hi = 0, len(candidates) - 1
        if not self.is_valid(_candidate_shape(int(candidates[lo]), self.in_shape)):
            raise ValueError(f"no output of the input's aspect ratio fits inside the {height}x{width} input")
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.is_valid(_candidate_shape(int(candidates[mid]), self.in_shape)):
                lo = mid
            else:
                hi = mid - 1
        return _candidate_shape(int(candidates[lo]), self.in_shape)

    def apply(self, image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
        """Bilinear sampling of ``image`` for every output pixel, in row chunks (bounded memory)."""
        h, w = out_shape
        height, width = self.in_shape
        # One contiguous plane per channel: 1-D gathers and in-place float32
        # arithmetic are ~3x faster than gathering RGB rows.
        planes = [np.ascontiguousarray(image[:, :, c]).ravel() for c in range(image.shape[2])]
        out = np.empty((h, w, len(planes)), np.uint8)
        xs = np.arange(w, dtype=np.float64)[None, :]
        rows_per_chunk = max(1, (1 << 19) // max(w, 1))
        for start in range(0, h, rows_per_chunk):
            stop = min(start + rows_per_chunk, h)
            ys = np.arange(start, stop, dtype=np.float64)[:, None]
            x, y = self.sample_positions(xs, ys, out_shape)
            np.clip(x, 0.0, width - 1.0, out=x)
            np.clip(y, 0.0, height - 1.0, out=y)
            # floor, kept one pixel from the far edge so the +1 neighbour exists
            # (there the weight of the near neighbour is 0: exact on the edge).
            x0 = np.minimum(x.astype(np.intp), width - 2)
            y0 = np.minimum(y.astype(np.intp), height - 2)
            fx = (x - x0).astype(np.float32)
            fy = (y - y0).astype(np.float32)
            top_left = y0 * width + x0
            corners = (top_left, top_left + 1, top_left + width, top_left + width + 1)
            for c, plane in enumerate(planes):
                top, top_right, bottom, bottom_right = (plane.take(i).astype(np.float32) for i in corners)
                top_right -= top
                top_right *= fx
                top += top_right  # top row, interpolated along x
                bottom_right -= bottom
                bottom_right *= fx
                bottom += bottom_right  # bottom row
                bottom -= top
                bottom *= fy
                top += bottom  # between the rows, along y
                np.rint(top, out=top)
                out[start:stop, :, c] = np.clip(top, 0, 255)
        return out


def _prepare(image: Any, k1: Any, k2: Any, model: str, center: Any):
    image = load_image(image)
    k1, k2 = _check_coefficient("k1", k1), _check_coefficient("k2", k2)
    _check_model(model)
    center = _check_center(center)
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {image.shape[0]}x{image.shape[1]}")
    return image, k1, k2, center


def _table(fn: Callable[[np.ndarray], np.ndarray], r_max: float) -> tuple[np.ndarray, np.ndarray]:
    radii = np.linspace(0.0, r_max, _TABLE_SIZE)
    mapped = fn(radii)
    ratio = np.ones_like(radii)
    ratio[1:] = mapped[1:] / radii[1:]  # both maps have slope 1 at the centre: ratio(0) = 1
    return radii, ratio


def distort(image: Any, k1: float, k2: float = 0.0, model: str = "division", center: Any = None) -> np.ndarray:
    """Synthesise radial lens distortion.

    Every output pixel at distorted radius ``r_d`` (measured on the output,
    see the module doc) takes the bilinearly interpolated input value at
    the undistorted radius ``r_u`` along the same ray (inverse mapping).

    Parameters
    ----------
    image : image source
        An undistorted photo: anything :func:`exifclip.io.load_image` takes.
    k1, k2 : float
        Coefficients in half-diagonals of the output; ``k1 < 0`` is barrel.
    model : {"division", "brown"}, default="division"
    center : (float, float), optional
        Distortion centre as fractions of width and height; default the
        image centre ``(0.5, 0.5)``.

    Returns
    -------
    ndarray of shape (h, w, 3), uint8
        The largest concentric crop with the input's aspect ratio whose
        pixels all sample inside the input (``h <= H``, ``w <= W``; smaller
        than the input for barrel distortion).

    Raises
    ------
    ValueError
        If the coefficients fold the radial map within the image, or an
        argument is out of range (the message names it).

    Examples
    --------
    >>> img = np.full((60, 80, 3), 200, np.uint8)
    >>> distort(img, k1=-0.2).shape   # barrel: corners pulled in, the output shrinks to 48 x 64
    (48, 64, 3)
    >>> distort(img, k1=0.1).shape    # pincushion keeps the full frame
    (60, 80, 3)
    >>> bool((distort(img, k1=-0.2) == 200).all())   # no black border
    True
    """
    image, k1, k2, center = _prepare(image, k1, k2, model, center)
    r_max = _corner_radius(center, image.shape[:2])
    _check_monotonic(k1, k2, model, r_max)
    radii, ratio = _table(lambda r: undistorted_radius(r, k1, k2, model), r_max)
    warp = _RadialWarp(radii, ratio, lambda h, w: 0.5 * math.hypot(w, h), center, image.shape[:2])
    return warp.apply(image, warp.largest_valid_shape())


def undistort(image: Any, k1: float, k2: float = 0.0, model: str = "division", center: Any = None) -> np.ndarray:
    """Remove radial lens distortion: the inverse of :func:`distort`.

    Every output pixel at undistorted radius ``r_u`` takes the input value
    at the distorted radius ``r_d`` along the same ray, found by inverting
    the radial map numerically where it is implicit.

    Parameters
    ----------
    image : image source
        A distorted photo.
    k1, k2 : float
        Its coefficients, in half-diagonals of this (input) image.
    model : {"division", "brown"}, default="division"
    center : (float, float), optional
        Distortion centre as fractions of width and height.

    Returns
    -------
    ndarray of shape (h, w, 3), uint8
        The largest concentric crop with the input's aspect ratio, no larger
        than the input, whose pixels all sample inside it (smaller than the
        input for pincushion distortion). The pixel scale at the centre is
        the input's, so ``undistort(distort(x, k), k)`` is a centred crop of
        ``x`` up to interpolation.

    Examples
    --------
    >>> y, x = np.mgrid[0:90, 0:120]
    >>> smooth = np.stack([128 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)] * 3, -1).astype(np.uint8)
    >>> back = undistort(distort(smooth, -0.2), -0.2)
    >>> back.shape
    (72, 96, 3)
    >>> error = np.abs(back.astype(int) - smooth[9:81, 12:108].astype(int))[2:-2, 2:-2]
    >>> float(error.mean()) < 1.5
    True
    """
    image, k1, k2, center = _prepare(image, k1, k2, model, center)
    shape = image.shape[:2]
    r_max_d = _corner_radius(center, shape)
    _check_monotonic(k1, k2, model, r_max_d)
    # The output's pixels sample inside the input, so their r_d <= r_max_d and
    # r_u <= r_u(r_max_d); pixels beyond the table clamp to its last ratio,
    # which still maps them past r_max_d, i.e. outside (correctly invalid).
    r_max_u = float(undistorted_radius(r_max_d, k1, k2, model))
    radii, ratio = _table(lambda r: distorted_radius(r, k1, k2, model), r_max_u)
    unit = 0.5 * math.hypot(shape[1], shape[0])
    warp = _RadialWarp(radii, ratio, lambda h, w: unit, center, shape)
    return warp.apply(image, warp.largest_valid_shape())
