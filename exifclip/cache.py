"""A disk cache of patch embeddings, keyed by what they depend on.

An image's patch embeddings depend on its pixels, the model's weights and
configuration, and the patch grid and mode; nothing else. :class:`EmbeddingCache`
keys each image by a SHA-256 of its content (the file's bytes for a path,
the pixels for an array or PIL image) and of those settings, so the
candidates of a ``GridSearchCV`` that vary only the post-processing, and a
second run over the same photos, never embed a photo twice, whatever the
file is called or where it moved. A file changed in place gets a new key.

Entries are ``.npz`` files (embeddings and grid, no pickles) written
atomically; a damaged or foreign entry is a miss, recomputed and rewritten.
An entry is stored when its image's result is handed over, so the same photo
twice within one streaming call may be embedded twice (the second copy can be
read ahead of the first one's result); across calls it never is.
Embeddings made on another device may differ from this one's in the last
bits (see :data:`exifclip.modeling.embedding.CPU_FORWARD_CHUNK`): the cache
returns what was stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._atomic import atomic_write
from .modeling.embedding import PatchEmbeddings
from .patches import PatchGrid

__all__ = ["EmbeddingCache", "content_hash", "model_fingerprint"]

_GRID_FIELDS = ("height", "width", "patch_size", "stride", "n_rows", "n_cols")


def content_hash(source: Any) -> str | None:
    """SHA-256 of an image source's content; ``None`` for a source that cannot be hashed (and stay readable).

    Paths hash the file's bytes (a missing file gives ``None``: it fails
    later, by name, when decoded); bytes hash as the file that holds them; arrays and PIL
    images hash their shape, type and pixels. File objects are not hashed.

    Examples
    --------
    >>> content_hash(b"abc")[:12]
    'ba7816bf8f01'
    >>> content_hash(np.zeros((2, 2), np.uint8)) == content_hash(np.zeros((2, 2), np.uint8))
    True
    """
    digest = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)  # as the file holding them: a path and its bytes share a key
    elif isinstance(source, np.ndarray):
        digest.update(f"array:{source.shape}:{source.dtype.str}:".encode())
        digest.update(np.ascontiguousarray(source).tobytes())
    elif isinstance(source, Image.Image):
        digest.update(f"pil:{source.mode}:{source.size}:".encode())
        digest.update(source.tobytes())
    else:
        return None
    return digest.hexdigest()


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a model's configuration and weights: equal only for the same model.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> model_fingerprint(create_model("small", seed=0)) == model_fingerprint(create_model("small", seed=0))
    True
    """
    import torch

    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu")
        if data.dtype == torch.bfloat16:  # no NumPy type: its bits as int16
            data = data.view(torch.int16)
        digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Patch embeddings on disk, under ``location/exifclip-patch-embeddings/``.

    Parameters
    ----------
    location : str or path
        The cache's folder (created when the first entry is written).
    settings : dict
        What the embeddings depend on besides the image (model fingerprint,
        grid, mode, ...): JSON-serialisable; part of every key.

    Examples
    --------
    >>> import tempfile
    >>> from exifclip.patches import make_grid
    >>> cache = EmbeddingCache(tempfile.mkdtemp(), {"model": "m", "stride": 8})
    >>> image = np.zeros((40, 40, 3), np.uint8)
    >>> cache.get(image) is None
    True
    >>> grid = make_grid(image.shape, 32, stride=8)
    >>> cache.put(image, PatchEmbeddings(np.ones((grid.n_patches, 4), np.float32), grid))
    >>> cache.get(image).embeddings.shape, (cache.hits, cache.misses)
    ((4, 4), (1, 1))
    """

    def __init__(self, location: str | os.PathLike, settings: dict):
        self.folder = Path(location) / "exifclip-patch-embeddings"
        self._settings = json.dumps(settings, sort_keys=True, default=str)
        self._keys: dict[int, str] = {}  # id(source) -> key, from get to put
        self._lock = threading.Lock()  # get may run in a decoding thread
        self.writable = True
        self.hits = 0
        self.misses = 0

    def key(self, source: Any) -> str | None:
        """The cache key of ``source`` under these settings, or ``None`` if it cannot be hashed."""
        content = content_hash(source)
        if content is None:
            return None
        return hashlib.sha256(f"{content}\n{self._settings}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, source: Any) -> PatchEmbeddings | None:
        """The stored embeddings of ``source``, or ``None`` (a miss: :meth:`put` may follow)."""
        key = self.key(source)
        if key is None:
            return None
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                item = PatchEmbeddings(np.array(data["embeddings"]),
                                       PatchGrid(*(int(v) for v in data["grid"])))
            if item.embeddings.shape[0] != item.grid.n_patches:
                raise ValueError("entry does not match its grid")
        except (OSError, ValueError, KeyError, TypeError):
            with self._lock:
                self._keys[id(source)] = key
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return item

    def remember(self, source: Any, item: PatchEmbeddings | None) -> None:
        """Store ``item`` if :meth:`get` missed ``source`` (a hit is not written again; a failure never)."""
        with self._lock:
            missed = id(source) in self._keys
            if item is None:
                self._keys.pop(id(source), None)
        if missed and item is not None:
            self.put(source, item)

    def put(self, source: Any, item: PatchEmbeddings) -> None:
        """Store the embeddings of a source that :meth:`get` missed (others are not hashed again)."""
        with self._lock:
            key = self._keys.pop(id(source), None)
        if key is None:
            key = self.key(source)
            if key is None:
                return
        if not self.writable:
            return
        grid = np.asarray([getattr(item.grid, f) for f in _GRID_FIELDS], np.int64)
        try:
            with atomic_write(self._path(key)) as f:
                np.savez(f, embeddings=item.embeddings, grid=grid)
        except OSError as exc:  # the cache's fault, not the image's: said once, the work goes on
            self.writable = False
            warnings.warn(f"{self.folder}: cannot write to the embedding cache ({exc.strerror or exc}); "
                          "going on without storing", RuntimeWarning, stacklevel=2)
