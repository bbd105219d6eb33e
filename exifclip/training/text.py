"""The EXIF text as a list of items: tag dropout, tag-order shuffling, and the labels the loss compares.

An EXIF sentence (:func:`exifclip.exif.exif_to_text`) is a list of items
``"Tag: value"`` joined by ``", "``; a value may itself hold ``", "``
(``"Flash: Flash did not fire, compulsory flash mode"``): an item starts
only where ``", "`` is followed by a tag name and ``": "``.

Two text augmentations (both off by default, both drawn from the
generator they are given, which the dataset seeds from (seed, epoch,
index)):

* tag dropout: each item is left out with probability ``p``; the
  ``Processing`` items of the processing augmentations are never left out
  (the text must say what was done to the pixels), and at least one item is
  kept;
* tag-order shuffling: the items are written in a random order.

The loss's multi-positive targets compare batch items by labels made here
(:func:`text_labels`): for each text, one *camera key* (its ``Make``,
``Model`` and ``Processing`` items; the whole text when it has neither
``Make`` nor ``Model``) and the ids of its items, which do not depend on the
items' order. Ids are stable hashes (BLAKE2b), the same in every process.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

__all__ = ["CAMERA_TAGS", "camera_key", "exif_items", "item_id", "text_labels", "transform_text"]

#: The tags whose items make the camera key (with ``Processing``: same camera, same processing).
CAMERA_TAGS = ("Make", "Model", "Processing")

_ITEM = re.compile(r"(?:^|, )[^,:]+: ")
_KEPT_TAGS = ("Processing",)  # never dropped


def exif_items(text: str) -> list[str]:
    """The ``"Tag: value"`` items of an EXIF sentence, in order.

    Examples
    --------
    >>> exif_items("Make: Canon, Flash: Flash did not fire, compulsory flash mode, ISO Speed Ratings: 100")
    ['Make: Canon', 'Flash: Flash did not fire, compulsory flash mode', 'ISO Speed Ratings: 100']
    >>> exif_items("")
    []
    """
    if not text:
        return []
    starts = [m.start() if m.start() == 0 else m.start() + 2 for m in _ITEM.finditer(text)]
    if not starts or starts[0] != 0:  # text before the first tag: an item of its own
        starts = [0] + starts
    ends = [s - 2 for s in starts[1:]] + [len(text)]
    return [text[a:b] for a, b in zip(starts, ends)]


def _tag(item: str) -> str:
    return item.split(": ", 1)[0]


def transform_text(text: str, rng: np.random.Generator, tag_dropout: float = 0.0, shuffle: bool = False) -> str:
    """``text`` with items dropped (each with probability ``tag_dropout``) and/or shuffled.

    Draws nothing from ``rng`` when both are off. ``Processing`` items are
    never dropped, and at least one item is always kept.

    Examples
    --------
    >>> import numpy as np
    >>> t = "Make: Canon, Model: EOS, ISO Speed Ratings: 100, Processing: JPEG 75"
    >>> transform_text(t, np.random.default_rng(0))
    'Make: Canon, Model: EOS, ISO Speed Ratings: 100, Processing: JPEG 75'
    >>> transform_text(t, np.random.default_rng(0), tag_dropout=1.0)
    'Processing: JPEG 75'
    >>> sorted(exif_items(transform_text(t, np.random.default_rng(0), shuffle=True))) == sorted(exif_items(t))
    True
    """
    if not (tag_dropout > 0 or shuffle):
        return text
    items = exif_items(text)
    if not items:
        return text
    if tag_dropout > 0:
        keep = (rng.random(len(items)) >= tag_dropout) | np.array([_tag(i) in _KEPT_TAGS for i in items])
        if not keep.any():
            keep[int(rng.integers(len(items)))] = True
        items = [item for item, k in zip(items, keep) if k]
    if shuffle:
        items = [items[i] for i in rng.permutation(len(items))]
    return ", ".join(items)


def item_id(item: str) -> int:
    """A stable non-negative 56-bit id of a string (the same in every process and run).

    Examples
    --------
    >>> item_id("Make: Canon") == item_id("Make: Canon") != item_id("Make: Nikon")
    True
    """
    return int.from_bytes(hashlib.blake2b(item.encode("utf-8", "replace"), digest_size=7).digest(), "little")


def camera_key(text: str) -> int:
    """The id of a text's camera: its ``Make``, ``Model`` and ``Processing`` items (in any order);
    the whole text's items when it has neither ``Make`` nor ``Model``.

    Examples
    --------
    >>> a = camera_key("Make: Canon, Model: EOS, ISO Speed Ratings: 100")
    >>> a == camera_key("ISO Speed Ratings: 400, Model: EOS, Make: Canon")
    True
    >>> a == camera_key("Make: Canon, Model: EOS, ISO Speed Ratings: 100, Processing: JPEG 75")
    False
    """
    items = exif_items(text)
    if not any(_tag(i) in ("Make", "Model") for i in items):
        return item_id("\x00".join(sorted(items)))
    return item_id("\x00".join(sorted(i for i in items if _tag(i) in CAMERA_TAGS)))


def text_labels(texts: Sequence[str | None]) -> np.ndarray:
    """The labels of :class:`~exifclip.modeling.loss.ClipLoss`'s targets, one row per text.

    Returns
    -------
    ndarray (N, 1 + K) int64
        Column 0 is :func:`camera_key`; columns ``1..`` the sorted
        :func:`item_id` of the text's items, padded with -1 to the longest
        text's ``K``. A ``None`` text (a photo that failed to decode) is a
        row of -1.

    Examples
    --------
    >>> L = text_labels(["Make: A, ISO Speed Ratings: 100", "ISO Speed Ratings: 100, Make: A", None])
    >>> L.shape, bool((L[0] == L[1]).all()), L[2].tolist()
    ((3, 3), True, [-1, -1, -1])
    """
    rows = [None if t is None else sorted({item_id(i) for i in exif_items(t)}) for t in texts]
    width = max((len(r) for r in rows if r is not None), default=0)
    out = np.full((len(texts), 1 + width), -1, dtype=np.int64)
    for k, (text, items) in enumerate(zip(texts, rows)):
        if text is not None:
            out[k, 0] = camera_key(text)
            out[k, 1:1 + len(items)] = items
    return out
