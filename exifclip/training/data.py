"""Training data: photos and their EXIF text, one random full-resolution patch each.

A training example is a pair (patch, text): a square patch cut at a random
position from a photo *at full resolution* (never resized: resizing smooths
away the camera traces) and the photo's EXIF written as one line by
:func:`exifclip.exif.exif_to_text`.

Photos come from image files or from a CSV / JSONL metadata file, and
some are left out (unreadable, too small, too few tags): the formats and the
rules are in the training guide ("Training data"), and each photo left out is
named in :attr:`ExifPatchDataset.skipped_files`.

Randomness
----------
The patch position and any augmentation of example ``i`` in epoch ``e`` are
drawn from ``numpy.random.default_rng([seed, e, i])``: they do not depend on
worker processes, ranks or how far a run got, which is what makes resumed and
multi-process runs repeat a one-process run exactly.

Processing augmentations (off by default) are :mod:`exifclip.training.augment`.

Options for small, clustered corpora (all off by default, each leaving the
draws above unchanged): ``patch_pairs`` adds a second patch of the same
photo, at another random position and processed the same way (the
patch-to-patch term of the loss); ``tag_dropout`` and ``shuffle_tags``
rewrite the text (:mod:`exifclip.training.text`) from their own generator,
``default_rng([seed, e, i, 1])``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from ..exif import DEFAULT_TAGS, PAPER_TAGS, ExifWarning, exif_to_text, read_exif
from ..io import IMAGE_EXTENSIONS, ImageLoadError, load_image, open_image, source_name
from .augment import AugmentConfig, process_patch
from .text import camera_key, transform_text

__all__ = [
    "ExifRecord",
    "PatchSample",
    "ExifPatchDataset",
    "find_images",
    "read_metadata",
    "count_tags",
    "scan_photo",
]

_FILE_KEYS = ("file", "path", "image", "filename")
_TEXT_ITEM = re.compile(r"(?:^|, )[^,:]+: ")


# -- finding photos and their EXIF ------------------------------------------------------------

def find_images(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Image files under ``root`` (recursively), sorted, by file name ending.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["b.JPG", "a.png", "notes.txt"]:
    ...     _ = (d / name).write_bytes(b"")
    >>> [pathlib.Path(p).name for p in find_images(d)]
    ['a.png', 'b.JPG']
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of images")
    ends = tuple(e.lower() for e in extensions)
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(ends))


def _resolve_tags(exif: dict, tags: Any, style: str) -> list[str]:
    if tags is None or tags == "default":
        return list(DEFAULT_TAGS) if style == "default" else [k for k in exif if k in PAPER_TAGS]
    if tags == "all":
        return list(exif)
    return list(tags)


def count_tags(exif: dict, tags: Any = None, style: str = "default") -> int:
    """How many tags :func:`exifclip.exif.exif_to_text` would write for ``exif``.

    Parameters
    ----------
    exif : dict
        ``{tag: value}``, e.g. from :func:`exifclip.exif.read_exif`.
    tags : None, "default", "all" or list of str
        As ``exif_to_text``'s ``tags`` (``"default"`` is ``None``).
    style : {"default", "paper"}

    Examples
    --------
    >>> count_tags({"Make": "Canon", "Model": "X", "Date/Time": "2020", "Flash": ""})
    2
    >>> count_tags({"Make": "Canon", "Model": "X", "Date/Time": "2020"}, tags="all")
    3
    """
    return sum(1 for t in dict.fromkeys(_resolve_tags(exif, tags, style))
               if str(exif.get(t) if exif.get(t) is not None else "").strip())


def _text_items(text: str) -> int:
    return len(_TEXT_ITEM.findall(text))


def _row_to_entry(row: dict, where: str) -> tuple[str, dict | None, str | None]:
    name = next((str(row[k]) for k in _FILE_KEYS if row.get(k) not in (None, "")), None)
    if name is None:
        raise ValueError(f"{where}: no file name (a 'file' column or key)")
    if row.get("text") not in (None, ""):
        return name, None, str(row["text"])
    if row.get("exif") not in (None, ""):
        exif = row["exif"]
        if isinstance(exif, str):
            try:
                exif = json.loads(exif)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: 'exif' is not a JSON object ({exc})") from None
        if not isinstance(exif, dict):
            raise ValueError(f"{where}: 'exif' must be an object of tag -> value")
        return name, {str(k): str(v) for k, v in exif.items() if v not in (None, "")}, None
    skip = set(_FILE_KEYS) | {"text", "exif"}
    return name, {str(k): str(v) for k, v in row.items() if k not in skip and v not in (None, "")}, None


def read_metadata(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[tuple[str, dict | None, str | None]]:
    """Read a CSV or JSONL file that maps image files to their EXIF.

    Parameters
    ----------
    path : path-like
        ``.csv`` (header row) or ``.jsonl`` / ``.json`` (one object per line);
        the formats are described in the module doc.
    root : path-like, optional
        Directory that relative file names are relative to (default: the
        metadata file's directory).

    Returns
    -------
    list of (file, exif, text)
        ``exif`` is a dict or ``None``; ``text`` a ready sentence or ``None``.

    Raises
    ------
    ValueError
        If a row has no file name or malformed ``exif``; the message names
        the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.csv").write_text("file,Make,Model\\na.jpg,Canon,EOS 5D\\n")
    >>> [(pathlib.Path(f).name, e, t) for f, e, t in read_metadata(d / "m.csv")]
    [('a.jpg', {'Make': 'Canon', 'Model': 'EOS 5D'}, None)]
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    rows: list[tuple[dict, str]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                rows.append(({k: v for k, v in row.items() if k is not None}, f"{path}:{i}"))
    else:
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i}: not a JSON object ({exc})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}:{i}: not a JSON object")
                rows.append((obj, f"{path}:{i}"))
    out = []
    for row, where in rows:
        name, exif, text = _row_to_entry(row, where)
        file = Path(name).expanduser()
        out.append((str(file if file.is_absolute() else base / file), exif, text))
    return out


