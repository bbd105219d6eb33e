"""Collections of image sources: streams for the estimators, folders and lists for the command line.

Two jobs, one concept ("what images does this call cover"):

:func:`iter_sources`
    Any ``X`` an estimator accepts (one source, a list, a NumPy array of
    paths, a pandas Series, a generator) as an iterator, without reading a
    generator ahead: a call over a stream of 40,000 photos holds only what
    it is working on.
:func:`collect_images`
    Command-line inputs (files, folders, glob patterns, list files) as one
    ordered list of paths, with the files of a folder that are not images
    counted rather than failed (:class:`Collection`).
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._files import is_file_object
from .io import IMAGE_EXTENSIONS, as_source_list

__all__ = ["Collection", "collect_images", "is_image_name", "iter_sources", "read_path_list"]

_SINGLE = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)


def iter_sources(X: Any) -> Iterator:
    """The image sources of ``X``, one at a time (checked now, read later).

    Lists, tuples and arrays are normalised by
    :func:`exifclip.io.as_source_list` (a NumPy array of paths, str or
    object dtype, is a list of paths); any other iterable (a generator, a
    pandas Series, a ``map`` object) is read lazily, one item per ``next``.

    Parameters
    ----------
    X : image source, sequence or iterable of them

    Returns
    -------
    iterator of image sources

    Raises
    ------
    ValueError
        If ``X`` holds no source (for a stream: when it ends empty).
    TypeError
        If ``X`` is neither a source nor iterable.

    Examples
    --------
    >>> list(iter_sources(np.array(["a.jpg", "b.jpg"], dtype=object)))
    ['a.jpg', 'b.jpg']
    >>> list(iter_sources(p for p in ["a.jpg", "b.jpg"]))
    ['a.jpg', 'b.jpg']
    """
    if isinstance(X, _SINGLE) or isinstance(X, Sequence) or is_file_object(X) or hasattr(X, "columns"):
        return iter(as_source_list(X))  # errors now, when the call is made
    if not hasattr(X, "__iter__"):
        raise TypeError(f"expected an image source or an iterable of them, got {type(X).__name__}")
    return _lazy(iter(X))


def _lazy(items: Iterator) -> Iterator:
    empty = True
    for item in items:
        empty = False
        yield str(item) if isinstance(item, np.str_) else item
    if empty:
        raise ValueError("no images given: the input is empty")


def is_image_name(path: str | os.PathLike) -> bool:
    """Whether a file name ends like an image (:data:`exifclip.io.IMAGE_EXTENSIONS`, any case).

    Examples
    --------
    >>> is_image_name("DSC_0001.JPG"), is_image_name("notes.txt")
    (True, False)
    """
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class Collection:
    """The images a command covers, and what it left out.

    Attributes
    ----------
    paths : list of str
        Image files in order: each input in turn, a folder's files sorted,
        every file once (the first time it is named).
    skipped : list of str
        Files found in folders or by patterns whose names are not images
        (counted, not failed).
    """

    paths: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _walk(folder: Path, recursive: bool) -> Iterator[str]:
    """Files of ``folder``, sorted by path; hidden files and folders are left out."""
    if not recursive:
        yield from sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(root, name)


def read_path_list(path: str | os.PathLike) -> list[str]:
    """The paths listed in a file: one per line, or the ``path`` column of a CSV file.

    A file whose first line is a CSV header with a ``path`` column is read
    as CSV (other columns are ignored); otherwise each non-blank line that
    does not start with ``#`` is a path. Relative paths are taken relative to
    the list file's folder, so a list travels with the photos it names.

    Raises
    ------
    ValueError
        Naming the file: it cannot be read, or is a CSV without a ``path`` column.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "list.csv"), "w") as f:
    ...     _ = f.write("path,label\\n/photos/a.jpg,1\\nb.jpg,0\\n")
    >>> read_path_list(os.path.join(d, "list.csv")) == ["/photos/a.jpg", os.path.join(d, "b.jpg")]
    True
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot read the list of images ({exc})") from None
    rows = [row for row in csv.reader(lines) if any(cell.strip() for cell in row)]
    header = [cell.strip() for cell in rows[0]] if rows else []
    if name.lower().endswith(".csv") or (len(header) > 1 and "path" in header):
        if "path" not in header:
            raise ValueError(f"{name}: a CSV list of images needs a 'path' column, found {header}")
        column = header.index("path")
        entries = [row[column].strip() for row in rows[1:] if len(row) > column]
    else:
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    base = os.path.dirname(os.path.abspath(name))
    return [e if os.path.isabs(e) else os.path.join(base, e) for e in entries if e]


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def collect_images(
    inputs: Iterable[str | os.PathLike], recursive: bool = False, lists: Iterable[str | os.PathLike] = ()
) -> Collection:
    """Expand command-line inputs into the image files they name.

    Parameters
    ----------
    inputs : iterable of str or path
        Each one a file (kept as given, image or not: naming a file asks for
        it, and a bad one fails by name later), a folder (its image files;
        with ``recursive`` those of its subfolders too), or a glob pattern
        (``"photos/*.jpg"``, ``"case/**/*.JPG"``; ``**`` crosses folders)
        that is not an existing file's name.
    recursive : bool, default=False
        Search folders' subfolders.
    lists : iterable of str or path
        List files (:func:`read_path_list`); their paths come after ``inputs``.

    Returns
    -------
    Collection
        The image paths, in order and each once, and the skipped non-image files.

    Raises
    ------
    ValueError
        A pattern that matches no file, or a list file that cannot be read,
        naming it: a mistake in what to process is said before any work.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for n in ["b.jpg", "a.PNG", "notes.txt"]:
    ...     open(os.path.join(d, n), "w").close()
    >>> found = collect_images([d])
    >>> [os.path.basename(p) for p in found.paths], [os.path.basename(p) for p in found.skipped]
    (['a.PNG', 'b.jpg'], ['notes.txt'])
    """
    out = Collection()
    seen: set[str] = set()

    def add(path: str, named: bool) -> None:
        if not named and not is_image_name(path):
            out.skipped.append(path)
            return
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.paths.append(path)

    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            for path in _walk(Path(text), recursive):
                add(path, named=False)
        elif _has_magic(text) and not os.path.exists(text):
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                raise ValueError(f"{text}: no file matches this pattern")
            for path in matches:
                add(path, named=False)
        else:
            add(text, named=True)
    for listing in lists:
        for path in read_path_list(listing):
            add(path, named=True)
    return out
