"""Splice benchmarks, read in the folder layouts they ship in.

Every loader returns an iterator of :class:`Sample` ``(image, mask, label,
name)``: ``image`` is the image's path (decoded later, by whoever needs the
pixels), ``mask`` a boolean ``HxW`` array with ``True`` = spliced (``None``
for authentic images), ``label`` 1 = spliced, 0 = authentic. Loaders check
the layout when called and read the masks lazily, one per sample.

Each dataset draws its ground truth its own way; the conventions below are
the ones the official EXIF-as-Language loaders
(github.com/hellomuffin/exif-as-language, ``datasets/*.py``) and photoholmes
(github.com/photoholmes/photoholmes, ``src/photoholmes/datasets/*.py``) use,
cited per loader.

Bad files
---------
A spliced image whose mask is missing or unreadable is skipped with a
:class:`DatasetWarning` naming the file; the other samples still come. A
mask whose size differs from its image's is resized to it (nearest
neighbour, the image is never touched) with a warning, as the official DSO-1
loader does.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
from PIL import Image

from ..io import IMAGE_EXTENSIONS

__all__ = [
    "Sample",
    "DatasetWarning",
    "load_columbia",
    "load_dso1",
    "load_korus",
    "load_in_the_wild",
    "load_casia1",
    "load_folder",
    "load_synthetic",
    "load_dataset",
    "DATASETS",
]



class Sample(NamedTuple):
    """One benchmark image.

    Attributes
    ----------
    image : str
        Path of the image file.
    mask : ndarray of shape (H, W), bool, or None
        True = spliced; None for authentic images.
    label : int
        1 = spliced, 0 = authentic.
    name : str
        The image's path relative to the dataset root, for reports.
    """

    image: str
    mask: np.ndarray | None
    label: int
    name: str


class DatasetWarning(UserWarning):
    """A sample was skipped or repaired; the message names the file."""


# -- helpers ------------------------------------------------------------------------


def _root(root: Any, *required: str, layout: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: dataset root not found (expected {layout})")
    missing = [r for r in required if not (path / r).is_dir()]
    if required and len(missing) == len(required):
        raise FileNotFoundError(f"{path}: none of {', '.join(required)} found; expected {layout}")
    return path


def _images(folder: Path, prefix: str = "") -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.name.startswith(prefix)
                  and not p.name.startswith("."))


def _find(folder: Path, stem: str, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> Path | None:
    """``folder/stem.<ext>`` for the first extension present, any case."""
    if not folder.is_dir():
        return None
    wanted = {stem + ext for ext in extensions}
    lower = {name.lower(): name for name in wanted}
    for p in sorted(folder.iterdir()):
        if p.name in wanted or p.name.lower() in lower:
            return p
    return None


def _read(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I") and mode == "L":
            return (np.asarray(img, dtype=np.int64) > 0).astype(np.uint8) * 255
        return np.asarray(img.convert(mode))


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.height, img.width


def _fit(mask: np.ndarray, image: Path, mask_path: Path) -> np.ndarray:
    """The mask at its image's size (resized nearest-neighbour, with a warning, if not)."""
    try:
        h, w = _image_size(image)
    except Exception as exc:  # noqa: BLE001 - any decoder error means "cannot check"
        raise _Skip(f"{image}: cannot read the image header ({exc}); skipped") from None
    if mask.shape == (h, w):
        return mask
    warnings.warn(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but {image.name} is {w}x{h}; "
                  "resized the mask (nearest neighbour)", DatasetWarning, stacklevel=4)
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    return np.asarray(resized) > 127


class _Skip(Exception):
    pass


def _sample(image: Path, mask_path: Path | None, rule: Callable[[Path], np.ndarray], root: Path,
            what: str = "mask") -> Sample | None:
    """A spliced sample, or None after a warning naming the missing or bad file."""
    name = image.relative_to(root).as_posix()
    if mask_path is None or not mask_path.is_file():
        where = f" (looked for {mask_path})" if mask_path is not None else ""
        warnings.warn(f"{image}: no {what} found{where}; skipped", DatasetWarning, stacklevel=3)
        return None
    try:
        mask = rule(mask_path)
        mask = _fit(mask, image, mask_path)
    except _Skip as exc:
        warnings.warn(str(exc), DatasetWarning, stacklevel=3)
        return None
    except Exception as exc:  # noqa: BLE001 - an unreadable mask must not stop the others
        warnings.warn(f"{mask_path}: unreadable {what} ({type(exc).__name__}: {exc}); "
                      f"{image.name} skipped", DatasetWarning, stacklevel=3)
        return None
    return Sample(str(image), mask, 1, name)


