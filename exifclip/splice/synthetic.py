"""A synthetic splice benchmark made from real camera photos.

:func:`make_splices` pastes a region of a photo from one camera model into a
photo from another, at the same place, with nothing else changed: no
resizing, no blending, no colour matching. Whatever gives the splice away is
what differs between the two cameras' pipelines (sensor noise, demosaicing,
in-camera processing, JPEG quantisation), which is exactly what a camera-trace
model should see. Read the outputs with :func:`exifclip.splice.datasets.load_synthetic`.

How one spliced image is made
-----------------------------
1. A host photo and a donor photo whose EXIF ``Make``/``Model`` differ.
2. One crop window (top-left ``(crop_y, crop_x)``, size ``height x width``)
   that lies inside both photos: at most ``max_size`` on a side, no larger
   than the smaller photo, its offset and size multiples of 16 so the 8x8
   JPEG block grid (and 4:2:0 chroma grid) of both sources stays aligned
   with the crop and with each other. Both photos are cropped with this same
   window.
3. A random smooth region covering ``min_area`` to ``max_area`` of the crop
   (:func:`random_region`): a connected, star-shaped blob with a wobbly
   boundary, fully inside the crop.
4. ``spliced = host crop``; ``spliced[region] = donor crop[region]``.

Authentic images are crops of single photos made the same way (preferably of
photos that were not used as hosts).

Outputs (under ``out_dir``)::

    spliced/0000.png ...            lossless
    masks/0000.png ...              white = spliced (0/255, 8-bit)
    authentic/0000.png ...
    spliced_jpeg90/0000.jpg ...     with jpeg_quality=90: recompressed copies
    authentic_jpeg90/0000.jpg ...   (Pillow, 4:2:0, the standard tables at q)
    manifest.csv                    one row per image file
"""

from __future__ import annotations

import csv
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..exif import read_exif
from ..io import IMAGE_EXTENSIONS, load_image, open_image

__all__ = ["make_splices", "random_region", "MANIFEST_COLUMNS", "SyntheticWarning"]

#: Columns of ``manifest.csv``. ``file`` and ``mask`` are relative to the output
#: folder, ``host_file``/``donor_file`` to ``photo_dir``; ``variant`` is ``png``
#: or ``jpeg<q>``; authentic rows leave the donor and mask empty.
MANIFEST_COLUMNS = ("file", "label", "variant", "mask", "host_file", "host_model", "donor_file",
                    "donor_model", "area_fraction", "crop_y", "crop_x", "height", "width")

_ALIGN = 16


class SyntheticWarning(UserWarning):
    """A source photo was left out; the message names it."""


# -- the region ---------------------------------------------------------------------


