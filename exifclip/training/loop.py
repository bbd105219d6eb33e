"""The training loop: :func:`train` runs one contrastive run on a CPU, a GPU, or many GPUs under ``torchrun``.

A run has three phases, each its own function so that each reads alone:
``_prepare`` builds the run from the config (resume state, model, data,
optimiser, DDP wrapper, log), ``_step`` does one optimiser step over the
global batch, ``_finish`` saves the model and the run files. How a step
sees the global batch (ranks, accumulation, BatchNorm) and what a checkpoint
holds is described in the training guide (docs/training.rst, "How a step is
computed"). The command line and ``ExifPatchEmbedder(fine_tune=True)`` only
build a :class:`~exifclip.training.config.TrainingConfig` and call :func:`train`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..modeling.loss import ClipLoss, concat_labels
from .batchnorm import revert_sync_batchnorm, running_stats_kept, set_train_mode, sync_batchnorm
from .checkpoints import (
    TrainLog,
    check_resumed_data,
    json_default,
    load_training_state,
    model_card,
    resume_checkpoint,
    save_checkpoint,
    write_skipped_files,
)
from .config import TrainingConfig
from .augment import AugmentConfig, augmentation_phrases
from .data import ExifPatchDataset
from .distributed import DistContext, GlobalBatchSampler, setup_distributed
from .microbatch import Embedded, TrainModule, collate_samples, embed_micro_batch
from .sampling import CameraBatches
from .shard_stream import ShardCorpus, ShardReading

__all__ = ["TrainResult", "lr_factor", "train"]


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
        Photos left out (see :mod:`exifclip.training.data`); with
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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# -- the public entry ---------------------------------------------------------------------------

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
    ctx = setup_distributed(config.device)
    try:
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            return _run(config, model, dataset, eval_hook, ctx)
    finally:
        ctx.close()


def _run(config: TrainingConfig, model, dataset, eval_hook, ctx: DistContext) -> TrainResult:
    run = _prepare(config, model, dataset, eval_hook, ctx)
    try:
        while run.step < config.steps:
            _report(run, _step(run))
            _maybe_checkpoint(run)
            _maybe_evaluate(run)
    except KeyboardInterrupt:
        _checkpoint_on_interrupt(run)
        raise
    finally:
        if run.bar is not None:
            run.bar.close()
    return _finish(run)


@dataclass
class _Run:
    """One run between its steps: what ``_prepare`` built and what the steps have added up."""

    config: TrainingConfig
    ctx: DistContext
    model: nn.Module  # the model itself
    module: nn.Module  # what runs the forward pass: TrainModule, under DDP when there are several ranks
    loss_fn: ClipLoss
    dataset: ExifPatchDataset | ShardCorpus
    sampler: GlobalBatchSampler | ShardCorpus
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: Iterator[dict]
    log: TrainLog
    out_dir: Path | None
    patch_size: int
    start: int
    resumed: bool
    eval_hook: Callable[[Any, int], dict | None] | None
    bar: Any = None
    losses: list[float] = field(default_factory=list)
    step: int = 0
    saved_step: int = 0
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    failed_files: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (error, name)
    run_patches: int = 0
    run_time: float = 0.0
    t_start: float = 0.0


# -- prepare ------------------------------------------------------------------------------------

def _prepare(config: TrainingConfig, model, dataset, eval_hook, ctx: DistContext) -> _Run:
    """Everything a run needs before its first step, in an order that resume depends on (the RNG state
    is restored after the model and the optimiser are built)."""
    out_dir = Path(config.out_dir) if config.out_dir else None
    checkpoint = resume_checkpoint(config.resume, out_dir)
    state = load_training_state(checkpoint) if checkpoint is not None else None
    model, dataset, patch_size = _model_and_data(config, model, dataset, checkpoint, ctx)

    start = int(state["step"]) if state is not None else 0
    streamed = isinstance(dataset, ShardCorpus)
    sampler = dataset if streamed else GlobalBatchSampler(  # a stream knows no epochs of the whole corpus
        len(dataset), config.batch_size, config.steps, config.seed, ctx.world, ctx.rank, config.accum_steps,
        start_step=start, batches=_camera_batches(config, dataset), shuffle=config.shuffle)
    if state is not None:
        check_resumed_data(state.get("data", {}), checkpoint, dataset.fingerprint(), [ctx.world, config.num_workers])

    # One memory format whatever the model came from (load_model gives channels_last, create_model does not):
    # the kernels, and so the last bits of every step, must not depend on it, or resuming would not be exact.
    model = model.to(ctx.device, memory_format=torch.channels_last)
    if config.batchnorm == "sync" and ctx.world > 1:
        model = sync_batchnorm(model, ctx.device)
    set_train_mode(model, config.batchnorm)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  eps=config.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.steps, config.warmup_steps, config.min_lr_ratio))
    losses: list[float] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        losses = [float(x) for x in state.get("losses", [])][:start]

    module = _wrap_for_ranks(model, ctx)
    labels = config.targets != "diagonal"
    if streamed:
        loader = dataset.loader(_build_dataset(config, patch_size, None), batch_size=config.batch_size,
                                accum_steps=config.accum_steps, rank=ctx.rank, world=ctx.world,
                                num_workers=config.num_workers, shuffle=config.shuffle,
                                shuffle_buffer=config.shuffle_buffer, labels=labels, start_step=start,
                                pin_memory=ctx.device.type == "cuda")
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                             collate_fn=functools.partial(collate_samples, labels=labels),
                                             num_workers=config.num_workers, pin_memory=ctx.device.type == "cuda")
    log = _open_log(config, out_dir, start, model, dataset, ctx)
    bar = None
    if config.progress and ctx.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, unit="step", desc="training", dynamic_ncols=True)
    batches = iter(loader)
    loss_fn = ClipLoss(ctx.rank, ctx.world, targets=config.targets, temperature=config.target_temperature,
                       patch_weight=config.patch_loss_weight if config.patch_pairs else 0.0)
    return _Run(config=config, ctx=ctx, model=model, module=module, loss_fn=loss_fn,
                dataset=dataset, sampler=sampler, optimizer=optimizer, scheduler=scheduler, batches=batches, log=log,
                out_dir=out_dir, patch_size=patch_size, start=start, resumed=state is not None, eval_hook=eval_hook,
                bar=bar, losses=losses, step=start, saved_step=start, t_start=time.perf_counter())


def _model_and_data(config: TrainingConfig, model, dataset, checkpoint: Path | None,
                    ctx: DistContext) -> tuple[nn.Module, ExifPatchDataset | ShardCorpus, int]:
    """The model (from the checkpoint, ``init``, the caller, or ``arch`` once the corpus is read), the
    dataset at the size of the model's input (its patch and context), and that size."""
    from ..modeling.factory import get_architecture_config
    from ..modeling.hub import load_model

    if checkpoint is not None:
        model = load_model(checkpoint, device="cpu", use_cache=False)
    elif model is None and config.init is not None:
        model = load_model(config.init, revision=config.revision, device="cpu", use_cache=False)
    if model is not None and getattr(model, "tokenizer", None) is None:
        raise ValueError("the model has no tokenizer; training needs one to read the EXIF text")
    if model is not None:
        patch_size = int(config.patch_size or model.config.patch_size)
    else:
        patch_size = int(config.patch_size or get_architecture_config(config.arch).patch_size)

    # Each example is what the tower sees per patch: the patch and its context (ExifClipConfig.patch_context).
    crop = patch_size + 2 * int(model.config.patch_context if model is not None else config.patch_context or 0)
    if dataset is None and config.shards is not None:
        dataset = ShardCorpus(config.shards, ShardReading(config.tags, config.text_style, config.min_tags,
                                                           config.min_size or crop))
    elif dataset is None:
        dataset = _build_dataset(config, crop, ctx)
    else:
        dataset = dataset.with_settings(patch_size=crop, seed=config.seed, **_text_and_pair_settings(config))
    if model is None:  # from scratch: the vocabulary is learnt from the corpus
        model = _model_from_arch(config, dataset, ctx)
    model.config.patch_size = patch_size
    return model, dataset, crop


