"""Contrastive training of the two towers, from one CPU to many GPUs.

:func:`train` takes a :class:`TrainingConfig` and runs the same loop on a CPU,
a GPU, or many GPUs and nodes under ``torchrun`` (``torch.distributed`` DDP).
The command line (``exifclip train``) and
``ExifPatchEmbedder(fine_tune=True)`` only build a config and call it. The
data side (photos, EXIF text, patches, augmentations) is
:mod:`exifclip.training_data`.

The step
--------
``batch_size`` is the **global** batch: the photos whose patches and texts
meet in one symmetric CLIP loss, i.e. the negatives each patch sees, summed
over ranks and accumulation micro-batches. Each of ``W`` ranks runs
``accum_steps = k`` micro-batches of ``m = batch_size / (W k)`` photos; micro
batch ``j`` of rank ``r`` holds items ``[g m, (g + 1) m)`` of the step's
global batch, ``g = j W + r``. The global batch is a slice of a per-epoch
permutation of the photos, so a photo appears at most once per batch.

* Embeddings are gathered from every rank (``all_gather``); the local slice
  is put back with its gradient, and every rank computes the loss over the
  whole global batch. Its backward is scaled by ``W`` (DDP averages the
  gradients of ``W`` identical losses; each holds only its own slice's part),
  and the logit scale's gradient by ``1 / W``, so the update equals the
  one-process update on the same global batch.
* Accumulation (``k > 1``) keeps the loss over the whole global batch (as
  open_clip): a first pass without gradients embeds all micro-batches; then
  each micro-batch is embedded again with gradients and the full loss is
  back-propagated through that micro-batch only. This costs one extra
  forward pass per micro-batch. Dropout is re-seeded per micro-batch (from
  ``seed``, step and ``g``) so both passes agree, and BatchNorm running
  statistics are restored after the first pass.
* **BatchNorm** (``batchnorm``): ``"batch"`` normalises with each
  micro-batch's own statistics, so what a run computes depends on
  ``W * k`` (micro-batch size), not on ``W`` or ``k`` alone: one process with
  ``accum_steps=2`` computes the same losses and updates as two processes
  with ``accum_steps=1`` (``tests/test_training_ddp.py`` checks that), while
  two processes without accumulation differ slightly from one process
  without it (BN statistics over ``B / 2`` instead of ``B`` patches). Keep
  ``W * k`` fixed when moving a recipe between machines. ``"sync"`` uses
  ``torch.nn.SyncBatchNorm`` across ranks (CUDA only: PyTorch has no CPU
  implementation); ``"frozen"`` keeps BN layers in eval mode (running
  statistics, for fine-tuning with small batches), which makes every
  ``(W, k)`` split of a global batch equivalent.
* AdamW (no weight decay on biases, norms and the logit scale), linear
  warm-up then cosine decay to ``min_lr_ratio * lr``, gradient clipping,
  bf16 autocast on CUDA (``precision="auto"``).

Checkpoints and exact resume
----------------------------
With ``out_dir`` set, rank 0 writes ``out_dir/checkpoints/step-NNNNNNNN/``
every ``checkpoint_every`` steps (and when interrupted with Ctrl-C): the
model via ``save_pretrained`` (``model.safetensors``, config, tokenizer) and
``training_state.pt``, plain tensors and dicts (optimizer, scheduler, torch
RNG, data position, loss history) written by ``torch.save`` and read back
only with ``torch.load(weights_only=True)``. Each example's patch is drawn
from ``(seed, epoch, index)`` and dropout from ``(seed, step, g)``, so the
data position is the step number and a resumed run repeats the uninterrupted
one exactly (on CPU; GPU kernels may not be deterministic). At the end the
final model is saved in ``out_dir`` itself (``load_model(out_dir)`` reads
it) with ``training_config.json``, a ``README.md`` model card and the log
``train_log.jsonl``: one JSON object per line, ``{"event": "start", ...}``,
one ``{"step": ..., "loss": ..., "lr": ..., "patches_per_s": ...}`` per step,
``{"event": "eval", "step": ..., ...}`` for each evaluation, ``{"event":
"end", ...}``.

Launch on many GPUs with e.g. ``torchrun --nproc-per-node 8 -m exifclip.cli
train ...``; ``out_dir`` must be on storage every node sees to resume.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import (
    _STATE_FILE,
    _json_default,
    _Log,
    _save_checkpoint,
    latest_checkpoint,
    load_training_state,
)
from .distributed import (
    GlobalBatchSampler,
    _Dist,
    _scale_grad,
    _setup_distributed,
    gather_with_local_grad,
)
from .io import source_name
from .loss import global_clip_loss
from .training_data import AugmentConfig, ExifPatchDataset, augmentation_phrases

__all__ = [
    "TrainingConfig",
    "TrainResult",
    "train",
    "global_clip_loss",
    "gather_with_local_grad",
    "lr_factor",
    "GlobalBatchSampler",
    "latest_checkpoint",
    "load_training_state",
]

_BATCHNORM = ("batch", "sync", "frozen")
_PRECISION = ("auto", "fp32", "bf16")


# -- configuration ------------------------------------------------------------------------------

@dataclass
class TrainingConfig:
    """Everything a training run needs, as plain values (one JSON file).

    Data
        ``images`` (directory or list of files), ``metadata`` (CSV/JSONL,
        optional), ``min_tags`` (11: the paper kept photos with more than 10),
        ``tags`` (``"default"``, ``"all"`` or a list), ``text_style``,
        ``min_size``, ``cache_images``, ``num_workers`` (DataLoader
        processes), ``augment`` (``None``: off; ``True`` or a dict of
        :class:`~exifclip.training_data.AugmentConfig` fields).
    Model
        Exactly one of ``arch`` (train from scratch: a WordPiece vocabulary
        of ``vocab_size`` is learnt from the corpus's texts) or ``init``
        (fine-tune a model name/directory/Hub id, keeping its tokenizer);
        ``revision``; ``patch_size`` (default: the model's).
    Optimisation
        ``steps``, ``batch_size`` (global, see the module doc),
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

    images: Any = None
    metadata: str | None = None
    min_tags: int = 11
    tags: Any = "default"
    text_style: str = "default"
    min_size: int | None = None
    cache_images: bool = False
    num_workers: int = 0
    augment: Any = None
    arch: str | None = None
    init: str | None = None
    revision: str | None = None
    vocab_size: int = 4096
    patch_size: int | None = None
    steps: int = 1000
    batch_size: int = 64
    accum_steps: int = 1
    lr: float = 1e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip_grad_norm: float | None = 1.0
    batchnorm: str = "batch"
    precision: str = "auto"
    seed: int = 0
    device: str = "auto"
    out_dir: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 0
    progress: bool = True
    resume: Any = False

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
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
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")

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
        if self.batchnorm not in _BATCHNORM:
            raise ValueError(f"batchnorm must be one of {_BATCHNORM}, got {self.batchnorm!r}")
        if self.precision not in _PRECISION:
            raise ValueError(f"precision must be one of {_PRECISION}, got {self.precision!r}")
        if self.text_style not in ("default", "paper"):
            raise ValueError(f"text_style must be 'default' or 'paper', got {self.text_style!r}")
        AugmentConfig.coerce(self.augment)
        if need_model and not self._resuming() and (self.arch is None) == (self.init is None):
            raise ValueError("give exactly one of arch (train from scratch) or init (fine-tune a model)")
        if need_data and self.images is None and self.metadata is None:
            raise ValueError("give images (a directory or list of files) and/or a metadata file")
        if self.resume not in (False, True, None) and not isinstance(self.resume, str):
            raise ValueError(f"resume must be False, True or a checkpoint directory, got {self.resume!r}")
        if self.resume is True and self.out_dir is None:
            raise ValueError("resume=True needs out_dir (where the checkpoints are)")
        return self

    def _resuming(self) -> bool:
        if isinstance(self.resume, str):
            return True
        return bool(self.resume) and self.out_dir is not None and latest_checkpoint(self.out_dir) is not None


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : ExifClipModel
        The trained model (unwrapped, on its training device, eval mode).
    step : int
        Steps done in total (a resumed run counts the earlier ones).
    losses : list of float
        Loss of every step from step 1, including steps before a resume.
    history : list of dict
        This run's per-step log records.
    evals : list of dict
        The evaluation hook's results, each with its ``step``.
    dataset : dict
        Photos used and skipped by reason.
    out_dir : str or None
    elapsed_s : float
        Wall time of this run's steps.
    patches_per_s : float
        Patches (over all ranks) per second, this run's steps after the first.
    world_size : int
    resumed_from : int or None
        Step of the checkpoint this run resumed from.
    skipped_files : list of (name, reason, detail)
        Photos left out (see :mod:`exifclip.training_data`); with
        ``out_dir`` also written to ``out_dir/skipped_files.csv``.
    """

    model: Any
    step: int
    losses: list
    history: list
    evals: list
    dataset: dict
    out_dir: str | None
    elapsed_s: float
    patches_per_s: float
    world_size: int
    resumed_from: int | None = None
    skipped_files: list = field(default_factory=list)


# -- pure pieces --------------------------------------------------------------------------------

def _micro_seed(seed: int, step: int, g: int) -> int:
    return int(np.random.SeedSequence([seed, step, g, 0xD0]).generate_state(1, np.uint64)[0] >> 1)


def lr_factor(step: int, steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then cosine.

    Examples
    --------
    >>> [round(lr_factor(s, 10, warmup_steps=2), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _collate(samples: list) -> dict:
    ok = [s for s in samples if s.patch is not None]
    valid = torch.tensor([s.patch is not None for s in samples], dtype=torch.bool)
    patches = torch.from_numpy(np.stack([s.patch for s in ok])) if ok else None
    return {"patches": patches, "texts": [s.text for s in ok], "valid": valid,
            "failures": [(s.index, s.error) for s in samples if s.patch is None]}


# -- model pieces -------------------------------------------------------------------------------

class _TrainModule(nn.Module):
    """Wraps the model for DDP: every parameter is used in ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask):
        m = self.model
        img = F.normalize(m.get_image_features(pixel_values).float(), dim=-1)
        txt = F.normalize(m.get_text_features(input_ids, attention_mask).float(), dim=-1)
        return img, txt, m.get_logit_scale().float()


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _set_train_mode(model: nn.Module, batchnorm: str) -> None:
    model.train()
    if batchnorm == "frozen":
        for m in _bn_modules(model):
            m.eval()


def _revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats).to(module.weight.device if module.affine else "cpu")
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _revert_sync_batchnorm(child))
    return out