def _authentic(images: Iterable[Path], root: Path) -> Iterator[Sample]:
    for image in images:
        yield Sample(str(image), None, 0, image.relative_to(root).as_posix())


def _nonzero(path: Path) -> np.ndarray:
    return _read(path, "L") > 0


def _zero(path: Path) -> np.ndarray:
    return _read(path, "L") == 0


def _columbia_green(path: Path) -> np.ndarray:
    rgb = _read(path, "RGB").astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (g >= 128) & (r < 128) & (b < 128)


# -- the benchmarks -----------------------------------------------------------------------


def load_columbia(root: Any, spliced_only: bool = False) -> Iterator[Sample]:
    """Columbia Uncompressed Image Splicing Detection Evaluation Dataset (Hsu & Chang 2006).

    Layout, as distributed (ee.columbia.edu/ln/dvmm/downloads/authsplcuncmp)::

        root/
          4cam_auth/*.tif                      183 authentic
          4cam_splc/*.tif                      180 spliced
          4cam_splc/edgemask/<stem>_edgemask.jpg

    Mask: the edgemask paints the two source regions of each spliced image,
    one red and one green; the spliced region is the **green** one. The
    official EXIF-as-Language loader takes pixels equal to (0, 255, 0) or
    (0, 200, 0), photoholmes takes green > 0. The edgemasks are JPEGs, so
    exact colours do not survive compression: here a pixel is spliced when
    G >= 128 and R, B < 128 (both greens, not the reds, robust to JPEG noise).
    ``.bmp``/``.png``/``.tif`` images and edgemasks are accepted too.

    Parameters
    ----------
    root : path
    spliced_only : bool, default False
        Leave out ``4cam_auth``.

    Yields
    ------
    Sample
        Spliced images first, then authentic, each in file-name order.
    """
    root = _root(root, "4cam_splc", "4cam_auth", layout="4cam_splc/ and 4cam_auth/ (Columbia)")

    def gen() -> Iterator[Sample]:
        splc = root / "4cam_splc"
        for image in _images(splc):
            mask_path = _find(splc / "edgemask", image.stem + "_edgemask")
            if mask_path is None:
                mask_path = splc / "edgemask" / f"{image.stem}_edgemask.jpg"
            sample = _sample(image, mask_path, _columbia_green, root, "edgemask")
            if sample is not None:
                yield sample
        if not spliced_only:
            yield from _authentic(_images(root / "4cam_auth"), root)

    return gen()


def load_dso1(root: Any, spliced_only: bool = False) -> Iterator[Sample]:
    """DSO-1 (Carvalho et al., TIFS 2013), 100 spliced + 100 normal PNGs.

    Layout, as distributed (``tifs-database``, recodbr.wordpress.com/code-n-data)::

        root/                          (the tifs-database folder)
          DSO-1/normal-NN.png          authentic
          DSO-1/splicing-NN.png        spliced
          DSO-1-Fake-Images-Masks/splicing-NN.png

    Mask: **inverted** - the spliced region is black (0) on white. The
    official EXIF-as-Language loader binarises ``> 0`` and swaps 0 and 1;
    photoholmes takes ``== 0``; both give spliced = black, as here.
    """
    root = _root(root, "DSO-1", layout="DSO-1/ and DSO-1-Fake-Images-Masks/ (DSO-1 tifs-database)")

    def gen() -> Iterator[Sample]:
        images = _images(root / "DSO-1")
        for image in images:
            if image.name.lower().startswith("splicing"):
                mask_path = _find(root / "DSO-1-Fake-Images-Masks", image.stem) or (
                    root / "DSO-1-Fake-Images-Masks" / image.name)
                sample = _sample(image, mask_path, _zero, root)
                if sample is not None:
                    yield sample
        if not spliced_only:
            yield from _authentic([p for p in images if p.name.lower().startswith("normal")], root)

    return gen()