def _build_dataset(config: TrainingConfig, patch_size: int, ctx: DistContext | None) -> ExifPatchDataset:
    """The photos of ``config``, read on rank 0 and shared with the others; ``ctx`` None: none, only the
    settings that cut a streamed photo's patches as a photo of the folder's."""
    payload = ([], []) if ctx is None else None
    if ctx is not None and ctx.main:
        ds = ExifPatchDataset(config.images, metadata=config.metadata, patch_size=patch_size,
                              min_tags=config.min_tags, tags=config.tags, text_style=config.text_style,
                              min_size=config.min_size, cache_images=config.cache_images, augment=config.augment,
                              seed=config.seed, **_text_and_pair_settings(config))
        payload = (ds.records, ds.skipped_files)
    records, skipped = payload if ctx is None else ctx.broadcast(payload)
    return ExifPatchDataset(records=records, skipped_files=skipped, patch_size=patch_size, min_tags=config.min_tags,
                            tags=config.tags, text_style=config.text_style, min_size=config.min_size,
                            cache_images=config.cache_images, augment=config.augment, seed=config.seed,
                            **_text_and_pair_settings(config))


def _text_and_pair_settings(config: TrainingConfig) -> dict:
    return {"patch_pairs": config.patch_pairs, "tag_dropout": config.tag_dropout, "shuffle_tags": config.shuffle_tags}