def random_region(height: int, width: int, rng: np.random.Generator, min_area: float = 0.05,
                  max_area: float = 0.35, max_tries: int = 200) -> np.ndarray:
    """A random smooth, connected region covering ``min_area``..``max_area`` of the image.

    The region is star-shaped about its centre: in polar coordinates its
    boundary is ``r(theta) = R (1 + sum_k a_k cos(k theta + phi_k))`` for
    ``k = 2..5`` (amplitudes summing to at most 0.4), stretched by a random
    aspect ratio (1/2 to 2) and rotated. The target area fraction is drawn
    uniformly from ``[min_area, max_area]``; the blob lies fully inside the
    image.

    Parameters
    ----------
    height, width : int
    rng : numpy.random.Generator
    min_area, max_area : float
        Bounds of the fraction of pixels inside, ``0 < min_area <= max_area < 1``.
    max_tries : int

    Returns
    -------
    ndarray of shape (height, width), bool

    Examples
    --------
    >>> import numpy as np
    >>> region = random_region(64, 96, np.random.default_rng(0))
    >>> region.shape, bool(0.05 <= region.mean() <= 0.35)
    ((64, 96), True)
    """
    if not 0 < min_area <= max_area < 1:
        raise ValueError(f"need 0 < min_area <= max_area < 1, got {min_area}, {max_area}")
    if height < 8 or width < 8:
        raise ValueError(f"image of {height}x{width} pixels is too small for a region")
    target = rng.uniform(min_area, max_area)
    theta = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    k = np.arange(2, 6)[:, None]
    for attempt in range(max_tries):
        wobble = 0.4 if attempt < max_tries // 2 else 0.1
        amps = rng.dirichlet(np.ones(4)) * rng.uniform(0.0, wobble)
        phases = rng.uniform(0, 2 * np.pi, 4)
        log_aspect = rng.uniform(-math.log(2), math.log(2))
        if attempt >= max_tries // 2:  # hard cases: follow the image's own shape
            log_aspect = 0.5 * log_aspect + 0.5 * math.log(width / height)
        sx, sy = math.exp(log_aspect / 2), math.exp(-log_aspect / 2)
        angle = rng.uniform(0, np.pi)
        radius = 1.0 + (amps[:, None] * np.cos(k * theta + phases[:, None])).sum(0)
        unit_area = 0.5 * np.mean(radius**2) * 2 * np.pi  # area of the unit-R shape (aspect keeps area)
        R = math.sqrt(target * height * width / unit_area)
        # boundary points, to place the blob inside the image
        bx, by = R * radius * np.cos(theta) * sx, R * radius * np.sin(theta) * sy
        ca, sa = math.cos(angle), math.sin(angle)
        px, py = ca * bx - sa * by, sa * bx + ca * by
        x0, x1, y0, y1 = px.min(), px.max(), py.min(), py.max()
        if x1 - x0 > width - 2 or y1 - y0 > height - 2:
            continue
        cx = rng.uniform(-x0 + 1, width - 1 - x1)
        cy = rng.uniform(-y0 + 1, height - 1 - y1)
        top, bottom = max(int(cy + y0) - 1, 0), min(int(cy + y1) + 2, height)
        left, right = max(int(cx + x0) - 1, 0), min(int(cx + x1) + 2, width)
        yy, xx = np.mgrid[top:bottom, left:right].astype(np.float64)
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        u = (ca * dx + sa * dy) / (R * sx)  # rotate back, unstretch
        v = (-sa * dx + ca * dy) / (R * sy)
        phi = np.arctan2(v, u)
        r_phi = 1.0 + (amps[:, None, None] * np.cos(k[:, :, None] * phi[None] + phases[:, None, None])).sum(0)
        region = np.zeros((height, width), bool)
        region[top:bottom, left:right] = np.hypot(u, v) <= r_phi
        if min_area <= region.mean() <= max_area:
            return region
    raise RuntimeError(f"could not draw a region of {min_area:.0%}-{max_area:.0%} in a "
                       f"{height}x{width} image after {max_tries} tries")


# -- the photos ---------------------------------------------------------------------------


@dataclass
class _Photo:
    path: Path
    name: str
    model: str
    height: int
    width: int


def _model_from_exif(exif: dict) -> str | None:
    make = (exif.get("Make") or "").strip()
    model = (exif.get("Model") or "").strip()
    if not model:
        return None
    return model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()


def _manifest_models(photo_dir: Path) -> dict[str, str]:
    path = photo_dir / "MANIFEST.csv"
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            model = (row.get("model") or "").strip()
            if row.get("file") and model:
                make = (row.get("make") or "").strip()
                named = make and model.lower().startswith(make.lower())
                out[row["file"]] = model if named else f"{make} {model}".strip()
    return out


