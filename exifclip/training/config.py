"""The settings of a training run, as one plain dataclass (one JSON file)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .augment import AugmentConfig
from .checkpoints import json_default, latest_checkpoint
from .sampling import SAMPLING_MODES

#: exifclip.modeling.front_end.FRONT_ENDS, spelled out: that module imports torch, and building the CLI must not
#: (a test checks the two agree).
FRONT_ENDS = ("rgb", "srm", "rgb+srm", "constrained")

__all__ = ["TrainingConfig"]

BATCHNORM_MODES = ("batch", "sync", "frozen")
PRECISIONS = ("auto", "fp32", "bf16")
#: exifclip.modeling.loss.TARGET_MODES, repeated so that reading a config does not import PyTorch.
TARGET_MODES = ("diagonal", "same_text", "same_camera", "text_similarity")


@dataclass
class TrainingConfig:
    """Everything a training run needs, as plain values (one JSON file).

    Data
        ``images`` (directory or list of files), ``metadata`` (CSV/JSONL,
        optional), or ``shards`` (WebDataset tar shards written by
        ``exifclip shard``, streamed: :mod:`exifclip.training.shard_stream`;
        ``shuffle_buffer`` photos per reader are held to shuffle them),
        ``shuffle`` (``False``: photos in their listed order), ``min_tags``
        (11: the paper kept photos with more than 10),
        ``tags`` (``"default"``, ``"all"`` or a list), ``text_style``,
        ``min_size``, ``cache_images``, ``num_workers`` (DataLoader
        processes), ``augment`` (``None``: off; ``True`` or a dict of
        :class:`~exifclip.training.augment.AugmentConfig` fields).
    Objective (the training guide, "Objectives for small, clustered data"; every default is the plain CLIP loss)
        ``targets`` (``"diagonal"``; ``"same_text"``, ``"same_camera"``:
        batch items with the same text, or the same Make + Model (and
        processing), are positives, not negatives; ``"text_similarity"``: soft
        targets from the overlap of the texts' tags, sharpened by
        ``target_temperature``), ``patch_pairs`` and ``patch_loss_weight``
        (two patches of each photo; the loss adds a patch-to-patch InfoNCE of
        this weight), ``batch_sampling`` (``"random"``; ``"camera_balanced"``:
        each batch draws cameras uniformly, then photos; ``"hard_negatives"``:
        as balanced, ``photos_per_camera`` photos of each camera, other
        settings first), ``tag_dropout`` (probability of leaving each tag out
        of the text) and ``shuffle_tags`` (tags in random order).
    Model
        Exactly one of ``arch`` (train from scratch: a WordPiece vocabulary
        of ``vocab_size`` is learnt from the corpus's texts; ``front_end``
        replaces the architecture's forensic front-end, see
        :mod:`exifclip.modeling.front_end`; ``patch_context`` the pixels of
        context around each patch, ``ExifClipConfig.patch_context``;
        ``text_attention_dropout`` the text tower's attention dropout) or ``init`` (fine-tune a model
        name/directory/Hub id, keeping its tokenizer and front-end);
        ``revision``; ``patch_size`` (default: the model's).
    Optimisation
        ``steps``, ``batch_size`` (global: the photos of one loss over all
        processes; "How a step is computed" in the training guide),
        ``accum_steps``, ``lr``, ``warmup_steps``, ``min_lr_ratio``,
        ``weight_decay``, ``betas``, ``eps``, ``clip_grad_norm`` (``None``:
        no clipping), ``batchnorm`` (``"batch"``, ``"sync"``, ``"frozen"``),
        ``precision`` (``"auto"``: bf16 autocast on CUDA, else fp32;
        ``"fp32"``; ``"bf16"``).
    Run
        ``seed``, ``device`` (``"auto"``; under torchrun each rank takes
        ``cuda:LOCAL_RANK``), ``out_dir`` (``None``: nothing written),
        ``checkpoint_every`` (0: none), ``keep_checkpoints``, ``eval_every``
        (steps between calls of the evaluation hook; the last step is always
        evaluated), ``progress``, ``resume`` (``False``; ``True``: the latest
        checkpoint in ``out_dir`` if there is one; or a checkpoint directory).

    Examples
    --------
    >>> cfg = TrainingConfig(images="photos/", arch="small", steps=100, batch_size=32)
    >>> TrainingConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> TrainingConfig.from_dict({"stepz": 3})
    Traceback (most recent call last):
    ...
    ValueError: unknown training settings: stepz
    """

    # metadata: the field's `exifclip train` flag (exifclip.cli.train builds them from it): argparse keywords
    # (help, choices, nargs, const, metavar, action) plus "flag" (default --field-name) and "exclusive" (a group
    # of flags of which one may be given). A field without "help" has no flag.
    images: Any = field(default=None, metadata={
        "help": "a directory of photos (searched recursively) or image files", "nargs": "+"})
    metadata: str | None = field(default=None, metadata={
        "help": "CSV or JSONL mapping files to EXIF (read instead of the files' own EXIF)"})
    shards: Any = field(default=None, metadata={
        "help": "WebDataset tar shards of photos and EXIF (exifclip shard), streamed instead of --images: paths, "
        "brace patterns (photos-{000..099}.tar), pipe:COMMAND or fsspec URLs (s3://...)", "nargs": "+"})
    shuffle: bool = field(default=True, metadata={
        "help": "photos in their listed order (a directory: as found; shards: as packed), not shuffled",
        "flag": "--no-shuffle", "action": "store_false"})
    shuffle_buffer: int = field(default=100, metadata={
        "help": "with --shards: photos each reader holds (encoded) to shuffle the stream"})
    min_tags: int = field(default=11, metadata={"help": "skip photos with fewer EXIF tags in their text"})
    tags: Any = field(default="default", metadata={"help": "which tags the text holds", "choices": ["default", "all"]})
    text_style: str = field(default="default", metadata={
        "help": "value rules of the EXIF text", "choices": ["default", "paper"]})
    min_size: int | None = None
    cache_images: bool = field(default=False, metadata={"help": "keep decoded photos in memory"})
    num_workers: int = field(default=0, metadata={"help": "data-loading processes"})
    augment: Any = field(default=None, metadata={
        "help": "processing augmentations (JPEG, resample, blur, noise, gamma), optionally a JSON object of "
        "AugmentConfig settings", "nargs": "?", "const": "on", "metavar": "JSON"})
    targets: str = field(default="diagonal", metadata={
        "help": "which batch items are positives: diagonal (CLIP), same_text, same_camera (same Make + Model and "
        "processing), text_similarity (soft, from the texts' tag overlap)", "choices": list(TARGET_MODES)})
    target_temperature: float = field(default=0.1, metadata={
        "help": "temperature of the text_similarity targets (lower: closer to same_text)"})
    patch_pairs: bool = field(default=False, metadata={
        "help": "two patches per photo, and a patch-to-patch term in the loss (self-consistency)"})
    patch_loss_weight: float = field(default=1.0, metadata={"help": "weight of the patch-to-patch term"})
    batch_sampling: str = field(default="random", metadata={
        "help": "random; camera_balanced (cameras uniformly, then photos); hard_negatives (as balanced, "
        "--photos-per-camera photos of each camera with other settings)", "choices": list(SAMPLING_MODES)})
    photos_per_camera: int = field(default=4, metadata={"help": "photos of one camera per batch, hard_negatives"})
    tag_dropout: float = field(default=0.0, metadata={"help": "probability of leaving each tag out of the text"})
    shuffle_tags: bool = field(default=False, metadata={"help": "write the tags of the text in a random order"})
    arch: str | None = field(default=None, metadata={
        "help": "train from scratch: an architecture (small, small-s16, small-s8, base, paper-resnet50)",
        "exclusive": "model"})
    front_end: str | None = field(default=None, metadata={
        "help": "with --arch: the image tower's forensic front-end (default: the architecture's)",
        "choices": list(FRONT_ENDS)})
    patch_context: int | None = field(default=None, metadata={
        "help": "with --arch: pixels of the photo around each training patch (a multiple of the feature stride: 32, "
        "16 for small-s16, 8 for small-s8) that the tower sees and pools out, as fast mode does "
        "(default: the architecture's, 0)"})
    text_attention_dropout: float | None = field(default=None, metadata={
        "help": "with --arch: dropout on the text tower's attention weights (default: the architecture's, 0.1); "
        "at 0 PyTorch runs its fused attention kernel"})
    init: str | None = field(default=None, metadata={
        "help": "fine-tune this model: packaged name, directory or Hub id", "exclusive": "model"})
    revision: str | None = field(default=None, metadata={"help": "Hub branch, tag or commit of --init"})
    vocab_size: int = field(default=4096, metadata={"help": "WordPiece vocabulary size when training from scratch"})
    patch_size: int | None = field(default=None, metadata={"help": "patch side in pixels (default: the model's)"})
    steps: int = field(default=1000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=64, metadata={"help": "global batch: photos per step over all processes"})
    accum_steps: int = field(default=1, metadata={
        "help": "micro-batches per step (the loss stays over the global batch)"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps before the cosine decay"})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "final learning rate as a fraction of --lr"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping norm (0: none)"})
    batchnorm: str = field(default="batch", metadata={
        "help": "batch norm statistics: per process, synchronised, or frozen", "choices": list(BATCHNORM_MODES)})
    precision: str = field(default="auto", metadata={
        "help": "auto: bf16 autocast on CUDA, else fp32", "choices": list(PRECISIONS)})
    seed: int = field(default=0, metadata={"help": "random seed (data order, patches, initialisation)"})
    device: str = field(default="auto", metadata={
        "help": "auto, cpu, cuda (under torchrun: each rank its own GPU)"})
    out_dir: str | None = field(default=None, metadata={
        "help": "output directory: final model, checkpoints/, train_log.jsonl", "flag": "--out"})
    checkpoint_every: int = field(default=0, metadata={"help": "steps between checkpoints (0: none)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many recent checkpoints to keep"})
    eval_every: int = field(default=0, metadata={"help": "steps between calls of --eval-hook"})
    progress: bool = field(default=True, metadata={
        "help": "no progress bar", "flag": "--no-progress", "action": "store_false"})
    resume: Any = field(default=False, metadata={
        "help": "continue from the latest checkpoint in --out (or from CHECKPOINT); a fresh start if none",
        "nargs": "?", "const": True, "metavar": "CHECKPOINT"})

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if isinstance(self.shards, (list, tuple)):
            self.shards = [os.fspath(u) for u in self.shards]
        elif isinstance(self.shards, os.PathLike):
            self.shards = os.fspath(self.shards)
        if isinstance(self.images, os.PathLike):
            self.images = os.fspath(self.images)
        elif isinstance(self.images, (list, tuple)):
            self.images = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in self.images]
        for key in ("metadata", "out_dir", "init"):
            value = getattr(self, key)
            if isinstance(value, os.PathLike):
                setattr(self, key, os.fspath(value))
        if isinstance(self.resume, os.PathLike):
            self.resume = os.fspath(self.resume)
        if isinstance(self.augment, AugmentConfig):
            self.augment = self.augment.to_dict()

    # -- plain-data round trips ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready values (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        aug = AugmentConfig.coerce(self.augment)
        out["augment"] = aug.to_dict() if aug is not None else None
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """Build from a dict; unknown keys are an error (a typo must not be ignored)."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as one plain JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=json_default) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainingConfig":
        """Read a config written by :meth:`to_json` (or by hand)."""
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a training config must be a JSON object")
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A copy with some values changed."""
        return dataclasses.replace(self, **changes)

    def validate(self, *, need_data: bool = True, need_model: bool = True) -> "TrainingConfig":
        """Check values; raise ``ValueError`` naming the setting. Returns self."""
        def positive(name, minimum=1):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

        for name in ("steps", "batch_size", "accum_steps"):
            positive(name)
        for name in ("min_tags", "num_workers", "warmup_steps", "checkpoint_every", "eval_every", "seed"):
            positive(name, 0)
        positive("keep_checkpoints", 1)
        if self.patch_size is not None:
            positive("patch_size")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {self.clip_grad_norm!r}")
        if self.batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {self.batchnorm!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.text_style not in ("default", "paper"):
            raise ValueError(f"text_style must be 'default' or 'paper', got {self.text_style!r}")
        AugmentConfig.coerce(self.augment)
        self._validate_objective()
        if need_model and not self._resuming() and (self.arch is None) == (self.init is None):
            raise ValueError("give exactly one of arch (train from scratch) or init (fine-tune a model)")
        if self.front_end is not None:
            if self.front_end not in FRONT_ENDS:
                raise ValueError(f"front_end must be one of {FRONT_ENDS}, got {self.front_end!r}")
            if self.init is not None:
                raise ValueError("front_end applies to a model trained from scratch (arch); a fine-tuned model "
                                 "keeps the front-end it was trained with")
        if self.patch_context is not None:
            if isinstance(self.patch_context, bool) or not isinstance(self.patch_context, (int, np.integer)) \
                    or self.patch_context < 0:
                raise ValueError(f"patch_context must be an integer >= 0, got {self.patch_context!r}")
            if self.init is not None:
                raise ValueError("patch_context applies to a model trained from scratch (arch); a fine-tuned model "
                                 "keeps the context it was trained with")
        if self.text_attention_dropout is not None:
            if not 0.0 <= self.text_attention_dropout < 1.0:
                raise ValueError(f"text_attention_dropout must be in [0, 1), got {self.text_attention_dropout!r}")
            if self.init is not None:
                raise ValueError("text_attention_dropout applies to a model trained from scratch (arch); a fine-tuned "
                                 "model keeps its text tower's settings")
        if need_data and self.images is None and self.metadata is None and self.shards is None:
            raise ValueError("give images (a directory or list of files) and/or a metadata file, or shards")
        self._validate_shards()
        if self.resume not in (False, True, None) and not isinstance(self.resume, str):
            raise ValueError(f"resume must be False, True or a checkpoint directory, got {self.resume!r}")
        if self.resume is True and self.out_dir is None:
            raise ValueError("resume=True needs out_dir (where the checkpoints are)")
        return self

    def _validate_shards(self) -> None:
        value = self.shuffle_buffer
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"shuffle_buffer must be an integer >= 0, got {value!r}")
        if not self.shuffle and self.batch_sampling != "random":
            raise ValueError(f"shuffle=False lists photos in order; batch_sampling {self.batch_sampling!r} draws them "
                             "by camera (use batch_sampling='random')")
        if self.shards is None:
            return
        if self.images is not None or self.metadata is not None:
            raise ValueError("give shards or images/metadata, not both")
        if self.cache_images:
            raise ValueError("cache_images keeps a directory's photos in memory; a shard stream reads each once "
                             "per epoch (leave it off with shards)")
        if self.batch_sampling != "random":
            raise ValueError(f"batch_sampling {self.batch_sampling!r} needs every photo's camera before the first "
                             "step; a shard stream has them one at a time (use batch_sampling='random', or images)")

    def _validate_objective(self) -> None:
        if self.targets not in TARGET_MODES:
            raise ValueError(f"targets must be one of {TARGET_MODES}, got {self.targets!r}")
        if not (self.target_temperature > 0 and math.isfinite(self.target_temperature)):
            raise ValueError(f"target_temperature must be a positive number, got {self.target_temperature!r}")
        if not (self.patch_loss_weight >= 0 and math.isfinite(self.patch_loss_weight)):
            raise ValueError(f"patch_loss_weight must be >= 0, got {self.patch_loss_weight!r}")
        if self.batch_sampling not in SAMPLING_MODES:
            raise ValueError(f"batch_sampling must be one of {SAMPLING_MODES}, got {self.batch_sampling!r}")
        value = self.photos_per_camera
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"photos_per_camera must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.tag_dropout < 1.0:
            raise ValueError(f"tag_dropout must be in [0, 1), got {self.tag_dropout!r}")

    def arch_overrides(self) -> dict:
        """What this config changes in ``arch``'s model config.

        Returns
        -------
        dict
            Keyword arguments of :func:`exifclip.modeling.factory.create_model`:
            ``vision_front_end``, ``patch_context`` and ``text_config`` where set.

        Examples
        --------
        >>> TrainingConfig(arch="small", front_end="srm", text_attention_dropout=0.0).arch_overrides()
        {'vision_front_end': 'srm', 'text_config': {'attention_dropout': 0.0}}
        """
        overrides: dict[str, Any] = {} if self.front_end is None else {"vision_front_end": self.front_end}
        if self.patch_context is not None:
            overrides["patch_context"] = int(self.patch_context)
        if self.text_attention_dropout is not None:
            overrides["text_config"] = {"attention_dropout": float(self.text_attention_dropout)}
        return overrides

    def _resuming(self) -> bool:
        if isinstance(self.resume, str):
            return True
        return bool(self.resume) and self.out_dir is not None and latest_checkpoint(self.out_dir) is not None