@contextlib.contextmanager
def _bn_stats_kept(model: nn.Module):
    """Run forward passes without changing BatchNorm running statistics."""
    saved = [(b, {k: v.clone() for k, v in b.named_buffers(recurse=False)}) for b in _bn_modules(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, bufs in saved:
                for k, v in b.named_buffers(recurse=False):
                    v.copy_(bufs[k])


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -- building the run ---------------------------------------------------------------------------

def _build_dataset(config: TrainingConfig, patch_size: int, ctx: _Dist) -> ExifPatchDataset:
    payload = None
    if ctx.main:
        ds = ExifPatchDataset(config.images, metadata=config.metadata, patch_size=patch_size,
                              min_tags=config.min_tags, tags=config.tags, text_style=config.text_style,
                              min_size=config.min_size, cache_images=config.cache_images, augment=config.augment,
                              seed=config.seed)
        payload = (ds.records, ds.skipped_files)
    records, skipped = ctx.broadcast(payload)
    return ExifPatchDataset(records=records, skipped_files=skipped, patch_size=patch_size, min_tags=config.min_tags,
                            tags=config.tags, text_style=config.text_style, min_size=config.min_size,
                            cache_images=config.cache_images, augment=config.augment, seed=config.seed)


def _model_from_arch(config: TrainingConfig, texts: list[str], ctx: _Dist):
    from .modeling import create_model, get_architecture_config
    from .tokenization import build_exif_tokenizer

    tokenizer = None
    if ctx.main:
        max_len = get_architecture_config(config.arch).max_text_length
        corpus = list(texts) + augmentation_phrases(AugmentConfig.coerce(config.augment))
        tokenizer = build_exif_tokenizer(corpus, vocab_size=config.vocab_size, model_max_length=max_len)
    tokenizer = ctx.broadcast(tokenizer)
    return create_model(config.arch, tokenizer=tokenizer, seed=config.seed)


def _model_card(config: TrainingConfig, result: dict) -> str:
    origin = f"from scratch, architecture {config.arch!r}" if config.arch else f"fine-tuned from {config.init!r}"
    return (
        "---\nlibrary_name: exifclip\ntags: [image-forensics, exif, contrastive]\n---\n\n"
        f"# exifclip model\n\nTrained with `exifclip.training.train` ({origin}).\n\n"
        f"- photos: {result['dataset']['images']} used, skipped {result['dataset']['skipped']}\n"
        f"- steps: {result['step']}, global batch {config.batch_size} patches of {result['patch_size']} px, "
        f"lr {config.lr}, seed {config.seed}, {result['world_size']} process(es)\n"
        f"- final loss: {result['final_loss']}\n\n"
        "The full configuration is in `training_config.json`, the per-step log in `train_log.jsonl`.\n"
    )


def train(config: TrainingConfig | dict | str | os.PathLike, *, model: Any = None,
          dataset: ExifPatchDataset | None = None,
          eval_hook: Callable[[Any, int], dict | None] | None = None) -> TrainResult:
    """Train or fine-tune an :class:`~exifclip.modeling.ExifClipModel` contrastively.

    Parameters
    ----------
    config : TrainingConfig, dict, or path of a JSON config
    model : ExifClipModel, optional
        Train this model **in place** instead of ``config.arch`` /
        ``config.init`` (it must have a tokenizer). Ignored when resuming
        from a checkpoint.
    dataset : ExifPatchDataset, optional
        Use these photos instead of ``config.images`` / ``config.metadata``;
        its patch size and seed are set from the model and ``config.seed``.
    eval_hook : callable, optional
        ``eval_hook(model, step) -> dict`` called on rank 0 every
        ``config.eval_every`` steps and after the last, with the model in
        eval mode; the dict is logged and returned in ``result.evals``.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For bad settings, or fewer usable photos than ``batch_size``.

    Examples
    --------
    >>> import io, numpy as np, piexif
    >>> from PIL import Image
    >>> rng = np.random.default_rng(0)
    >>> photos = []
    >>> for i in range(4):
    ...     exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam", piexif.ImageIFD.Model: b"M%d" % i}})
    ...     buf = io.BytesIO()
    ...     Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(buf, "JPEG", exif=exif)
    ...     photos.append(buf.getvalue())
    >>> cfg = TrainingConfig(images=photos, arch="small", steps=2, batch_size=4, min_tags=2, patch_size=64,
    ...                      device="cpu", progress=False)
    >>> result = train(cfg)
    >>> result.step, len(result.losses), result.dataset["images"]
    (2, 2, 4)
    """
    if isinstance(config, (str, os.PathLike)):
        config = TrainingConfig.from_json(config)
    elif isinstance(config, dict):
        config = TrainingConfig.from_dict(config)
    config.validate(need_data=dataset is None, need_model=model is None)
    if config.num_workers > 0:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = _setup_distributed(config.device)
    try:
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            return _run(config, model, dataset, eval_hook, ctx)
    finally:
        ctx.close()


def _run(config: TrainingConfig, model, dataset, eval_hook, ctx: _Dist) -> TrainResult:
    from .hub import load_model
    from .modeling import get_architecture_config, patches_to_pixel_values

    out_dir = Path(config.out_dir) if config.out_dir else None
    checkpoint = None
    if isinstance(config.resume, str):
        checkpoint = Path(config.resume)
        if not (checkpoint / _STATE_FILE).is_file():
            raise ValueError(f"{checkpoint}: not a training checkpoint (no {_STATE_FILE})")
    elif config.resume and out_dir is not None:
        checkpoint = latest_checkpoint(out_dir)
    state = load_training_state(checkpoint) if checkpoint is not None else None

    # The model (except from scratch, whose vocabulary needs the corpus first).
    if state is not None:
        model = load_model(checkpoint, device="cpu", use_cache=False)
    elif model is None and config.init is not None:
        model = load_model(config.init, revision=config.revision, device="cpu", use_cache=False)
    if model is not None and getattr(model, "tokenizer", None) is None:
        raise ValueError("the model has no tokenizer; training needs one to read the EXIF text")
    if model is not None:
        patch_size = int(config.patch_size or model.config.patch_size)
    else:
        patch_size = int(config.patch_size or get_architecture_config(config.arch).patch_size)

    if dataset is None:
        dataset = _build_dataset(config, patch_size, ctx)
    else:
        dataset = dataset.with_settings(patch_size=patch_size, seed=config.seed)
    if model is None:
        model = _model_from_arch(config, dataset.texts, ctx)
    model.config.patch_size = patch_size

    start = int(state["step"]) if state is not None else 0
    sampler = GlobalBatchSampler(len(dataset), config.batch_size, config.steps, config.seed, ctx.world, ctx.rank,
                                 config.accum_steps, start_step=start)
    if state is not None:
        data = state.get("data", {})
        if data.get("fingerprint") not in (None, dataset.fingerprint()):
            warnings.warn(f"resuming from {checkpoint}: the photos differ from those the checkpoint was trained on "
                          "(files or texts changed); the run will not repeat the original exactly", stacklevel=2)

    device = ctx.device
    model = model.to(device)
    if config.batchnorm == "sync" and ctx.world > 1:
        if device.type != "cuda":
            raise ValueError("batchnorm='sync' needs CUDA (PyTorch's SyncBatchNorm has no CPU version); "
                             "use 'batch' or 'frozen' on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    _set_train_mode(model, config.batchnorm)

    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  eps=config.eps)
    def schedule(s):
        return lr_factor(s, config.steps, config.warmup_steps, config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    losses: list[float] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        losses = [float(x) for x in state.get("losses", [])][:start]

    module: nn.Module = _TrainModule(model)
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # 1x1 convolutions get gradients in another memory layout than DDP's buckets: harmless.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate,
                                         num_workers=config.num_workers, pin_memory=device.type == "cuda")
    log = _Log(out_dir / "train_log.jsonl" if out_dir is not None and ctx.main else None, start)
    summary = dataset.summary()
    if out_dir is not None and ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        config.to_json(out_dir / "training_config.json")
    log.write({"event": "resume" if start else "start", "step": start, "world_size": ctx.world,
               "device": str(device), "patch_size": patch_size, "dataset": summary,
               "parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()})

    bar = None
    if config.progress and ctx.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, unit="step", desc="training", dynamic_ncols=True)

    tokenizer, max_len = model.tokenizer, model.config.max_text_length
    mean, std = model.config.image_mean, model.config.image_std
    k, W = config.accum_steps, ctx.world
    def autocast():
        return _autocast(device, config.precision)
    failed_files: dict[int, str] = {}
    history: list[dict] = []
    evals: list[dict] = []
    step, saved_step = start, start
    run_patches, run_time = 0, 0.0
    t_start = time.perf_counter()

    def encode(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (m, 2d + 1) gathered-ready rows [image | text | valid] and the scale."""
        valid = batch["valid"].to(device)
        m = valid.shape[0]
        if batch["patches"] is None:  # every photo failed: embed a placeholder so DDP sees all parameters
            p = patch_size
            patches, texts = torch.zeros(1, p, p, 3, dtype=torch.uint8), [""]
        else:
            patches, texts = batch["patches"], batch["texts"]
        pixels = patches_to_pixel_values(patches.to(device, non_blocking=True), mean, std)
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with autocast():
            img, txt, scale = module(pixels, tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
        rows = torch.cat([img, txt], dim=1)
        if batch["patches"] is None:
            out = rows.new_zeros(m, rows.shape[1]) + 0.0 * rows.sum()
        else:
            out = rows.new_zeros(m, rows.shape[1]).index_copy(0, valid.nonzero().squeeze(1), rows)
        return torch.cat([out, valid.to(out.dtype)[:, None]], dim=1), scale

    def loss_of(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        d = (rows.shape[1] - 1) // 2
        return global_clip_loss(rows[:, :d], rows[:, d:2 * d], scale, rows[:, -1] > 0.5)

    batches = iter(loader)
    try:
        while step < config.steps:
            t0 = time.perf_counter()
            micro = [next(batches) for _ in range(k)]
            for batch in micro:
                for index, error in batch["failures"]:
                    if index not in failed_files:
                        failed_files[index] = error
                        warnings.warn(f"skipped a photo that could not be decoded: {error}", stacklevel=2)
                        log.write({"event": "decode_failed", "step": step + 1, "error": error})
            optimizer.zero_grad(set_to_none=True)
            if k == 1:
                torch.manual_seed(_micro_seed(config.seed, step, ctx.rank))
                rows, scale = encode(micro[0])
                full = gather_with_local_grad(rows)
                loss = loss_of(full, _scale_grad(scale, 1.0 / W))
                (loss * W).backward()
                n_valid = int((full[:, -1] > 0.5).sum())
            else:
                cached = []
                with torch.no_grad(), _bn_stats_kept(model):
                    for j, batch in enumerate(micro):
                        torch.manual_seed(_micro_seed(config.seed, step, j * W + ctx.rank))
                        cached.append(gather_with_local_grad(encode(batch)[0]))
                n_valid = int(sum((c[:, -1] > 0.5).sum() for c in cached))
                m = cached[0].shape[0] // W
                for j, batch in enumerate(micro):
                    sync = j == k - 1 or W == 1
                    with (contextlib.nullcontext() if sync else module.no_sync()):
                        torch.manual_seed(_micro_seed(config.seed, step, j * W + ctx.rank))
                        rows, scale = encode(batch)
                        parts = list(cached)
                        lo = ctx.rank * m
                        parts[j] = torch.cat([cached[j][:lo], rows, cached[j][lo + m:]])
                        full = torch.cat(parts)
                        scale = _scale_grad(scale, 1.0 / W) if j == k - 1 else scale.detach()
                        loss_j = loss_of(full, scale)
                        (loss_j * W).backward()
                        if j == 0:
                            loss = loss_j
            max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            losses.append(loss_value)
            dt = time.perf_counter() - t0
            if step > start + 1 or config.steps - start == 1:
                run_patches += n_valid
                run_time += dt
            epoch, _ = sampler.position(step - 1)
            record = {"step": step, "epoch": epoch, "loss": loss_value, "lr": lr,
                      "logit_scale": float(model.get_logit_scale().detach()), "grad_norm": grad_norm,
                      "patches": n_valid, "patches_per_s": n_valid / dt if dt > 0 else None, "time_s": dt}
            history.append(record)
            log.write(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({"loss": f"{loss_value:.4f}", "patches/s": f"{n_valid / max(dt, 1e-9):.0f}"})

            if out_dir is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                if ctx.main:
                    where = _save_checkpoint(out_dir, step, model, optimizer, scheduler,
                                             _plain_state(config, dataset, sampler, step, losses, ctx),
                                             config.keep_checkpoints)
                    log.write({"event": "checkpoint", "step": step, "path": str(where)})
                saved_step = step
                ctx.barrier()
            if eval_hook is not None and ctx.main and (
                    (config.eval_every and step % config.eval_every == 0) or step == config.steps):
                model.eval()
                try:
                    metrics = dict(eval_hook(model, step) or {})
                finally:
                    _set_train_mode(model, config.batchnorm)
                evals.append({"step": step, **metrics})
                log.write({"event": "eval", "step": step, **metrics})
    except KeyboardInterrupt:
        if out_dir is not None and ctx.main and step > saved_step:
            where = _save_checkpoint(out_dir, step, model, optimizer, scheduler,
                                     _plain_state(config, dataset, sampler, step, losses, ctx),
                                     config.keep_checkpoints)
            log.write({"event": "interrupted", "step": step, "path": str(where)})
            print(f"exifclip: interrupted at step {step}; resume from {where}", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()

    if isinstance(model, nn.Module) and any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        model = _revert_sync_batchnorm(model)
    model.eval()
    summary = dataset.summary()
    if failed_files:
        summary["skipped"]["decode_failed"] = len(failed_files)
        summary["skipped_total"] += len(failed_files)
        summary["images"] -= len(failed_files)
    skipped_files = list(dataset.skipped_files) + [
        (source_name(dataset.records[i].source), "decode_failed", error) for i, error in sorted(failed_files.items())]
    elapsed = time.perf_counter() - t_start
    result = TrainResult(model=model, step=step, losses=losses, history=history, evals=evals, dataset=summary,
                         out_dir=str(out_dir) if out_dir else None, elapsed_s=elapsed,
                         patches_per_s=run_patches / run_time if run_time > 0 else float("nan"),
                         world_size=ctx.world, resumed_from=start if state is not None else None,
                         skipped_files=skipped_files)
    if out_dir is not None and ctx.main:
        model.save_pretrained(out_dir)
        if skipped_files:
            with open(out_dir / "skipped_files.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["file", "reason", "detail"])
                writer.writerows(skipped_files)
        card = {"dataset": summary, "step": step, "patch_size": patch_size, "world_size": ctx.world,
                "final_loss": round(losses[-1], 4) if losses else None}
        (out_dir / "README.md").write_text(_model_card(config, card))
        log.write({"event": "end", "step": step, "final_loss": losses[-1] if losses else None,
                   "elapsed_s": elapsed, "patches_per_s": result.patches_per_s, "dataset": summary})
    ctx.barrier()
    return result


def _plain_state(config: TrainingConfig, dataset: ExifPatchDataset, sampler: GlobalBatchSampler, step: int,
                 losses: list[float], ctx: _Dist) -> dict:
    epoch, batch = sampler.position(step)
    return {"data": {"epoch": epoch, "batch_in_epoch": batch, "n_photos": len(dataset),
                     "fingerprint": dataset.fingerprint(), "global_batch": config.batch_size},
            "losses": torch.tensor(losses, dtype=torch.float64), "world_size": ctx.world,
            "config": json.dumps(config.to_dict(), default=_json_default)}