def _scan(photo_dir: Path) -> list[_Photo]:
    fallback = _manifest_models(photo_dir)
    photos = []
    for path in sorted(p for p in photo_dir.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a malformed EXIF still gives the tags it could read
                model = _model_from_exif(read_exif(path))
            with open_image(path) as img:
                width, height = img.size
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the rest
            warnings.warn(f"{path}: cannot read ({exc}); left out", SyntheticWarning, stacklevel=3)
            continue
        model = model or fallback.get(path.name)
        if not model:
            warnings.warn(f"{path}: no camera model in EXIF or MANIFEST.csv; left out", SyntheticWarning,
                          stacklevel=3)
            continue
        photos.append(_Photo(path, path.name, model, height, width))
    return photos


def _floor(v: int) -> int:
    return v if v < _ALIGN else v - v % _ALIGN


def _offset(rng: np.random.Generator, room: int) -> int:
    return int(rng.integers(0, room // _ALIGN + 1)) * _ALIGN


# -- the benchmark -----------------------------------------------------------------------------


def make_splices(photo_dir: Any, out_dir: Any, n: int, seed: int = 0, jpeg_quality: int | None = None,
                 n_authentic: int | None = None, min_area: float = 0.05, max_area: float = 0.35,
                 max_size: int = 1024, manifest: str = "manifest.csv", overwrite: bool = False) -> list[dict]:
    """Write a synthetic splice benchmark made from the camera photos in ``photo_dir``.

    See the module documentation for how each image is made and the output
    layout.

    Parameters
    ----------
    photo_dir : path
        Camera photos (JPEG, PNG, TIFF, ...). The camera of each is its EXIF
        ``Make`` + ``Model``; when EXIF has none, a ``MANIFEST.csv`` in the
        folder with ``file``, ``make``, ``model`` columns is used. Photos with
        no known model, or that cannot be read, are left out with a
        :class:`SyntheticWarning` naming them. At least two models are needed.
    out_dir : path
        Created if needed.
    n : int
        Spliced images.
    seed : int, default 0
        The same photos, seed and arguments give byte-identical outputs.
    jpeg_quality : int, optional
        Also write every image recompressed at this JPEG quality
        (``spliced_jpeg{q}/``, ``authentic_jpeg{q}/``).
    n_authentic : int, optional
        Authentic crops; default ``n``.
    min_area, max_area : float, default 0.05, 0.35
        Bounds of the spliced region's share of the crop.
    max_size : int, default 1024
        Longest crop side, to bound the output size.
    manifest : str, default "manifest.csv"
    overwrite : bool, default False
        Replace an earlier benchmark in ``out_dir`` (its ``spliced*``,
        ``authentic*``, ``masks`` folders and manifest are deleted first).

    Returns
    -------
    list of dict
        The manifest rows (also written to ``out_dir/manifest``).

    Raises
    ------
    ValueError
        Fewer than two camera models among the readable photos, or bad
        arguments.
    FileExistsError
        ``out_dir`` already holds a manifest and ``overwrite`` is False.
    """
    photo_dir, out_dir = Path(photo_dir), Path(out_dir)
    n_authentic = n if n_authentic is None else int(n_authentic)
    _check_arguments(photo_dir, n, n_authentic, max_size, jpeg_quality)
    _clear_earlier_benchmark(out_dir, manifest, overwrite)
    photos = _scan(photo_dir)
    models = sorted({p.model for p in photos})
    if len(models) < 2:
        raise ValueError(f"{photo_dir}: need photos from at least two camera models, found "
                         f"{len(models)} ({', '.join(models) or 'none'}) among {len(photos)} readable photos")
    rng = np.random.default_rng(seed)
    source = _Pixels()
    writer = _Writer(out_dir, jpeg_quality)
    hosts = _write_spliced(photos, models, n, rng, source, writer, photo_dir, min_area, max_area, max_size)
    _write_authentic(photos, hosts, n_authentic, rng, source, writer, photo_dir, max_size)
    rows = [{c: r[c] for c in MANIFEST_COLUMNS} for r in writer.rows]
    with open(out_dir / manifest, "w", newline="") as fh:
        csv_writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        csv_writer.writeheader()
        csv_writer.writerows(rows)
    return rows


def _check_arguments(photo_dir: Path, n: int, n_authentic: int, max_size: int, jpeg_quality: int | None) -> None:
    if n < 0 or n_authentic < 0:
        raise ValueError(f"n and n_authentic must be >= 0, got {n}, {n_authentic}")
    if max_size < 64:
        raise ValueError(f"max_size must be at least 64 pixels, got {max_size}")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if not photo_dir.is_dir():
        raise FileNotFoundError(f"{photo_dir}: photo folder not found")


def _clear_earlier_benchmark(out_dir: Path, manifest: str, overwrite: bool) -> None:
    if not (out_dir / manifest).exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir / manifest} exists; pass overwrite=True to replace that benchmark")
    for p in out_dir.iterdir():
        if p.is_dir() and (p.name == "masks" or p.name.startswith(("spliced", "authentic"))):
            shutil.rmtree(p)
    (out_dir / manifest).unlink()


class _Pixels:
    """Decoded photos, at most one at a time; a photo that fails to decode is left out for good."""

    def __init__(self):
        self.bad: set[str] = set()
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, photo: _Photo) -> np.ndarray | None:
        if photo.name in self.bad:
            return None
        if photo.name not in self._cache:
            try:
                self._cache.clear()  # keep at most one decoded pair around
                self._cache[photo.name] = load_image(photo.path)
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"{photo.path}: cannot decode ({exc}); left out", SyntheticWarning, stacklevel=4)
                self.bad.add(photo.name)
                return None
        return self._cache[photo.name]


