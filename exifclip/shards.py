"""Photos and their EXIF packed into WebDataset tar shards, and read back as a stream.

A training corpus of millions of photos is a directory tree that object
storage and many-node jobs handle badly. :func:`write_shards` packs photos
into tar files in the WebDataset layout (samples as consecutive members
sharing a key), and :func:`iter_shards` streams them back from local paths,
brace patterns (``photos-{000000..000099}.tar``), ``pipe:`` commands or any
fsspec URL (``s3://...``), one tar member at a time, holding one sample.

Each sample ``KEY`` has three members:

``KEY.jpg`` (or ``.png``, ``.tif``, ... from the file's name)
    The file's bytes, unchanged: never decoded and re-encoded, which would
    destroy the camera traces training learns.
``KEY.json``
    ``{"file": the original path, "sha256": of the bytes, "exif": the dict
    read by exifclip.exif.read_exif}``: a training job can serialise the
    EXIF with its own tags and style.
``KEY.txt``
    The EXIF as the model's default text (:func:`exifclip.exif.exif_to_text`).

Keys are the photo's position in the input, zero-padded (WebDataset keys
must not contain dots). Shards are written atomically with fixed member
metadata (mtime 0, owner 0), so the same photos give the same bytes.
The ``webdataset`` library reads them as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from ._atomic import atomic_write
from .exif import exif_to_text, read_exif

__all__ = ["ShardSample", "ShardSummary", "expand_urls", "iter_shards", "open_shard", "write_shards"]

_EXTENSIONS = {".jpeg": "jpg", ".jpe": "jpg", ".tif": "tiff"}


@dataclass
class ShardSample:
    """One photo read back from a shard.

    Attributes
    ----------
    key : str
    image : bytes
        The file's bytes, as they were.
    extension : str
        ``"jpg"``, ``"png"``, ...
    exif : dict
    text : str
    file : str
        The path it was packed from.
    """

    key: str
    image: bytes
    extension: str
    exif: dict
    text: str
    file: str


@dataclass
class ShardSummary:
    """What :func:`write_shards` did.

    Attributes
    ----------
    shards : list of str
        The files written, in order.
    written : int
        Photos packed.
    failed : list of (str, str)
        Photos left out, with the reason (unreadable file or EXIF).
    """

    shards: list[str] = field(default_factory=list)
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _sample(index: int, path: str) -> dict[str, bytes]:
    """The members of one photo's sample; raises OSError / ValueError for a photo that cannot be packed."""
    with open(path, "rb") as f:
        data = f.read()
    exif = read_exif(data)
    suffix = os.path.splitext(path)[1].lower()
    extension = _EXTENSIONS.get(suffix, suffix.lstrip(".") or "img")
    key = f"{index:09d}"
    meta = {"file": os.fspath(path), "sha256": hashlib.sha256(data).hexdigest(), "exif": exif}
    return {
        f"{key}.{extension}": data,
        # The EXIF keeps read_exif's order: the paper's text style writes tags in it.
        f"{key}.json": json.dumps(meta, ensure_ascii=False, default=str).encode(),
        f"{key}.txt": exif_to_text(exif).encode(),
    }


