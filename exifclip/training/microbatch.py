"""One micro-batch on its way to the loss: the collated samples and their embeddings.

:func:`collate_samples` stacks a DataLoader batch of
:class:`~exifclip.training.data.PatchSample`; :func:`embed_micro_batch`
runs it through :class:`TrainModule` (the module DDP wraps) and returns the
loss's inputs, one row per sample, the rows of photos that failed to decode
zero and marked invalid: the patch and text embeddings, the second patch's
embeddings (``patch_pairs``) and the labels of the multi-positive targets
(:func:`exifclip.training.text.text_labels`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._device import autocast
from .text import text_labels

__all__ = ["Embedded", "TrainModule", "collate_samples", "embed_micro_batch"]


def collate_samples(samples: list, labels: bool = False) -> dict:
    """A DataLoader batch: ``patches`` (M', P, P, 3) uint8 of the samples that decoded (``None`` if none
    did), their ``texts``, ``valid`` (M,) bool, ``failures`` [(index, error, name)], ``patches2`` (the
    second patches, or ``None``) and, with ``labels``, ``labels`` (M, 1 + K) int64 of every sample (-1 rows for
    those that failed)."""
    ok = [s for s in samples if s.patch is not None]
    valid = torch.tensor([s.patch is not None for s in samples], dtype=torch.bool)
    patches = torch.from_numpy(np.stack([s.patch for s in ok])) if ok else None
    pairs = bool(ok) and ok[0].patch2 is not None
    out = {"patches": patches, "texts": [s.text for s in ok], "valid": valid,
           "failures": [(s.index, s.error, s.name) for s in samples if s.patch is None],
           "patches2": torch.from_numpy(np.stack([s.patch2 for s in ok])) if pairs else None}
    if labels:
        label_texts = [None if s.patch is None else (s.label_text or s.text) for s in samples]
        out["labels"] = torch.from_numpy(text_labels(label_texts))
    return out


class TrainModule(nn.Module):
    """Wraps the model for DDP: every parameter is used in ``forward``.

    ``forward`` returns the L2-normalised image and text embeddings (float32)
    and the logit scale; ``pixel_values`` may hold more rows than the texts
    (the second patches after the first).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask):
        m = self.model
        img = F.normalize(m.get_image_features(pixel_values).float(), dim=-1)
        txt = F.normalize(m.get_text_features(input_ids, attention_mask).float(), dim=-1)
        return img, txt, m.get_logit_scale().float()


class Embedded(NamedTuple):
    """The loss's inputs from one micro-batch (rows of photos that failed are zero)."""

    image: torch.Tensor
    text: torch.Tensor
    valid: torch.Tensor
    scale: torch.Tensor
    patch: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def _rows(x: torch.Tensor, idx: torch.Tensor, m: int) -> torch.Tensor:
    return x.new_zeros(m, x.shape[1]).index_copy(0, idx, x)


def embed_micro_batch(model: Any, module: nn.Module, batch: dict, device: torch.device, precision: str,
                      pairs: bool = False) -> Embedded:
    """Embed one collated micro-batch with ``module`` (a :class:`TrainModule`, maybe under DDP).

    With ``pairs``, the first and second patches go through the image tower
    in one call (one set of BatchNorm statistics) and ``patch`` holds the
    second ones. A micro-batch whose photos all failed embeds a placeholder,
    so that DDP sees every parameter used.
    """
    from ..modeling.model import patches_to_pixel_values

    cfg = model.config
    valid = batch["valid"].to(device)
    m = valid.shape[0]
    labels = batch["labels"].to(device) if batch.get("labels") is not None else None
    if batch["patches"] is None:
        side = cfg.input_size
        patches, texts = torch.zeros(1, side, side, 3, dtype=torch.uint8), [""]
    else:
        patches, texts = batch["patches"], batch["texts"]
        if pairs:
            patches = torch.cat([patches, batch["patches2"]])
    pixels = patches_to_pixel_values(patches.to(device, non_blocking=True), cfg.image_mean, cfg.image_std)
    tokens = model.tokenizer(texts, padding=True, truncation=True, max_length=cfg.max_text_length,
                             return_tensors="pt")
    with autocast(device, precision, fp16_ok=False):
        img, txt, scale = module(pixels, tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
    if batch["patches"] is None:
        keep = 0.0 * (img.sum() + txt.sum())  # in the graph, without a value
        zero = img.new_zeros(m, img.shape[1]) + keep
        return Embedded(zero, txt.new_zeros(m, txt.shape[1]) + keep, valid, scale, zero if pairs else None, labels)
    idx = valid.nonzero().squeeze(1)
    n = idx.shape[0]
    second = _rows(img[n:], idx, m) if pairs else None
    return Embedded(_rows(img[:n], idx, m), _rows(txt, idx, m), valid, scale, second, labels)