class _Writer:
    """Writes each image as PNG (and a JPEG variant) and collects the manifest rows."""

    def __init__(self, out_dir: Path, jpeg_quality: int | None):
        self.out_dir, self.rows = out_dir, []
        self.quality = None if jpeg_quality is None else int(jpeg_quality)
        self.variant = None if jpeg_quality is None else f"jpeg{self.quality}"
        for sub in ("spliced", "masks", "authentic") + (() if self.variant is None else
                                                        (f"spliced_{self.variant}", f"authentic_{self.variant}")):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)

    def __call__(self, arr: np.ndarray, kind: str, idx: int, row: dict) -> None:
        rel = f"{kind}/{idx:04d}.png"
        Image.fromarray(arr).save(self.out_dir / rel, compress_level=3)  # 4x faster than 6, 10 % larger
        self.rows.append({**row, "file": rel, "variant": "png"})
        if self.variant is not None:
            rel_q = f"{kind}_{self.variant}/{idx:04d}.jpg"
            Image.fromarray(arr).save(self.out_dir / rel_q, quality=self.quality)
            self.rows.append({**row, "file": rel_q, "variant": self.variant})


def _write_spliced(photos: list[_Photo], models: list[str], n: int, rng: np.random.Generator, pixels: _Pixels,
                   write: _Writer, photo_dir: Path, min_area: float, max_area: float, max_size: int) -> set[str]:
    """Write ``n`` splices (host and donor from different models); returns the hosts used."""
    bad = pixels.bad
    by_model = {m: [p for p in photos if p.model == m] for m in models}
    host_order = [photos[i] for i in rng.permutation(len(photos))]
    hosts_used: set[str] = set()
    made, attempts, cursor = 0, 0, 0
    while made < n:
        attempts += 1
        if attempts > 20 * n + 100 or len({p.model for p in photos if p.name not in bad}) < 2:
            raise ValueError(f"{photo_dir}: could only make {made} of {n} splices from the readable photos")
        host = host_order[cursor % len(host_order)]
        cursor += 1
        if host.name in bad:
            continue
        donor_models = [m for m in models if m != host.model and any(p.name not in bad for p in by_model[m])]
        if not donor_models:
            continue
        donor_model = donor_models[int(rng.integers(len(donor_models)))]
        candidates = [p for p in by_model[donor_model] if p.name not in bad]
        donor = candidates[int(rng.integers(len(candidates)))]
        h = _floor(min(host.height, donor.height, max_size))
        w = _floor(min(host.width, donor.width, max_size))
        if h < 64 or w < 64:
            continue
        y = _offset(rng, min(host.height, donor.height) - h)
        x = _offset(rng, min(host.width, donor.width) - w)
        region = random_region(h, w, rng, min_area, max_area)
        host_px = pixels(host)
        if host_px is None:
            continue
        host_crop = host_px[y:y + h, x:x + w].copy()
        donor_px = pixels(donor)
        if donor_px is None:
            continue
        if host_px.shape[:2] != (host.height, host.width) or donor_px.shape[:2] != (donor.height, donor.width):
            raise RuntimeError(f"{host.path} or {donor.path}: decoded size differs from the header")
        host_crop[region] = donor_px[y:y + h, x:x + w][region]
        mask_rel = f"masks/{made:04d}.png"
        Image.fromarray(region.astype(np.uint8) * 255).save(write.out_dir / mask_rel)
        row = dict(label=1, mask=mask_rel, host_file=host.name, host_model=host.model, donor_file=donor.name,
                   donor_model=donor.model, area_fraction=f"{region.mean():.6f}", crop_y=y, crop_x=x,
                   height=h, width=w)
        write(host_crop, "spliced", made, row)
        hosts_used.add(host.name)
        made += 1
    return hosts_used


def _write_authentic(photos: list[_Photo], hosts_used: set[str], n: int, rng: np.random.Generator,
                     pixels: _Pixels, write: _Writer, photo_dir: Path, max_size: int) -> None:
    """Write ``n`` authentic crops: photos not used as hosts first, then the others."""
    fresh = [photos[i] for i in rng.permutation(len(photos)) if photos[i].name not in hosts_used]
    used = [photos[i] for i in rng.permutation(len(photos)) if photos[i].name in hosts_used]
    order = fresh + used
    made, cursor = 0, 0
    while made < n:
        if not [p for p in order if p.name not in pixels.bad]:
            raise ValueError(f"{photo_dir}: no readable photo left for authentic crops")
        photo = order[cursor % len(order)]
        cursor += 1
        if photo.name in pixels.bad:
            continue
        h, w = _floor(min(photo.height, max_size)), _floor(min(photo.width, max_size))
        y, x = _offset(rng, photo.height - h), _offset(rng, photo.width - w)
        px = pixels(photo)
        if px is None:
            continue
        row = dict(label=0, mask="", host_file=photo.name, host_model=photo.model, donor_file="",
                   donor_model="", area_fraction="0.000000", crop_y=y, crop_x=x, height=h, width=w)
        write(np.ascontiguousarray(px[y:y + h, x:x + w]), "authentic", made, row)
        made += 1