def _camera_batches(config: TrainingConfig, dataset: ExifPatchDataset) -> CameraBatches | None:
    """The global batches of ``batch_sampling`` "camera_balanced" / "hard_negatives" (None: random)."""
    if config.batch_sampling == "random" or len(dataset) < config.batch_size:  # too few: the sampler says so
        return None
    per_camera = 1 if config.batch_sampling == "camera_balanced" else config.photos_per_camera
    return CameraBatches(dataset.cameras, dataset.texts, batch_size=config.batch_size, seed=config.seed,
                         per_camera=per_camera)


def _model_from_arch(config: TrainingConfig, dataset: ExifPatchDataset | ShardCorpus, ctx: DistContext):
    from ..modeling.factory import create_model, get_architecture_config
    from ..modeling.tokenization import build_exif_tokenizer

    tokenizer = None
    if ctx.main:
        max_len = get_architecture_config(config.arch).max_text_length
        corpus = list(dataset.texts) + augmentation_phrases(AugmentConfig.coerce(config.augment))
        tokenizer = build_exif_tokenizer(corpus, vocab_size=config.vocab_size, model_max_length=max_len)
    tokenizer = ctx.broadcast(tokenizer)
    return create_model(config.arch, tokenizer=tokenizer, seed=config.seed, **config.arch_overrides())


def _wrap_for_ranks(model: nn.Module, ctx: DistContext) -> nn.Module:
    module: nn.Module = TrainModule(model)
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # 1x1 convolutions get gradients in another memory layout than DDP's buckets: harmless.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

        device = ctx.device
        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    return module


def _open_log(config: TrainingConfig, out_dir: Path | None, start: int, model: nn.Module,
              dataset: ExifPatchDataset | ShardCorpus, ctx: DistContext) -> TrainLog:
    """The run's log (rank 0 with ``out_dir`` only), opened with its start record; also writes the config."""
    log = TrainLog(out_dir / "train_log.jsonl" if out_dir is not None and ctx.main else None, start)
    if out_dir is not None and ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        config.to_json(out_dir / "training_config.json")
    log.write({"event": "resume" if start else "start", "step": start, "world_size": ctx.world,
               "device": str(ctx.device), "patch_size": model.config.patch_size, "dataset": dataset.summary(),
               "parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()})
    return log


# -- one step -----------------------------------------------------------------------------------

def _step(run: _Run) -> dict:
    """One optimiser step over the next global batch; returns its log record."""
    config = run.config
    t0 = time.perf_counter()
    micro = [next(run.batches) for _ in range(config.accum_steps)]
    _note_failures(run, micro)
    run.optimizer.zero_grad(set_to_none=True)
    if config.accum_steps == 1:
        loss, n_valid = _forward_backward(run, micro[0])
    else:
        loss, n_valid = _forward_backward_accumulated(run, micro)
    max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm))
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    loss_value = float(loss.detach())
    run.losses.append(loss_value)
    dt = time.perf_counter() - t0
    if run.step > run.start + 1 or config.steps - run.start == 1:  # the first step (warm-up) is not timed
        run.run_patches += n_valid
        run.run_time += dt
    epoch = micro[-1]["epoch"] if "epoch" in micro[-1] else run.sampler.position(run.step - 1)[0]
    return {"step": run.step, "epoch": epoch, "loss": loss_value, "lr": lr,
            "logit_scale": float(run.model.get_logit_scale().detach()), "grad_norm": grad_norm,
            "patches": n_valid, "patches_per_s": n_valid / dt if dt > 0 else None, "time_s": dt}