def load_korus(root: Any, spliced_only: bool = False) -> Iterator[Sample]:
    """Korus Realistic Tampering dataset (Korus & Huang, TIFS 2017), "RT".

    Layout, as distributed (pkorus.pl/downloads/dataset-realistic-tampering)::

        root/
          Canon_60D/ Nikon_D90/ Nikon_D7000/ Sony_A57/     one folder per camera
            pristine/*.TIF                                  authentic
            tampered-realistic/*.TIF                        tampered
            ground-truth/<stem>.PNG

    Every camera folder holding ``tampered-realistic`` or ``pristine`` is
    read. Mask: tampered pixels are non-black; the maps have three levels and
    the grey level counts as tampered too. ``> 0`` as in the official
    EXIF-as-Language loader (photoholmes uses ``> 10``: the same on these
    lossless PNGs). RT mixes splicing with copy-move and object removal.
    """
    root = _root(root, layout="<camera>/pristine, <camera>/tampered-realistic, <camera>/ground-truth (Korus RT)")
    cameras = sorted(p for p in root.iterdir()
                     if p.is_dir() and ((p / "tampered-realistic").is_dir() or (p / "pristine").is_dir()))
    if not cameras:
        raise FileNotFoundError(f"{root}: no camera folder with tampered-realistic/ or pristine/ "
                                "(expected e.g. Canon_60D/tampered-realistic, Korus RT)")

    def gen() -> Iterator[Sample]:
        for cam in cameras:
            for image in _images(cam / "tampered-realistic"):
                mask_path = _find(cam / "ground-truth", image.stem) or cam / "ground-truth" / f"{image.stem}.PNG"
                sample = _sample(image, mask_path, _nonzero, root)
                if sample is not None:
                    yield sample
        if not spliced_only:
            for cam in cameras:
                yield from _authentic(_images(cam / "pristine"), root)

    return gen()


def load_in_the_wild(root: Any) -> Iterator[Sample]:
    """In-the-Wild splices (Huh et al., ECCV 2018, EXIF-SC), 201 spliced JPEGs.

    Layout, as distributed by EXIF-SC (``label_in_wild``)::

        root/
          images/*.jpg
          masks/<stem>.png

    Every image is spliced (no authentic ones, so no detection metrics).
    Mask: spliced pixels are non-zero, as in the official EXIF-as-Language
    loader (``map > 0``).
    """
    root = _root(root, "images", layout="images/ and masks/ (In-the-Wild, label_in_wild)")

    def gen() -> Iterator[Sample]:
        for image in _images(root / "images"):
            mask_path = _find(root / "masks", image.stem) or root / "masks" / f"{image.stem}.png"
            sample = _sample(image, mask_path, _nonzero, root)
            if sample is not None:
                yield sample

    return gen()


def load_casia1(root: Any, mask_root: Any, subset: str = "Sp", spliced_only: bool = False) -> Iterator[Sample]:
    """CASIA v1.0 (Dong et al., ChinaSIP 2013) with external ground truth.

    CASIA 1.0 ships without masks; these come from the CASIA 1.0 ground-truth
    of Pham et al. (github.com/namtpham/casia1groundtruth, ``CASIA 1.0
    groundtruth.zip``), whose README also gives the corrected file names
    (use its renamed ``Tp`` images). Layouts::

        root/                         mask_root/   (or mask_root/"CASIA 1.0 groundtruth"/)
          Au/*.jpg                      Sp/<stem>_gt.png
          Tp/Sp/*.jpg                   CM/<stem>_gt.png
          Tp/CM/*.jpg

    Mask: tampered pixels are white (non-zero), as photoholmes reads them.

    Parameters
    ----------
    root : path
        The CASIA 1.0 folder (``Au``, ``Tp``).
    mask_root : path
        The unzipped ground truth.
    subset : {"Sp", "CM"}, default "Sp"
        Splicing (the camera-trace task) or copy-move.
    spliced_only : bool, default False
        Leave out ``Au``.
    """
    if subset not in ("Sp", "CM"):
        raise ValueError(f"subset must be 'Sp' (splicing) or 'CM' (copy-move), got {subset!r}")
    root = _root(root, "Au", "Tp", layout="Au/ and Tp/Sp/ (CASIA 1.0)")
    mask_root = Path(mask_root)
    candidates = [mask_root / subset, mask_root / "CASIA 1.0 groundtruth" / subset, mask_root]
    mask_dir = next((c for c in candidates if c.is_dir()), None)
    if mask_dir is None:
        raise FileNotFoundError(f"{mask_root}: CASIA 1.0 ground truth not found "
                                f"(expected {mask_root / subset}/<stem>_gt.png)")

    def gen() -> Iterator[Sample]:
        for image in _images(root / "Tp" / subset):
            mask_path = _find(mask_dir, image.stem + "_gt") or mask_dir / f"{image.stem}_gt.png"
            sample = _sample(image, mask_path, _nonzero, root)
            if sample is not None:
                yield sample
        if not spliced_only:
            yield from _authentic(_images(root / "Au"), root)

    return gen()