# -- records ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExifRecord:
    """One usable photo: where its pixels are, its text, its size.

    Attributes
    ----------
    source : str or bytes
        A path (or encoded bytes) that :func:`exifclip.io.load_image` reads.
    text : str
        The EXIF sentence.
    n_tags : int
        Tags in ``text`` (see the module doc).
    height, width : int
        Pixel size from the file header.
    """

    source: Any
    text: str
    n_tags: int
    height: int
    width: int


def scan_photo(item: tuple, tags: Any, style: str, min_tags: int, min_size: int):
    """Whether one photo is kept, and its record: the rules of "Which photos are kept" (training guide).

    Parameters
    ----------
    item : (source, exif, text)
        A path or encoded bytes, and its EXIF dict or ready text (both
        ``None``: the EXIF is read from the image).
    tags, style, min_tags, min_size
        As :class:`ExifPatchDataset`'s ``tags``, ``text_style``,
        ``min_tags``, ``min_size``.

    Returns
    -------
    (ExifRecord, None) or (None, (name, reason, detail))
    """
    source, exif, text = item
    name = source_name(source)
    try:
        img = open_image(source)
        try:
            width, height = img.size
            if exif is None and text is None:
                exif = read_exif(img)
        finally:
            if img is not source:
                img.close()
    except (ImageLoadError, OSError, ValueError, TypeError) as exc:
        return None, (name, "unreadable", str(exc))
    if min(height, width) < min_size:
        return None, (name, "too_small", f"{width}x{height} is smaller than {min_size} px")
    if text is None:
        n = count_tags(exif, tags, style)
        text = exif_to_text(exif, tags=None if tags == "default" else tags, style=style)
    else:
        n = _text_items(text)
    if n < min_tags:
        return None, (name, "too_few_tags", f"{n} tags, fewer than {min_tags}")
    return ExifRecord(source, text, n, int(height), int(width)), None


# -- the dataset --------------------------------------------------------------------------------

class PatchSample(NamedTuple):
    """One example: ``patch`` (P, P, 3) uint8 (``None`` if decoding failed),
    ``text`` (as the model reads it), the record ``index``, ``error`` (a
    message or ``None``), ``patch2`` (a second patch of the photo with
    ``patch_pairs``, else ``None``) and ``label_text`` (the full text before
    tag dropout and shuffling, which the loss's targets compare; ``None``:
    ``text``) and ``name`` (the photo's name, for errors and reports)."""

    patch: np.ndarray | None
    text: str
    index: int
    error: str | None = None
    patch2: np.ndarray | None = None
    label_text: str | None = None
    name: str | None = None


