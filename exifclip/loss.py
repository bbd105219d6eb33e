"""The symmetric CLIP (InfoNCE) loss as a module.

For a batch of ``N`` matching (patch, EXIF text) pairs with L2-normalised
embeddings ``I`` and ``T`` and logit scale ``s``, the logits are
``s * I @ T.T`` and the loss is the mean of the cross-entropies over rows
(patch -> text) and columns (text -> patch), with the diagonal as targets
(Radford et al., 2021, "Learning Transferable Visual Models From Natural
Language Supervision", Figure 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClipLoss", "clip_logits", "global_clip_loss"]


def clip_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor):
    """Scaled cosine logits ``(logits_per_image, logits_per_text)``.

    Both embeddings must already be L2-normalised; ``logit_scale`` is the
    multiplier itself (not its logarithm).
    """
    logits_per_image = logit_scale * image_embeds @ text_embeds.t()
    return logits_per_image, logits_per_image.t()


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over image-text similarity logits.

    Examples
    --------
    >>> import torch
    >>> loss = ClipLoss()
    >>> e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> bool(loss(e, e, torch.tensor(100.0)) < 0.01)
    True
    """

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        return global_clip_loss(image_embeds, text_embeds, logit_scale)


def global_clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric CLIP loss over the rows marked ``valid``.

    Parameters
    ----------
    image_embeds, text_embeds : (N, d) tensors, L2-normalised
    logit_scale : scalar tensor (the multiplier, not its log)
    valid : (N,) bool tensor, optional
        Rows to use (photos that failed to decode are padding).

    Examples
    --------
    >>> import torch
    >>> e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> bool(global_clip_loss(e, e, torch.tensor(100.0)) < 0.01)
    True
    >>> bad = torch.tensor([True, True, False, True])
    >>> noisy = torch.cat([e[:2], torch.randn(1, 8), e[3:]])
    >>> bool(global_clip_loss(e, noisy, torch.tensor(100.0), bad) < 0.01)
    True
    """
    if valid is not None:
        idx = valid.nonzero().squeeze(1)
        image_embeds, text_embeds = image_embeds[idx], text_embeds[idx]
    n = image_embeds.shape[0]
    if n == 0:
        return (image_embeds.sum() + text_embeds.sum()) * 0.0
    logits = logit_scale * image_embeds @ text_embeds.t()
    targets = torch.arange(n, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
