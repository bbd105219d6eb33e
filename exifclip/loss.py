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

__all__ = ["ClipLoss", "clip_logits"]


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
        logits_per_image, logits_per_text = clip_logits(image_embeds, text_embeds, logit_scale)
        targets = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
        return 0.5 * (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets))
