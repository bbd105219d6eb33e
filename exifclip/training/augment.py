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
==========  =================================================  =======================

Values are drawn uniformly from each op's range and rounded to the digits
shown (JPEG: integer; Resample and Gamma: two decimals; Blur and Noise: one)
*before* use, so the text states exactly what was done. JPEG, resample and
blur process a region around the patch and cut the patch from its interior,
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

__all__ = ["AUGMENT_OPS", "AugmentConfig", "augment_patch", "augmentation_phrases"]

#: The processing operations, in the order of the table in the module doc.
AUGMENT_OPS = ("jpeg", "resample", "blur", "noise", "gamma")


@dataclass
class AugmentConfig:
    """Processing augmentations that change the pixels and say so in the text.

    See the table in the module doc for each operation and its text.

    Parameters
    ----------
    p : float, default=0.5
        Fraction of patches processed (by exactly one operation).
    ops : sequence of str
        Operations to draw from, uniformly: any of :data:`AUGMENT_OPS`.
    jpeg_quality : (int, int), default=(50, 95)
    resample_factor : (float, float), default=(0.5, 1.5)
    blur_sigma : (float, float), default=(0.5, 2.0)
    noise_std : (float, float), default=(1.0, 8.0)
        In 8-bit levels.
    gamma : (float, float), default=(0.6, 1.6)

    Examples
    --------
    >>> AugmentConfig(ops=["jpeg"], jpeg_quality=(70, 90)).ops
    ('jpeg',)
    """

    p: float = 0.5
    ops: Sequence[str] = AUGMENT_OPS
    jpeg_quality: tuple[int, int] = (50, 95)
    resample_factor: tuple[float, float] = (0.5, 1.5)
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    noise_std: tuple[float, float] = (1.0, 8.0)
    gamma: tuple[float, float] = (0.6, 1.6)

    def __post_init__(self):
        self.ops = tuple(self.ops)
        unknown = [op for op in self.ops if op not in AUGMENT_OPS]
        if unknown or not self.ops:
            raise ValueError(f"augment ops must be a non-empty list from {AUGMENT_OPS}, got {list(self.ops)}")
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"augment p must be in [0, 1], got {self.p}")
        for name in ("jpeg_quality", "resample_factor", "blur_sigma", "noise_std", "gamma"):
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
    h, w = image.shape[:2]
    p = int(patch_size)
    op = config.ops[int(rng.integers(len(config.ops)))]

    def uniform(lo, hi):
        return float(rng.uniform(lo, hi))

    if op == "jpeg":
        q = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        side = p + 24
        if side > min(h, w):
            return None
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        oy, ox = 8 + int(rng.integers(0, 8)), 8 + int(rng.integers(0, 8))
        buf = _stdio.BytesIO()
        _to_pil(_cut(image, y, x, side)).save(buf, "JPEG", quality=q)
        out = np.asarray(Image.open(_stdio.BytesIO(buf.getvalue())).convert("RGB"))
        return _cut(out, oy, ox, p), f", Processing: JPEG {q}"
    if op == "resample":
        s = round(uniform(*config.resample_factor), 2)
        need = p + 16  # output pixels: the patch and 8 px either side
        s = max(s, math.ceil(100 * need / max(min(h, w) - 2, 1)) / 100)
        side = math.ceil(need / s) + 2
        if side > min(h, w) or s <= 0:
            return None
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out_side = max(round(side * s), need)
        out = np.asarray(_to_pil(_cut(image, y, x, side)).resize((out_side, out_side), Image.BICUBIC))
        o = (out_side - p) // 2
        return _cut(out, o, o, p), f", Processing: Resample {s:.2f}"
    if op == "blur":
        sigma = round(uniform(*config.blur_sigma), 1)
        margin = int(math.ceil(3 * sigma)) + 1
        side = p + 2 * margin
        if side > min(h, w):
            return None
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out = np.asarray(_to_pil(_cut(image, y, x, side)).filter(ImageFilter.GaussianBlur(radius=sigma)))
        return _cut(out, margin, margin, p), f", Processing: Blur {sigma:.1f}"
    y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
    patch = _cut(image, y, x, p).astype(np.float32)
    if op == "noise":
        std = round(uniform(*config.noise_std), 1)
        patch = patch + rng.normal(0.0, std, patch.shape).astype(np.float32)
        suffix = f", Processing: Noise {std:.1f}"
    else:  # gamma
        g = round(uniform(*config.gamma), 2)
        patch = 255.0 * (patch / 255.0) ** g
        suffix = f", Processing: Gamma {g:.2f}"
    return np.clip(np.rint(patch), 0, 255).astype(np.uint8), suffix


def augmentation_phrases(config: AugmentConfig | None) -> list[str]:
    """Example ``Processing`` phrases, for building a tokenizer vocabulary."""
    if config is None:
        return []
    q = range(config.jpeg_quality[0], config.jpeg_quality[1] + 1)
    return ([f"Processing: JPEG {v}" for v in q]
            + [f"Processing: Resample {v:.2f}" for v in np.arange(0.3, 3.0, 0.01)]
            + [f"Processing: Blur {v:.1f}" for v in np.arange(0.1, 5.0, 0.1)]
            + [f"Processing: Noise {v:.1f}" for v in np.arange(0.1, 20.0, 0.1)]
            + [f"Processing: Gamma {v:.2f}" for v in np.arange(0.3, 3.0, 0.01)])