def write_shards(paths: Iterable[str | os.PathLike], pattern: str, max_count: int = 1000,
                 max_bytes: int = 1 << 30) -> ShardSummary:
    """Pack photos with their EXIF into WebDataset tar shards.

    Parameters
    ----------
    paths : iterable of str or path
        The photos, read one at a time.
    pattern : str
        Shard file names with one integer field, e.g.
        ``"shards/photos-%06d.tar"``; the folder is created.
    max_count : int, default=1000
        Photos per shard at most.
    max_bytes : int, default=1 GiB
        A shard is closed once it holds at least this many bytes of photos.

    Returns
    -------
    ShardSummary

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f"{d}/a.png")
    >>> summary = write_shards([f"{d}/a.png", f"{d}/missing.jpg"], f"{d}/s-%03d.tar")
    >>> [os.path.basename(s) for s in summary.shards], summary.written, len(summary.failed)
    (['s-000.tar'], 1, 1)
    >>> [(s.key, s.extension) for s in iter_shards(summary.shards)]
    [('000000000', 'png')]
    """
    if max_count < 1 or max_bytes < 1:
        raise ValueError(f"max_count and max_bytes must be positive, got {max_count} and {max_bytes}")
    try:
        pattern % 0
    except TypeError:
        raise ValueError(f"pattern needs one integer field such as %06d, got {pattern!r}") from None
    summary = ShardSummary()
    pending: list[dict[str, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal pending, size
        target = pattern % len(summary.shards)
        with atomic_write(target) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in pending:
                for name, data in sample.items():
                    _member(tar, name, data)
        summary.shards.append(target)
        summary.written += len(pending)
        pending, size = [], 0

    for index, path in enumerate(paths):
        try:
            sample = _sample(index, os.fspath(path))
        except (OSError, ValueError, TypeError) as exc:
            summary.failed.append((os.fspath(path), str(exc) or type(exc).__name__))
            continue
        pending.append(sample)
        size += sum(len(v) for v in sample.values())
        if len(pending) >= max_count or size >= max_bytes:
            flush()
    if pending:
        flush()
    return summary


def expand_urls(urls: str | Iterable[str]) -> list[str]:
    """Shard URLs, with brace ranges expanded: ``"a-{00..02}.tar"`` -> ``a-00.tar, a-01.tar, a-02.tar``.

    Examples
    --------
    >>> expand_urls("s3://b/photos-{000..002}.tar")
    ['s3://b/photos-000.tar', 's3://b/photos-001.tar', 's3://b/photos-002.tar']
    """
    items = [urls] if isinstance(urls, str) else list(urls)
    out = []
    for url in items:
        match = re.search(r"\{(\d+)\.\.(\d+)\}", url)
        if match is None:
            out.append(url)
            continue
        first, last = match.group(1), match.group(2)
        width = len(first)
        for n in range(int(first), int(last) + 1):
            out.extend(expand_urls(url[: match.start()] + f"{n:0{width}d}" + url[match.end():]))
    return out


def open_shard(url: str) -> tuple[IO[bytes], Callable[[], None]]:
    """A readable stream of the shard at ``url`` and the function that closes it.

    ``pipe:COMMAND`` runs the command (the user's own) and reads its
    output; other URLs with a scheme go through fsspec; the rest are local
    paths (``file://`` allowed).
    """
    if url.startswith("pipe:"):
        process = subprocess.Popen(url[len("pipe:"):], shell=True, stdout=subprocess.PIPE)  # noqa: S602 - the user's own command

        def close() -> None:
            process.stdout.close()
            process.wait()
        return process.stdout, close
    if "://" in url and not url.startswith("file://"):
        try:
            import fsspec
        except ImportError:
            raise ImportError(f"{url}: reading shards from URLs needs fsspec (pip install fsspec)") from None
        handle = fsspec.open(url, "rb").open()
        return handle, handle.close
    handle = open(url.removeprefix("file://"), "rb")
    return handle, handle.close


def iter_shards(urls: str | Iterable[str]) -> Iterator[ShardSample]:
    """Stream the samples of shards, in order, holding one sample at a time.

    Parameters
    ----------
    urls : str or iterable of str
        Local paths, ``file://``, ``pipe:COMMAND`` or fsspec URLs; brace
        ranges are expanded (:func:`expand_urls`).

    Yields
    ------
    ShardSample

    Raises
    ------
    ValueError
        Naming the shard: it is not a tar file, or a sample lacks its image or JSON.
    """
    for url in expand_urls(urls):
        stream, close = open_shard(url)
        try:
            yield from _samples(url, stream)
        finally:
            close()


def _samples(url: str, stream: IO[bytes]) -> Iterator[ShardSample]:
    current: dict[str, bytes] = {}
    key = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base, _, extension = member.name.partition(".")
                if key is not None and base != key:
                    yield _make(url, key, current)
                    current = {}
                key = base
                current[extension] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise ValueError(f"{url}: not a readable tar shard ({exc})") from None
    if key is not None:
        yield _make(url, key, current)


def _make(url: str, key: str, members: dict[str, bytes]) -> ShardSample:
    images = [e for e in members if e not in ("json", "txt")]
    if "json" not in members or len(images) != 1:
        raise ValueError(f"{url}: sample {key} needs one image and a .json member, has {sorted(members)}")
    meta = json.loads(members["json"])
    text = members["txt"].decode() if "txt" in members else exif_to_text(meta.get("exif") or {})
    return ShardSample(key, members[images[0]], images[0], meta.get("exif") or {}, text, meta.get("file", ""))
