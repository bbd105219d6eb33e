"""Training photos streamed from WebDataset tar shards instead of read from a directory.

``TrainingConfig(shards=...)`` (``exifclip train --shards URL ...``) reads
the shards that ``exifclip shard`` writes (:mod:`exifclip.shards`) from
local paths, brace patterns, ``pipe:`` commands or fsspec URLs, one sample
at a time: the tar reading and grouping are the ``webdataset`` library's
(``pip install 'exifclip[shards]'``), the opening is
:func:`exifclip.shards.open_shard`'s.

What a photo becomes is the directory path's: the same filters
(``min_tags``, ``min_size``, unreadable photos), the same EXIF text
(written from the sample's ``.json`` EXIF with the run's ``tags`` and
``text_style``; a sample without it uses its ``.txt``, or the EXIF in the
image), and the same patch and augmentations for the same photo, index
and epoch (:meth:`ExifPatchDataset.example
<exifclip.training.data.ExifPatchDataset.example>`). A photo's index is
its sample key, i.e. its position when it was packed.

Order
-----
Every process (rank) reads its own shards and each DataLoader worker its
own share of those: in epoch ``e`` the shard list is permuted by
``default_rng([seed, e, 3])`` (unless ``shuffle=False``) and reader ``r``
of ``R`` (``R`` = ranks x workers) takes shards ``r, r + R, ...``; the
photos pass a shuffle buffer of ``shuffle_buffer`` photos (drawn from
``default_rng([seed, e, r, 4])``, emptied at the end of the epoch) and are
cut into micro-batches. A reader that reaches the end of its shards starts
its next epoch, so the ranks never wait for one another; there must be at
least ``R`` shards.

With ``shuffle=False``, one process and no more than one worker, photos
come in the order they were packed, and a run gives the same losses as the
directory path over the same photos with ``shuffle=False`` (when the photo
count is a multiple of the batch size: the directory path drops the
remainder of an epoch, a stream does not).

Resume is exact for the same shards, ranks and workers: each reader skips
the micro-batches it had produced, reading their samples again without
decoding them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tarfile
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ..exif import ExifWarning
from ..io import ImageLoadError, load_image
from ..shards import expand_urls, open_shard
from .data import ExifPatchDataset, PatchSample, scan_photo
from .microbatch import collate_samples

__all__ = ["VOCAB_SAMPLE", "ShardCorpus", "ShardPatchStream", "ShardReading", "shard_samples"]

#: Photos whose texts train a from-scratch vocabulary (the first ones of the shards, in listed order): the
#: directory path reads every text, a stream cannot without reading every shard first.
VOCAB_SAMPLE = 10_000


def _webdataset():
    try:
        from webdataset import tariterators
    except ImportError:
        raise ImportError("training from shards needs the webdataset library: pip install 'exifclip[shards]'") \
            from None
    return tariterators


def _opened(urls: Iterable[str]) -> Iterator[dict]:
    """A webdataset source stage: ``{"url", "stream"}`` per shard, each closed once it has been read."""
    for url in urls:
        stream, close = open_shard(url)
        try:
            yield {"url": url, "stream": stream}
        finally:
            close()


def shard_samples(urls: str | Iterable[str]) -> Iterator[dict]:
    """The raw samples of shards, in order: dicts of member extension -> bytes, with ``__key__``/``__url__``.

    Raises
    ------
    ValueError
        Naming the shard that is not a readable tar file.
    """
    tariterators = _webdataset()
    for url in expand_urls(urls):
        try:
            yield from tariterators.group_by_keys(tariterators.tar_file_expander(_opened([url])))
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            raise ValueError(f"{url}: not a readable tar shard ({exc.args[0] if exc.args else exc})") from None


def _image_member(sample: dict) -> str | None:
    images = [k for k in sample if not k.startswith("__") and k not in ("json", "txt")]
    return images[0] if len(images) == 1 else None


def _index(key: str, url: str) -> int:
    """The photo's index: its numeric key (its packing position), or a stable number made from the key."""
    if key.isdigit():
        return int(key)
    return int.from_bytes(hashlib.sha1(f"{url}\0{key}".encode()).digest()[:7], "big")


