"""The symmetric CLIP (InfoNCE) loss, on one process or over the global batch of many.

For a batch of ``N`` matching (patch, EXIF text) pairs with L2-normalised
embeddings ``I`` and ``T`` and logit scale ``s``, the logits are
``s * I @ T.T`` and the loss is the mean of the cross-entropies over rows
(patch -> text) and columns (text -> patch), with the diagonal as targets
(Radford et al., 2021, "Learning Transferable Visual Models From Natural
Language Supervision", Figure 3). Under ``torch.distributed`` every negative
of the global batch counts, so :class:`ClipLoss` gathers the embeddings of
all ranks itself (as open_clip's ``ClipLoss(rank, world_size)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClipLoss", "clip_logits", "gather_with_local_grad", "global_clip_loss", "scale_grad"]


def clip_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor):
    """Scaled cosine logits ``(logits_per_image, logits_per_text)``.

    Both embeddings must already be L2-normalised; ``logit_scale`` is the
    multiplier itself (not its logarithm).
    """
    logits_per_image = logit_scale * image_embeds @ text_embeds.t()
    return logits_per_image, logits_per_image.t()


def gather_with_local_grad(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``x`` from every rank, in rank order; only the local slice
    keeps its gradient. Without an initialised process group, ``x`` itself.

    Examples
    --------
    >>> import torch
    >>> gather_with_local_grad(torch.ones(2, 3)).shape
    torch.Size([2, 3])
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.detach().contiguous(), group=group)
    parts[dist.get_rank(group)] = x
    return torch.cat(parts)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` itself in value; its gradient multiplied by ``factor``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor(3.0, requires_grad=True)
    >>> y = scale_grad(x, 0.5)
    >>> y.backward()
    >>> float(y), float(x.grad)
    (3.0, 0.5)
    """
    if factor == 1.0:
        return x
    return _ScaleGrad.apply(x, factor)


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over image-text similarity logits, over the global batch.

    Parameters
    ----------
    rank, world_size : int
        This process's rank and the number of processes. With
        ``world_size > 1`` (``torch.distributed`` initialised, one model per
        rank under DDP) each rank passes its own rows; the loss gathers the
        rows of every rank (in rank order, the local slice keeping its
        gradient) and returns the loss over the whole global batch, the same
        value on every rank. Just call ``loss.backward()``: the gradients are
        scaled so that, once DDP has averaged them over the ranks, they equal
        the one-process gradients on the global batch (the embeddings' by
        ``world_size``, since each rank back-propagates only through its own
        slice; the logit scale's by 1, since every rank computes all of it).
    group : process group, optional
        The group to gather over (default: the whole world).

    The loss over a batch does not depend on the order of its rows, so a rank
    may pass any local arrangement of its rows (gradient accumulation passes
    its cached micro-batches around the one being back-propagated).

    Examples
    --------
    >>> import torch
    >>> loss = ClipLoss()
    >>> e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> bool(loss(e, e, torch.tensor(100.0)) < 0.01)
    True
    """

    def __init__(self, rank: int = 0, world_size: int = 1, group: Any = None):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.rank, self.world_size, self.group = int(rank), int(world_size), group

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """The loss over the (global) batch; ``valid`` (N,) bool marks the rows to use."""
        if self.world_size == 1:
            return global_clip_loss(image_embeds, text_embeds, logit_scale, valid)
        self._check_group()
        if valid is None:
            valid = torch.ones(image_embeds.shape[0], dtype=torch.bool, device=image_embeds.device)
        d = image_embeds.shape[1]
        # One all_gather for image, text and validity: [image | text | valid].
        rows = torch.cat([image_embeds, text_embeds, valid.to(image_embeds.dtype)[:, None]], dim=1)
        full = gather_with_local_grad(rows, self.group)
        loss = global_clip_loss(full[:, :d], full[:, d:-1], scale_grad(logit_scale, 1.0 / self.world_size),
                                full[:, -1] > 0.5)
        return scale_grad(loss, self.world_size)

    def _check_group(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"ClipLoss(world_size={self.world_size}) needs an initialised torch.distributed "
                               "process group")
        world, rank = dist.get_world_size(self.group), dist.get_rank(self.group)
        if (rank, world) != (self.rank, self.world_size):
            raise RuntimeError(f"ClipLoss was built for rank {self.rank} of {self.world_size}, but this process "
                               f"is rank {rank} of {world}")

    def extra_repr(self) -> str:
        return f"rank={self.rank}, world_size={self.world_size}"


def global_clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric CLIP loss over the rows marked ``valid`` (on one process: no gathering).

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