def _note_failures(run: _Run, micro: list[dict]) -> None:
    for batch in micro:
        if "skipped" in batch:  # a shard stream names the photos it leaves out as it meets them
            run.dataset.note_skipped(batch["skipped"])
        for index, error, name in batch["failures"]:
            if index not in run.failed_files:
                run.failed_files[index] = (error, name)
                warnings.warn(f"skipped a photo that could not be decoded: {error}", stacklevel=4)
                run.log.write({"event": "decode_failed", "step": run.step + 1, "error": error})


def _forward_backward(run: _Run, batch: dict) -> tuple[torch.Tensor, int]:
    """The loss over the global batch (each rank embeds its micro-batch), back-propagated; and the number
    of its photos that decoded."""
    ctx = run.ctx
    torch.manual_seed(_micro_seed(run.config.seed, run.step, ctx.rank))
    e = _encode(run, batch)
    loss = run.loss_fn(e.image, e.text, e.scale, e.valid, e.labels, e.patch)
    loss.backward()
    return loss, ctx.all_sum(int(e.valid.sum()))


def _encode(run: _Run, batch: dict) -> Embedded:
    return embed_micro_batch(run.model, run.module, batch, run.ctx.device, run.config.precision,
                             pairs=run.config.patch_pairs)


def _cat_rows(parts: list[Embedded]) -> dict:
    """The micro-batches' rows as one batch: the loss's keyword arguments (labels padded to one width)."""
    out = {"image_embeds": torch.cat([e.image for e in parts]), "text_embeds": torch.cat([e.text for e in parts]),
           "valid": torch.cat([e.valid for e in parts]), "labels": None, "patch_embeds": None}
    if parts[0].labels is not None:
        out["labels"] = concat_labels([e.labels for e in parts])
    if parts[0].patch is not None:
        out["patch_embeds"] = torch.cat([e.patch for e in parts])
    return out


def _forward_backward_accumulated(run: _Run, micro: list[dict]) -> tuple[torch.Tensor, int]:
    """As ``_forward_backward`` with ``accum_steps`` micro-batches per rank: a first pass without
    gradients embeds them all; then each is embedded again with gradients and the loss over the whole
    global batch (the other micro-batches from the first pass) is back-propagated through it only."""
    ctx, k = run.ctx, run.config.accum_steps
    seeds = [_micro_seed(run.config.seed, run.step, j * ctx.world + ctx.rank) for j in range(k)]
    cached = []
    with torch.no_grad(), running_stats_kept(run.model):
        for seed, batch in zip(seeds, micro):
            torch.manual_seed(seed)
            cached.append(_encode(run, batch))
    n_valid = ctx.all_sum(sum(int(e.valid.sum()) for e in cached))
    for j, (seed, batch) in enumerate(zip(seeds, micro)):
        last = j == k - 1
        with (contextlib.nullcontext() if last or ctx.world == 1 else run.module.no_sync()):
            torch.manual_seed(seed)
            e = _encode(run, batch)
            parts = list(cached)
            parts[j] = e
            # The logit scale is one number for all micro-batches: its gradient is taken once.
            loss_j = run.loss_fn(logit_scale=e.scale if last else e.scale.detach(), **_cat_rows(parts))
            loss_j.backward()
            if j == 0:
                loss = loss_j
    return loss, n_valid


# -- between steps ------------------------------------------------------------------------------

def _report(run: _Run, record: dict) -> None:
    run.history.append(record)
    run.log.write(record)
    if run.bar is not None:
        run.bar.update(1)
        run.bar.set_postfix({"loss": f"{record['loss']:.4f}",
                             "patches/s": f"{record['patches'] / max(record['time_s'], 1e-9):.0f}"})