class ExifPatchDataset:
    """Photos with their EXIF text; each item is one random full-resolution patch.

    A map-style dataset (usable with :class:`torch.utils.data.DataLoader`)
    whose keys are ``index`` or ``(epoch, index)``. Which photos are kept,
    where the text comes from and how randomness works is in the module doc.

    Parameters
    ----------
    sources : path-like, or sequence of paths / bytes, optional
        A directory (searched recursively by :func:`find_images`) or the
        images themselves. With ``metadata``, a directory is the ``root``
        that the metadata's relative names are resolved against.
    metadata : path-like, optional
        CSV or JSONL mapping files to EXIF (:func:`read_metadata`).
    patch_size : int, default=124
    min_tags : int, default=11
        Fewest tags a photo's text must have (the paper kept > 10).
    tags : None, "default", "all" or list of str
        Tags written in the text (see :func:`exifclip.exif.exif_to_text`).
    text_style : {"default", "paper"}
    min_size : int, optional
        Smallest shorter side kept, in pixels (default ``patch_size``).
    cache_images : bool, default=False
        Keep decoded photos in memory after first use (small corpora; each
        DataLoader worker keeps its own cache).
    augment : AugmentConfig, dict, True or None
        Processing augmentations (off by default).
    patch_pairs : bool, default=False
        Each item also holds a second patch of its photo (``patch2``).
    tag_dropout : float, default=0.0
        Probability of leaving each tag out of the text.
    shuffle_tags : bool, default=False
        Write the tags in a random order.
    seed : int, default=0
    scan_workers : int, default=8
        Threads reading headers when the dataset is built.

    Attributes
    ----------
    records : list of ExifRecord
    skipped : collections.Counter
        Photos left out, by reason (``unreadable``, ``too_small``,
        ``too_few_tags``; ``decode_failed`` is counted by the training loop).
    skipped_files : list of (name, reason, detail)

    Examples
    --------
    >>> import io, numpy as np, piexif
    >>> from PIL import Image
    >>> exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"EOS"}})
    >>> buf = io.BytesIO(); Image.new("RGB", (80, 60)).save(buf, "JPEG", exif=exif)
    >>> ds = ExifPatchDataset([buf.getvalue(), b"junk"], patch_size=32, min_tags=2)
    >>> len(ds), dict(ds.skipped)
    (1, {'unreadable': 1})
    >>> sample = ds[0]
    >>> sample.patch.shape, sample.text
    ((32, 32, 3), 'Make: Canon, Model: EOS')
    """

    def __init__(self, sources: Any = None, *, metadata: str | os.PathLike | None = None, patch_size: int = 124,
                 min_tags: int = 11, tags: Any = None, text_style: str = "default", min_size: int | None = None,
                 cache_images: bool = False, augment: Any = None, seed: int = 0, scan_workers: int = 8,
                 records: Sequence[ExifRecord] | None = None, skipped_files: Iterable[tuple] = (),
                 patch_pairs: bool = False, tag_dropout: float = 0.0, shuffle_tags: bool = False):
        if text_style not in ("default", "paper"):
            raise ValueError(f"text_style must be 'default' or 'paper', got {text_style!r}")
        if isinstance(tags, str) and tags not in ("default", "all"):
            raise ValueError(f"tags must be 'default', 'all' or a list of tag names, got {tags!r}")
        self.patch_size = int(patch_size)
        self.min_tags = int(min_tags)
        self.tags = tags
        self.text_style = text_style
        self.min_size = int(min_size) if min_size is not None else self.patch_size
        self.cache_images = bool(cache_images)
        self.augment = AugmentConfig.coerce(augment)
        self.seed = int(seed)
        if not 0.0 <= float(tag_dropout) < 1.0:
            raise ValueError(f"tag_dropout must be in [0, 1), got {tag_dropout!r}")
        self.patch_pairs, self.tag_dropout, self.shuffle_tags = bool(patch_pairs), float(tag_dropout), \
            bool(shuffle_tags)
        self._cache: dict[int, np.ndarray] = {}
        if records is not None:
            self.records = list(records)
            self.skipped_files = list(skipped_files)
        else:
            items = self._items(sources, metadata)
            self.records, self.skipped_files = [], []
            workers = max(1, min(int(scan_workers), len(items) // 16 + 1))
            def scan(it):
                return scan_photo(it, tags, text_style, self.min_tags, self.min_size)
            # Malformed EXIF warns; what could be read is kept. The filter is set here, in this thread:
            # catch_warnings is not thread-safe, so the workers must not touch it.
            with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
                warnings.simplefilter("ignore", ExifWarning)
                for record, skip in pool.map(scan, items):
                    if record is not None:
                        self.records.append(record)
                    else:
                        self.skipped_files.append(skip)
        self.skipped = Counter(reason for _, reason, _ in self.skipped_files)

    @staticmethod
    def _items(sources: Any, metadata: Any) -> list[tuple]:
        if metadata is not None:
            root = sources if isinstance(sources, (str, os.PathLike)) else None
            if sources is not None and root is None:
                raise ValueError("with metadata, sources must be the image directory (or None)")
            return read_metadata(metadata, root=root)
        if sources is None:
            raise ValueError("give image sources (a directory or a list of files) or a metadata file")
        if isinstance(sources, (str, os.PathLike)):
            return [(p, None, None) for p in find_images(sources)]
        if isinstance(sources, (bytes, bytearray)):
            sources = [sources]
        return [(s if not isinstance(s, os.PathLike) else os.fspath(s), None, None) for s in sources]

    # -- the dataset protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> PatchSample:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.sample(int(index), int(epoch))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = {}  # a worker process fills its own cache
        return state

    @property
    def texts(self) -> list[str]:
        """The EXIF sentence of every record, in order."""
        return [r.text for r in self.records]

    @property
    def cameras(self) -> list[int]:
        """The camera of every record (:func:`exifclip.training.text.camera_key`: Make and Model)."""
        return [camera_key(r.text) for r in self.records]

    def image(self, index: int) -> np.ndarray:
        """The decoded photo of record ``index`` (cached when ``cache_images``)."""
        if index in self._cache:
            return self._cache[index]
        image = load_image(self.records[index].source)
        if self.cache_images:
            self._cache[index] = image
        return image

    def sample(self, index: int, epoch: int = 0) -> PatchSample:
        """The example of record ``index`` in ``epoch``: the same every time.

        A photo that cannot be decoded gives ``patch=None`` and ``error``.
        """
        record = self.records[index]
        try:
            image = self.image(index)
        except (ImageLoadError, OSError, ValueError) as exc:
            return PatchSample(None, record.text, index, str(exc), name=source_name(record.source))
        return self.example(image, record.text, index, epoch, source_name(record.source))

    def example(self, image: np.ndarray, text: str, index: int, epoch: int = 0,
                name: str = "<image>") -> PatchSample:
        """The example of a decoded photo with EXIF text ``text``, drawn as record ``index`` of ``epoch``.

        What :meth:`sample` gives for a record; photos that are not records
        (streamed from shards) go through it too, so both give the same
        patches for the same photo, text, index and epoch. ``name`` names the
        photo in errors and in the sample.
        """
        p = self.patch_size
        h, w = image.shape[:2]
        if min(h, w) < p:  # the header lied
            return PatchSample(None, text, index, f"{name}: {w}x{h} is smaller than one {p}x{p} patch", name=name)
        rng = np.random.default_rng([self.seed, epoch, index])
        patch, suffix, how = self._patch(image, rng)
        patch2 = self._patch(image, rng, second=True, how=how)[0] if self.patch_pairs else None
        full = text + suffix
        shown = full
        if self.tag_dropout > 0 or self.shuffle_tags:
            shown = transform_text(full, np.random.default_rng([self.seed, epoch, index, 1]), self.tag_dropout,
                                   self.shuffle_tags)
        return PatchSample(patch, shown, index, None, patch2, full, name)

    def _patch(self, image: np.ndarray, rng: np.random.Generator, second: bool = False,
               how: tuple | None = None) -> tuple[np.ndarray, str, tuple | None]:
        """One patch: ``(patch, text suffix, (op, value) or None)``. The first patch of a photo draws
        whether and how it is processed; the ``second`` of a pair is processed as ``how`` (``None``:
        not at all) at its own position (the sizes that let the first fit let it fit too)."""
        p, (h, w) = self.patch_size, image.shape[:2]
        if self.augment is not None and (how is not None if second else rng.random() < self.augment.p):
            done = process_patch(image, p, rng, self.augment, *(how or ()))
            if done is not None:
                return done
        y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        return np.ascontiguousarray(image[y:y + p, x:x + p]), "", None

    # -- bookkeeping ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the records (sources and texts), to check a resume."""
        h = hashlib.sha1()
        for r in self.records:
            src = r.source if isinstance(r.source, str) else hashlib.sha1(bytes(r.source)).hexdigest()
            h.update(f"{src}\x00{r.text}\x01".encode("utf-8", "replace"))
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """Counts for logs: images kept, skipped by reason."""
        return {"images": len(self.records), "skipped": dict(sorted(self.skipped.items())),
                "skipped_total": sum(self.skipped.values())}

    def subset(self, indices: Sequence[int]) -> "ExifPatchDataset":
        """A dataset over some of the records, with the same settings."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.records = [self.records[i] for i in indices]
        out._cache = {}
        return out

    def with_settings(self, **settings: Any) -> "ExifPatchDataset":
        """A copy with other patch settings (``patch_size``, ``augment``, ``seed``, ``cache_images``,
        ``patch_pairs``, ``tag_dropout``, ``shuffle_tags``)."""
        out = self.subset(range(len(self.records)))
        for key, value in settings.items():
            if key == "augment":
                value = AugmentConfig.coerce(value)
            elif key == "tag_dropout" and not 0.0 <= float(value) < 1.0:
                raise ValueError(f"tag_dropout must be in [0, 1), got {value!r}")
            elif key not in ("patch_size", "seed", "cache_images", "patch_pairs", "tag_dropout", "shuffle_tags"):
                raise ValueError(f"cannot change {key!r} of a built dataset")
            setattr(out, key, value)
        return out