class ShardReading:
    """Which streamed photos are kept and with what text: the directory path's rules, as plain settings
    (picklable, for DataLoader workers)."""

    def __init__(self, tags: Any, text_style: str, min_tags: int, min_size: int):
        self.tags, self.text_style, self.min_tags, self.min_size = tags, text_style, min_tags, min_size

    def read(self, sample: dict) -> tuple[tuple | None, tuple | None]:
        """``((index, name, image bytes, text), None)`` for a usable photo, or ``(None, (name, reason,
        detail))``: the directory path's rules (:func:`exifclip.training.data.scan_photo`)."""
        key, url = sample["__key__"], sample["__url__"]
        meta: dict = {}
        if "json" in sample:
            try:
                meta = json.loads(sample["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return None, (f"{url}#{key}", "unreadable", f"its .json member is not JSON ({exc})")
        name = str(meta.get("file") or f"{url}#{key}")
        member = _image_member(sample)
        if member is None:
            return None, (name, "unreadable", f"sample {key} of {url} needs one image member")
        data = sample[member]
        exif = meta.get("exif") if isinstance(meta.get("exif"), dict) else None
        text = sample["txt"].decode("utf-8", "replace") if exif is None and "txt" in sample else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExifWarning)
            record, skip = scan_photo((data, exif, text), self.tags, self.text_style, self.min_tags, self.min_size)
        if record is None:
            return None, (name,) + tuple(skip[1:])
        return (_index(key, url), name, data, record.text), None


class ShardPatchStream(torch.utils.data.IterableDataset):
    """The micro-batches of one process, streamed from shards (module doc: order, resume).

    Parameters
    ----------
    urls : list of str
        Shard URLs (brace patterns expanded).
    patcher : ExifPatchDataset
        Its patch settings (size, augmentations, pairs, tags transforms, seed) cut the patches.
    settings : ShardReading
    micro_batch : int
        Photos per micro-batch of this process.
    rank, world : int
    readers_per_rank : int
        DataLoader workers (at least 1).
    shuffle : bool
    shuffle_buffer : int
    labels : bool
        Collate the text labels (targets other than diagonal).
    skip : int
        Micro-batches this process had produced before (resume).
    """

    def __init__(self, urls: list[str], patcher: ExifPatchDataset, settings: ShardReading, *, micro_batch: int,
                 rank: int = 0, world: int = 1, readers_per_rank: int = 1, shuffle: bool = True,
                 shuffle_buffer: int = 1000, labels: bool = False, skip: int = 0):
        super().__init__()
        self.urls, self.patcher, self.settings = list(urls), patcher, settings
        self.micro_batch, self.rank, self.world = int(micro_batch), int(rank), int(world)
        self.readers_per_rank = max(1, int(readers_per_rank))
        self.shuffle, self.shuffle_buffer, self.labels, self.skip = bool(shuffle), int(shuffle_buffer), labels, skip
        readers = self.world * self.readers_per_rank
        if len(self.urls) < readers:
            raise ValueError(f"{len(self.urls)} shard(s) for {readers} readers ({self.world} process(es) x "
                             f"{self.readers_per_rank} data worker(s)): each reader needs a shard of its own; "
                             "pack the photos into more shards (exifclip shard --max-count) or use fewer workers")

    # -- one reader's photos ------------------------------------------------------------------
    def _reader(self) -> tuple[int, int, int]:
        """(this reader's number among all, how many readers, this worker's number)."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.readers_per_rank:
            raise RuntimeError(f"the stream was set up for {self.readers_per_rank} data workers, runs in {workers}")
        return self.rank * workers + worker, self.world * workers, worker

    def _epoch_shards(self, epoch: int, reader: int, readers: int) -> list[str]:
        urls = self.urls
        if self.shuffle:
            urls = [urls[i] for i in np.random.default_rng([self.patcher.seed, epoch, 3]).permutation(len(urls))]
        return urls[reader::readers]

    def _photos(self, reader: int, readers: int) -> Iterator[tuple[int, tuple | None, tuple | None]]:
        """``(epoch, photo, None)`` or ``(epoch, None, skip)`` forever, epoch after epoch."""
        for epoch in itertools.count():
            usable = 0
            rng = np.random.default_rng([self.patcher.seed, epoch, reader, 4])
            buffer: list = []
            for sample in shard_samples(self._epoch_shards(epoch, reader, readers)):
                photo, skip = self.settings.read(sample)
                if photo is None:
                    yield epoch, None, skip
                    continue
                usable += 1
                if not self.shuffle or self.shuffle_buffer <= 1:
                    yield epoch, photo, None
                elif len(buffer) < self.shuffle_buffer:
                    buffer.append(photo)
                else:
                    j = int(rng.integers(len(buffer)))
                    yield epoch, buffer[j], None
                    buffer[j] = photo
            for j in rng.permutation(len(buffer)) if buffer else ():
                yield epoch, buffer[j], None
            if usable == 0:
                shards = ", ".join(self._epoch_shards(epoch, reader, readers))
                raise ValueError(f"no usable photo in shard(s) {shards} (each was unreadable, too small or had "
                                 f"fewer than {self.settings.min_tags} EXIF tags)")

    def _example(self, epoch: int, photo: tuple):
        index, name, data, text = photo
        try:
            image = load_image(data)
        except (ImageLoadError, OSError, ValueError) as exc:
            reason = str(exc).split(": ", 1)[-1]
            return PatchSample(None, text, index, f"{name}: {reason}", name=name)
        return self.patcher.example(image, text, index, epoch, name)

    def __iter__(self) -> Iterator[dict]:
        reader, readers, worker = self._reader()
        # DataLoader takes the workers' batches in turn: worker w gave batches w, w + W, ... of this process.
        skip = max(0, -(-(self.skip - worker) // self.readers_per_rank))
        batch: list = []
        skipped: list = []
        for epoch, photo, skip_reason in self._photos(reader, readers):
            if photo is None:
                skipped.append(skip_reason)
                continue
            batch.append((epoch, photo))
            if len(batch) < self.micro_batch:
                continue
            if skip:
                skip -= 1
            else:
                out = collate_samples([self._example(e, p) for e, p in batch], labels=self.labels)
                out.update(epoch=batch[-1][0], skipped=skipped)
                yield out
            batch, skipped = [], []


def _batch_as_is(batch: dict) -> dict:
    return batch


class ShardCorpus:
    """The training loop's view of a shard stream: what it logs, checkpoints and reports.

    Parameters
    ----------
    urls : str or list of str
    settings : ShardReading
    """

    def __init__(self, urls: str | list[str], settings: ShardReading):
        self.urls = expand_urls(urls)
        if not self.urls:
            raise ValueError("shards: no shard URL given")
        self.settings = settings
        self.skipped_files: list[tuple] = []
        self._skipped_names: set[str] = set()
        self._texts: list[str] | None = None

    def __len__(self) -> int:
        return 0  # not known without reading every shard

    @property
    def texts(self) -> list[str]:
        """The texts of the first :data:`VOCAB_SAMPLE` usable photos, in listed order (a vocabulary's corpus)."""
        if self._texts is None:
            texts = []
            for sample in shard_samples(self.urls):
                photo, _ = self.settings.read(sample)
                if photo is not None:
                    texts.append(photo[3])
                    if len(texts) >= VOCAB_SAMPLE:
                        break
            if not texts:
                raise ValueError(f"no usable photo in the shards ({self.urls[0]}, ...)")
            self._texts = texts
        return self._texts

    def position(self, step: int) -> tuple[None, None]:
        """``(epoch, batch within it)`` of a step, as a sampler says: unknown, each reader has its own epochs."""
        return None, None

    def fingerprint(self) -> str:
        """A short hash of the shard list, to check a resume."""
        return hashlib.sha1("\x00".join(self.urls).encode()).hexdigest()[:16]

    def note_skipped(self, skipped: Iterable[tuple]) -> None:
        """Photos a reader left out (each named once, whatever the epoch)."""
        for item in skipped:
            if item[0] not in self._skipped_names:
                self._skipped_names.add(item[0])
                self.skipped_files.append(tuple(item))

    def summary(self) -> dict:
        """Counts for logs: the shards, and the photos left out so far, by reason."""
        skipped: dict[str, int] = {}
        for _, reason, _ in self.skipped_files:
            skipped[reason] = skipped.get(reason, 0) + 1
        return {"shards": len(self.urls), "images": None, "skipped": dict(sorted(skipped.items())),
                "skipped_total": len(self.skipped_files)}

    def loader(self, patcher: ExifPatchDataset, *, batch_size: int, accum_steps: int, rank: int, world: int,
               num_workers: int, shuffle: bool, shuffle_buffer: int, labels: bool, start_step: int,
               pin_memory: bool) -> torch.utils.data.DataLoader:
        """The DataLoader of this process's micro-batches, from micro-batch ``start_step x accum_steps``."""
        stream = ShardPatchStream(self.urls, patcher, self.settings, micro_batch=batch_size // (world * accum_steps),
                                  rank=rank, world=world, readers_per_rank=num_workers, shuffle=shuffle,
                                  shuffle_buffer=shuffle_buffer, labels=labels, skip=start_step * accum_steps)
        return torch.utils.data.DataLoader(stream, batch_size=None, collate_fn=_batch_as_is,
                                           num_workers=num_workers, pin_memory=pin_memory)
