"""Fine-tuning a model on a user's own photos, as ``ExifPatchEmbedder(fine_tune=True)`` does.

A short contrastive run through :func:`~exifclip.training.loop.train` on the
photos given, each against its own EXIF. Photos that cannot be read are
failures of the batch (the ``errors`` rule); photos without EXIF, or too
small for a patch, are left out by design, with one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..batch import BatchErrors
from ..io import ImageLoadError, source_name
from .config import TrainingConfig
from .data import ExifPatchDataset
from .loop import TrainResult, train

__all__ = ["fine_tune"]


def fine_tune(
    model: Any,
    sources: Sequence[Any],
    *,
    report: BatchErrors,
    patch_size: int,
    steps: int = 200,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> TrainResult:
    """Fine-tune ``model`` in place on ``sources`` against their own EXIF.

    Parameters
    ----------
    model : ExifClipModel
        A private copy (it is trained in place), with its tokenizer.
    sources : sequence of image sources
        Paths, bytes or file objects: they must carry their EXIF. Arrays carry
        none and count as failed.
    report : BatchErrors
        Where unreadable photos go (``errors="raise"`` raises at the first).
    patch_size : int
    steps, batch_size, learning_rate, seed : training settings
        ``batch_size`` is lowered, with a warning, to the number of usable
        photos when there are fewer; 10 % linear warm-up, then cosine decay.
    device : str
    progress : bool

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        If fewer than 2 photos are usable.

    Examples
    --------
    >>> import io, numpy as np, piexif
    >>> from PIL import Image
    >>> from exifclip.modeling import create_model
    >>> photos = []
    >>> for i in range(3):
    ...     exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam", piexif.ImageIFD.Model: b"M%d" % i}})
    ...     buf = io.BytesIO()
    ...     Image.fromarray(np.full((70, 70, 3), 40 * i, np.uint8)).save(buf, "JPEG", exif=exif)
    ...     photos.append(buf.getvalue())
    >>> result = fine_tune(create_model("small", seed=0), photos, report=BatchErrors("raise"), patch_size=64,
    ...                    steps=2, batch_size=3)
    >>> len(result.losses)
    2
    """
    for i, s in enumerate(sources):
        if isinstance(s, np.ndarray):
            report.fail(i, s, TypeError("an array carries no EXIF to fine-tune on; pass the photo's path"))
    photos = [s for s in sources if not isinstance(s, np.ndarray)]
    dataset = ExifPatchDataset(photos, patch_size=patch_size, min_tags=1, seed=int(seed))
    first_index: dict[str, int] = {}
    for i, s in enumerate(sources):
        if not isinstance(s, np.ndarray):
            first_index.setdefault(source_name(s), i)
    for name, reason, detail in dataset.skipped_files:
        if reason == "unreadable":
            report.fail(first_index.get(name, -1), name, ImageLoadError(detail))
    if len(dataset) < 2:
        raise ValueError(
            f"fine-tuning needs at least 2 usable photos with EXIF, got {len(dataset)} of "
            f"{len(sources)} (skipped: {dict(dataset.skipped) or 'none'}; arrays carry no EXIF)"
        )
    if dataset.skipped:
        warnings.warn(
            f"fine-tuning skipped {sum(dataset.skipped.values())} of {len(sources)} photos: {dict(dataset.skipped)}",
            stacklevel=3,
        )
    if batch_size > len(dataset):
        warnings.warn(
            f"train_batch_size={batch_size} is more than the {len(dataset)} usable photos; using {len(dataset)}",
            stacklevel=3,
        )
        batch_size = len(dataset)
    config = TrainingConfig(
        steps=int(steps),
        batch_size=int(batch_size),
        lr=float(learning_rate),
        warmup_steps=int(steps) // 10,
        seed=int(seed),
        device=str(device),
        progress=bool(progress),
        patch_size=int(patch_size),
    )
    return train(config, model=model, dataset=dataset)