def _save(run: _Run) -> Path:
    epoch, batch = run.sampler.position(run.step)
    data = {"epoch": epoch, "batch_in_epoch": batch, "n_photos": len(run.dataset),
            "fingerprint": run.dataset.fingerprint(), "global_batch": run.config.batch_size}
    if isinstance(run.dataset, ShardCorpus):
        data["readers"] = [run.ctx.world, run.config.num_workers]
    state = {"data": data,
             "losses": torch.tensor(run.losses, dtype=torch.float64), "world_size": run.ctx.world,
             "config": json.dumps(run.config.to_dict(), default=json_default)}
    return save_checkpoint(run.out_dir, run.step, run.model, run.optimizer, run.scheduler, state,
                           run.config.keep_checkpoints)


def _maybe_checkpoint(run: _Run) -> None:
    every = run.config.checkpoint_every
    if run.out_dir is None or not every or run.step % every:
        return
    if run.ctx.main:
        where = _save(run)
        run.log.write({"event": "checkpoint", "step": run.step, "path": str(where)})
    run.saved_step = run.step
    run.ctx.barrier()


def _checkpoint_on_interrupt(run: _Run) -> None:
    if run.out_dir is not None and run.ctx.main and run.step > run.saved_step:
        where = _save(run)
        run.log.write({"event": "interrupted", "step": run.step, "path": str(where)})
        print(f"exifclip: interrupted at step {run.step}; resume from {where}", file=sys.stderr)


def _maybe_evaluate(run: _Run) -> None:
    config = run.config
    due = (config.eval_every and run.step % config.eval_every == 0) or run.step == config.steps
    if run.eval_hook is None or not run.ctx.main or not due:
        return
    run.model.eval()
    try:
        metrics = dict(run.eval_hook(run.model, run.step) or {})
    finally:
        set_train_mode(run.model, config.batchnorm)
    run.evals.append({"step": run.step, **metrics})
    run.log.write({"event": "eval", "step": run.step, **metrics})


# -- finish -------------------------------------------------------------------------------------

def _finish(run: _Run) -> TrainResult:
    """The result; with ``out_dir``, rank 0 writes the final model, skipped_files.csv, the model card
    and the log's end record."""
    model = run.model
    if any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        model = revert_sync_batchnorm(model)
    model.eval()
    summary, skipped_files = _data_report(run)
    elapsed = time.perf_counter() - run.t_start
    result = TrainResult(model=model, step=run.step, losses=run.losses, history=run.history, evals=run.evals,
                         dataset=summary, out_dir=str(run.out_dir) if run.out_dir else None, elapsed_s=elapsed,
                         patches_per_s=run.run_patches / run.run_time if run.run_time > 0 else float("nan"),
                         world_size=run.ctx.world, resumed_from=run.start if run.resumed else None,
                         skipped_files=skipped_files)
    out_dir, losses = run.out_dir, run.losses
    if out_dir is not None and run.ctx.main:
        model.save_pretrained(out_dir)
        if skipped_files:
            write_skipped_files(out_dir / "skipped_files.csv", skipped_files)
        card = {"dataset": summary, "step": run.step, "patch_size": model.config.patch_size,
                "world_size": run.ctx.world, "final_loss": round(losses[-1], 4) if losses else None}
        (out_dir / "README.md").write_text(model_card(run.config, card))
        run.log.write({"event": "end", "step": run.step, "final_loss": losses[-1] if losses else None,
                       "elapsed_s": elapsed, "patches_per_s": result.patches_per_s, "dataset": summary})
    run.ctx.barrier()
    return result


def _data_report(run: _Run) -> tuple[dict, list]:
    """The dataset summary and skipped files, counting the photos that failed to decode during the run."""
    dataset, failed = run.dataset, run.failed_files
    summary = dataset.summary()
    if failed:
        summary["skipped"]["decode_failed"] = len(failed)
        summary["skipped_total"] += len(failed)
        if summary["images"] is not None:
            summary["images"] -= len(failed)
    skipped_files = list(dataset.skipped_files) + [
        (name, "decode_failed", error) for _, (error, name) in sorted(failed.items())]
    return summary, skipped_files