def load_folder(root: Any, images: str = "images", masks: str = "masks", invert: bool = False) -> Iterator[Sample]:
    """Any benchmark laid out as ``images/`` + ``masks/``, matched by file stem.

    Layout::

        root/
          images/<stem>.<jpg|png|tif|...>
          masks/<stem>.png              optional: no mask = authentic

    Mask: non-zero = spliced (``invert=True``: zero = spliced). An image
    with a mask is labelled 1 if the mask has a spliced pixel, else 0; an
    image without a mask is authentic (label 0, mask None).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "images").mkdir(); (root / "masks").mkdir()
    >>> Image.new("RGB", (4, 3)).save(root / "images" / "a.png")
    >>> Image.new("RGB", (4, 3)).save(root / "images" / "b.png")
    >>> m = np.zeros((3, 4), np.uint8); m[0, 0] = 255
    >>> Image.fromarray(m).save(root / "masks" / "a.png")
    >>> [(s.name, s.label, None if s.mask is None else int(s.mask.sum())) for s in load_folder(root)]
    [('images/a.png', 1, 1), ('images/b.png', 0, None)]
    """
    root = _root(root, images, layout=f"{images}/ and {masks}/")
    rule = _zero if invert else _nonzero

    def gen() -> Iterator[Sample]:
        for image in _images(root / images):
            mask_path = _find(root / masks, image.stem)
            if mask_path is None:
                yield Sample(str(image), None, 0, image.relative_to(root).as_posix())
                continue
            sample = _sample(image, mask_path, rule, root)
            if sample is not None:
                yield sample._replace(label=int(sample.mask.any()))

    return gen()


def load_synthetic(root: Any, variant: str = "png", manifest: str = "manifest.csv") -> Iterator[Sample]:
    """A benchmark written by :func:`exifclip.splice.synthetic.make_splices`.

    Reads ``manifest.csv`` and yields the rows of one variant: ``"png"``
    (lossless) or ``"jpeg<q>"`` (recompressed at quality ``q``, e.g.
    ``"jpeg90"``), spliced then authentic in manifest order. Masks are
    ``masks/<id>.png``, white = spliced.
    """
    root = Path(root)
    manifest = root / manifest
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (make one with exifclip.splice.synthetic.make_splices)")
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    variants = sorted({r.get("variant", "") for r in rows})
    if variant not in variants:
        raise ValueError(f"{root}: no variant {variant!r} in manifest.csv; it has {', '.join(variants)}")
    rows = [r for r in rows if r["variant"] == variant]
    rows.sort(key=lambda r: -int(r["label"]))  # spliced first, stable otherwise

    def gen() -> Iterator[Sample]:
        for r in rows:
            image = root / r["file"]
            if int(r["label"]) == 1:
                sample = _sample(image, root / r["mask"], _nonzero, root)
                if sample is not None:
                    yield sample
            else:
                yield Sample(str(image), None, 0, r["file"])

    return gen()


#: Loaders by name, for :func:`load_dataset` and ``exifclip evaluate --dataset``.
DATASETS: dict[str, Callable[..., Iterator[Sample]]] = {
    "columbia": load_columbia,
    "dso1": load_dso1,
    "korus": load_korus,
    "in_the_wild": load_in_the_wild,
    "casia1": load_casia1,
    "folder": load_folder,
    "synthetic": load_synthetic,
}

_ALIASES = {"dso_1": "dso1", "rt": "korus", "realistic_tampering": "korus", "inthewild": "in_the_wild",
            "itw": "in_the_wild", "casia": "casia1", "casia_1": "casia1"}


def load_dataset(name: str, root: Any, **kwargs: Any) -> Iterator[Sample]:
    """Load a benchmark by name: one of :data:`DATASETS` (case and ``-`` ignored).

    Aliases: ``dso-1``, ``rt`` / ``realistic-tampering`` (Korus),
    ``in-the-wild``, ``casia``. Keyword arguments go to the loader (e.g.
    ``mask_root=`` for CASIA 1, ``variant=`` for synthetic).

    Examples
    --------
    >>> sorted(DATASETS)
    ['casia1', 'columbia', 'dso1', 'folder', 'in_the_wild', 'korus', 'synthetic']
    >>> load_dataset("nope", ".")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset 'nope'; known: casia1, columbia, dso1, folder, in_the_wild, korus, synthetic
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key](root, **kwargs)
