"""Global batches drawn by camera: camera-balanced batches, and batches with hard negatives.

A small corpus is clustered: a few camera models have many photos, most
have one to five. Drawing photos uniformly (``batch_sampling="random"``,
:class:`~exifclip.training.distributed.GlobalBatchSampler`'s own epochs)
lets the big cameras dominate the negatives. :class:`CameraBatches` draws
each global batch by camera instead, in rounds:

* every round visits the cameras that still have unused photos in a random
  order (so the cameras of a batch are drawn uniformly, without
  replacement, until each has given a photo), and each camera gives its next
  ``per_camera`` photos;
* a camera's photos come in an order that puts *other settings* first: its
  photos are grouped by their EXIF text, and the order takes one photo of
  each text (texts in random order) before a second of any.

``per_camera=1`` is ``batch_sampling="camera_balanced"``;
``per_camera > 1`` is ``"hard_negatives"``: photos of one camera with other
settings land in the same batch, where, with the loss's diagonal (or
text-similarity) targets, each is a negative that only the settings tell
apart. A photo appears at most once per batch.

Each batch is a pure function of ``(seed, step)``, drawn from
``numpy.random.default_rng([seed, step, 2])``, so exact resume and
multi-process runs are unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

__all__ = ["SAMPLING_MODES", "CameraBatches"]

#: The values of ``TrainingConfig.batch_sampling``.
SAMPLING_MODES = ("random", "camera_balanced", "hard_negatives")


class CameraBatches:
    """The photo indices of each step's global batch, drawn by camera (module doc).

    Parameters
    ----------
    cameras : sequence of hashable
        The camera of each photo (e.g. ``ExifPatchDataset.cameras``).
    texts : sequence of str, optional
        Each photo's EXIF text: photos of one camera with other texts come
        first. Without it, a camera's photos are in random order.
    batch_size : int
        Photos per global batch (at most ``len(cameras)``).
    seed : int, default=0
    per_camera : int, default=1
        Photos a camera gives per round.

    Examples
    --------
    >>> cams = ["a"] * 6 + ["b", "c", "d"]
    >>> batches = CameraBatches(cams, batch_size=4, seed=0)
    >>> sorted(cams[i] for i in batches(0))  # each camera once before any twice
    ['a', 'b', 'c', 'd']
    >>> batches(5) == CameraBatches(cams, batch_size=4, seed=0)(5)
    True
    >>> cams = ["a"] * 4 + ["b"] * 4
    >>> texts = ["ISO 100", "ISO 100", "ISO 800", "ISO 800"] + ["ISO 200"] * 4
    >>> hard = CameraBatches(cams, texts, batch_size=4, seed=0, per_camera=2)
    >>> sorted(texts[i] for i in hard(0) if cams[i] == "a")  # two photos of "a", other settings first
    ['ISO 100', 'ISO 800']
    """

    def __init__(self, cameras: Sequence, texts: Sequence[str] | None = None, *, batch_size: int, seed: int = 0,
                 per_camera: int = 1):
        if per_camera < 1:
            raise ValueError(f"per_camera must be >= 1, got {per_camera}")
        if not 1 <= batch_size <= len(cameras):
            raise ValueError(f"batch_size must be in [1, {len(cameras)}] (the photos), got {batch_size}")
        if texts is not None and len(texts) != len(cameras):
            raise ValueError(f"{len(texts)} texts for {len(cameras)} photos")
        self.batch_size, self.seed, self.per_camera = int(batch_size), int(seed), int(per_camera)
        groups: dict = defaultdict(lambda: defaultdict(list))
        for i, camera in enumerate(cameras):
            groups[camera][texts[i] if texts is not None else i].append(i)
        # Cameras and their settings in first-seen order: a fixed order for the draws.
        self._cameras = [list(settings.values()) for settings in groups.values()]
        self._last: tuple[int, list[int]] | None = None

    @property
    def n_cameras(self) -> int:
        return len(self._cameras)

    def _camera_order(self, settings: list[list[int]], rng: np.random.Generator) -> list[int]:
        """One camera's photos: one of each setting (settings in random order), then a second, ..."""
        shuffled = [[group[k] for k in rng.permutation(len(group))] for group in settings]
        shuffled = [shuffled[k] for k in rng.permutation(len(shuffled))]
        depth = max(len(g) for g in shuffled)
        return [g[d] for d in range(depth) for g in shuffled if d < len(g)]

    def __call__(self, step: int) -> list[int]:
        """The photo indices of ``step``'s global batch (``batch_size`` distinct photos)."""
        if self._last is not None and self._last[0] == step:
            return self._last[1]
        rng = np.random.default_rng([self.seed, int(step), 2])
        queues = [self._camera_order(settings, rng) for settings in self._cameras]
        taken = [0] * len(queues)
        out: list[int] = []
        while len(out) < self.batch_size:
            live = [c for c in range(len(queues)) if taken[c] < len(queues[c])]
            for c in rng.permutation(live):
                k = min(self.per_camera, len(queues[c]) - taken[c], self.batch_size - len(out))
                out.extend(queues[c][taken[c]:taken[c] + k])
                taken[c] += k
                if len(out) == self.batch_size:
                    break
        self._last = (step, out)
        return out
