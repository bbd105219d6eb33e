"""Processing augmentations for training: they change a patch's pixels and say so in its text.

With an :class:`AugmentConfig`, a fraction ``p`` of the
patches is processed by one operation drawn uniformly from ``ops``, and the
text says so by appending ``", Processing: <OP> <value>"``, exactly:

==========  =================================================  =======================
op          what happens to the pixels                         text appended
==========  =================================================  =======================
jpeg        JPEG re-compression at quality q (Pillow, 4:2:0)   ``, Processing: JPEG 75``
resample    resize by factor s (bicubic), then cut the patch   ``, Processing: Resample 0.75``
blur        Gaussian blur of standard deviation sigma          ``, Processing: Blur 1.5``
noise       add Gaussian noise of std sigma (8-bit levels)     ``, Processing: Noise 4.0``
gamma       ``255 * (x / 255) ** g``                            ``, Processing: Gamma 1.25``
sharpen     unsharp mask of amount a (radius 1.5 px)           ``, Processing: Sharpen 1.5``
==========  =================================================  =======================

``sharpen`` is not among the default ``ops`` (runs configured before it
existed repeat exactly); ask for it with ``ops=[..., "sharpen"]``.

Values are drawn uniformly from each op's range and rounded to the digits
shown (JPEG: integer; Resample and Gamma: two decimals; Blur, Noise and Sharpen: one)
*before* use, so the text states exactly what was done. JPEG, resample, blur and
sharpen process a region around the patch and cut the patch from its interior,
so borders do not leak in. When a photo is too small for the region, the
patch is left unprocessed (no text appended); resampling by ``s < 1`` is
first clamped to the smallest factor the photo allows.
"""

from __future__ import annotations

import io as _stdio
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["AUGMENT_OPS", "DEFAULT_AUGMENT_OPS", "AugmentConfig", "augment_patch", "augmentation_phrases",
           "process_patch"]

#: The processing operations, in the order of the table in the module doc.
AUGMENT_OPS = ("jpeg", "resample", "blur", "noise", "gamma", "sharpen")
#: Those drawn by default (``sharpen`` came later and is asked for by name).
DEFAULT_AUGMENT_OPS = ("jpeg", "resample", "blur", "noise", "gamma")
#: The unsharp mask's radius in pixels (the text states its amount).
SHARPEN_RADIUS = 1.5


@dataclass
class AugmentConfig:
    """Processing augmentations that change the pixels and say so in the text.

    See the table in the module doc for each operation and its text.

    Parameters
    ----------
    p : float, default=0.5
        Fraction of patches processed (by exactly one operation).
    ops : sequence of str
        Operations to draw from, uniformly: any of :data:`AUGMENT_OPS`
        (default :data:`DEFAULT_AUGMENT_OPS`).
    jpeg_quality : (int, int), default=(50, 95)
    resample_factor : (float, float), default=(0.5, 1.5)
    blur_sigma : (float, float), default=(0.5, 2.0)
    noise_std : (float, float), default=(1.0, 8.0)
        In 8-bit levels.
    gamma : (float, float), default=(0.6, 1.6)
    sharpen_amount : (float, float), default=(0.5, 2.0)
        Unsharp-mask amount (1.0: the detail added once).

    Examples
    --------
    >>> AugmentConfig(ops=["jpeg"], jpeg_quality=(70, 90)).ops
    ('jpeg',)
    """

    p: float = 0.5
    ops: Sequence[str] = DEFAULT_AUGMENT_OPS
    jpeg_quality: tuple[int, int] = (50, 95)
    resample_factor: tuple[float, float] = (0.5, 1.5)
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    noise_std: tuple[float, float] = (1.0, 8.0)
    gamma: tuple[float, float] = (0.6, 1.6)
    sharpen_amount: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self):
        self.ops = tuple(self.ops)
        unknown = [op for op in self.ops if op not in AUGMENT_OPS]
        if unknown or not self.ops:
            raise ValueError(f"augment ops must be a non-empty list from {AUGMENT_OPS}, got {list(self.ops)}")
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"augment p must be in [0, 1], got {self.p}")
        for name in ("jpeg_quality", "resample_factor", "blur_sigma", "noise_std", "gamma", "sharpen_amount"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ValueError(f"augment {name} must be a range (low, high) with 0 < low <= high, got {(lo, hi)}")
            setattr(self, name, (type(lo)(lo), type(hi)(hi)))
        if self.jpeg_quality[1] > 100:
            raise ValueError(f"augment jpeg_quality must be within 1..100, got {self.jpeg_quality}")

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def coerce(cls, value: Any) -> "AugmentConfig | None":
        """``None``/``False`` -> off; ``True`` -> defaults; a dict -> fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown augment settings: {', '.join(sorted(unknown))}")
            return cls(**value)
        raise TypeError(f"augment must be None, True, a dict or an AugmentConfig, got {type(value).__name__}")


def _to_pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a))


def _cut(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    return np.ascontiguousarray(image[y:y + size, x:x + size])


def augment_patch(image: np.ndarray, patch_size: int, rng: np.random.Generator,
                  config: AugmentConfig) -> tuple[np.ndarray, str] | None:
    """Cut one processed patch from ``image``; ``None`` when it does not fit.

    Parameters
    ----------
    image : ndarray (H, W, 3) uint8
    patch_size : int
    rng : numpy.random.Generator
        All random choices (operation, value, position) come from it.
    config : AugmentConfig

    Returns
    -------
    (patch, suffix) or None
        ``patch`` is ``(patch_size, patch_size, 3)`` uint8; ``suffix`` the
        exact text to append, e.g. ``", Processing: JPEG 75"``.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    >>> cfg = AugmentConfig(p=1.0, ops=["gamma"], gamma=(1.5, 1.5))
    >>> patch, suffix = augment_patch(img, 32, np.random.default_rng(0), cfg)
    >>> patch.shape, suffix
    ((32, 32, 3), ', Processing: Gamma 1.50')
    """
    done = process_patch(image, patch_size, rng, config)
    return None if done is None else done[:2]


def _draw_value(op: str, rng: np.random.Generator, config: AugmentConfig) -> float:
    if op == "jpeg":
        return int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    ranges = {"resample": (config.resample_factor, 2), "blur": (config.blur_sigma, 1),
              "noise": (config.noise_std, 1), "gamma": (config.gamma, 2), "sharpen": (config.sharpen_amount, 1)}
    (lo, hi), digits = ranges[op]
    return round(float(rng.uniform(lo, hi)), digits)


def _region(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray | None:
    """A random ``side`` x ``side`` region of ``image``, or ``None`` when it does not fit."""
    h, w = image.shape[:2]
    if side > min(h, w):
        return None
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return _cut(image, y, x, side)


def process_patch(image: np.ndarray, patch_size: int, rng: np.random.Generator, config: AugmentConfig,
                  op: str | None = None, value: float | None = None) -> tuple[np.ndarray, str, tuple] | None:
    """As :func:`augment_patch`, with the operation and its value given or drawn; also returns them.

    Returns ``(patch, suffix, (op, value))`` or ``None``. Passing the
    ``(op, value)`` of one patch processes another patch (at another random
    position) the same way: the patch pairs of the dataset.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    >>> cfg = AugmentConfig(p=1.0, ops=["sharpen"])
    >>> patch, suffix, how = process_patch(img, 32, np.random.default_rng(0), cfg)
    >>> process_patch(img, 32, np.random.default_rng(1), cfg, *how)[1] == suffix
    True
    """
    p = int(patch_size)
    if op is None:
        op = config.ops[int(rng.integers(len(config.ops)))]
    noise_or_gamma = op in ("noise", "gamma")
    if value is None and not noise_or_gamma:  # noise and gamma draw the position first (their original order)
        value = _draw_value(op, rng, config)
    if op == "jpeg":
        region = _region(image, p + 24, rng)
        if region is None:
            return None
        oy, ox = 8 + int(rng.integers(0, 8)), 8 + int(rng.integers(0, 8))
        buf = _stdio.BytesIO()
        _to_pil(region).save(buf, "JPEG", quality=int(value))
        out = np.asarray(Image.open(_stdio.BytesIO(buf.getvalue())).convert("RGB"))
        return _cut(out, oy, ox, p), f", Processing: JPEG {int(value)}", (op, value)
    if op == "resample":
        need = p + 16  # output pixels: the patch and 8 px either side
        s = max(value, math.ceil(100 * need / max(min(image.shape[:2]) - 2, 1)) / 100)
        side = math.ceil(need / s) + 2
        region = _region(image, side, rng) if s > 0 else None
        if region is None:
            return None
        out_side = max(round(side * s), need)
        out = np.asarray(_to_pil(region).resize((out_side, out_side), Image.BICUBIC))
        o = (out_side - p) // 2
        return _cut(out, o, o, p), f", Processing: Resample {s:.2f}", (op, value)
    if op in ("blur", "sharpen"):
        radius = value if op == "blur" else SHARPEN_RADIUS
        margin = int(math.ceil(3 * radius)) + 1
        region = _region(image, p + 2 * margin, rng)
        if region is None:
            return None
        pil_filter = (ImageFilter.GaussianBlur(radius=value) if op == "blur"
                      else ImageFilter.UnsharpMask(radius=SHARPEN_RADIUS, percent=round(100 * value), threshold=0))
        out = np.asarray(_to_pil(region).filter(pil_filter))
        name = "Blur" if op == "blur" else "Sharpen"
        return _cut(out, margin, margin, p), f", Processing: {name} {value:.1f}", (op, value)
    patch = _region(image, p, rng).astype(np.float32)
    if value is None:
        value = _draw_value(op, rng, config)
    if op == "noise":
        patch = patch + rng.normal(0.0, value, patch.shape).astype(np.float32)
        suffix = f", Processing: Noise {value:.1f}"
    else:  # gamma
        patch = 255.0 * (patch / 255.0) ** value
        suffix = f", Processing: Gamma {value:.2f}"
    return np.clip(np.rint(patch), 0, 255).astype(np.uint8), suffix, (op, value)


def augmentation_phrases(config: AugmentConfig | None) -> list[str]:
    """Example ``Processing`` phrases, for building a tokenizer vocabulary."""
    if config is None:
        return []
    q = range(config.jpeg_quality[0], config.jpeg_quality[1] + 1)
    return ([f"Processing: JPEG {v}" for v in q]
            + [f"Processing: Resample {v:.2f}" for v in np.arange(0.3, 3.0, 0.01)]
            + [f"Processing: Blur {v:.1f}" for v in np.arange(0.1, 5.0, 0.1)]
            + [f"Processing: Noise {v:.1f}" for v in np.arange(0.1, 20.0, 0.1)]
            + [f"Processing: Gamma {v:.2f}" for v in np.arange(0.3, 3.0, 0.01)]
            + ([f"Processing: Sharpen {v:.1f}" for v in np.arange(0.1, 5.0, 0.1)] if "sharpen" in config.ops else []))
