"""The symmetric CLIP (InfoNCE) loss, on one process or over the global batch of many.

For a batch of ``N`` matching (patch, EXIF text) pairs with L2-normalised
embeddings ``I`` and ``T`` and logit scale ``s``, the logits are
``s * I @ T.T`` and the loss is the mean of the cross-entropies over rows
(patch -> text) and columns (text -> patch), with the diagonal as targets
(Radford et al., 2021, "Learning Transferable Visual Models From Natural
Language Supervision", Figure 3). Under ``torch.distributed`` every negative
of the global batch counts, so :class:`ClipLoss` gathers the embeddings of
all ranks itself (as open_clip's ``ClipLoss(rank, world_size)``).

Two changes for small, clustered corpora (both off by default):

* **Multi-positive targets.** With ``targets`` other than ``"diagonal"``,
  batch items that share a camera or a text are not negatives: the
  cross-entropy's one-hot target becomes a distribution over the row's
  positives, from *labels* that the caller passes with the embeddings
  (:func:`exifclip.training.text.text_labels`: column 0 a camera key, columns
  ``1..`` the ids of the text's items, ``-1`` padding). ``"same_text"``:
  rows with the same set of items are positives of each other, with equal
  weight; ``"same_camera"``: rows with the same camera key;
  ``"text_similarity"``: soft targets ``softmax_j((J_ij - 1) / temperature)``
  with ``J`` the Jaccard overlap of the two item sets (1 on the diagonal).
  The weights are symmetric; each direction of the loss normalises them
  over its own rows.
* **A patch-to-patch term.** With ``patch_weight > 0`` the caller also
  passes a second patch of each photo; the loss adds ``patch_weight`` times
  the same symmetric InfoNCE between the first and the second patches
  (with the same targets): two patches of one photo are positives, as in
  the self-consistency line of work (Huh et al., ECCV 2018).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TARGET_MODES", "ClipLoss", "clip_logits", "concat_labels", "contrastive_targets", "gather_labels",
           "gather_with_local_grad", "global_clip_loss", "info_nce", "scale_grad"]

#: The ``targets`` of :class:`ClipLoss` (module doc).
TARGET_MODES = ("diagonal", "same_text", "same_camera", "text_similarity")


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


def concat_labels(parts: list[torch.Tensor]) -> torch.Tensor:
    """Label rows of several batches in one tensor, padded with -1 to the widest.

    Examples
    --------
    >>> import torch
    >>> concat_labels([torch.tensor([[1, 2]]), torch.tensor([[3, 4, 5]])]).tolist()
    [[1, 2, -1], [3, 4, 5]]
    """
    width = max(x.shape[1] for x in parts)
    return torch.cat([F.pad(x, (0, width - x.shape[1]), value=-1) for x in parts])


def gather_labels(labels: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Label rows of every rank, in rank order (no gradient), padded with -1 to the widest.
    Without an initialised process group, ``labels`` itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return labels
    width = torch.tensor([labels.shape[1]], dtype=torch.int64, device=labels.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX, group=group)
    labels = F.pad(labels, (0, int(width) - labels.shape[1]), value=-1).contiguous()
    parts = [torch.empty_like(labels) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, labels, group=group)
    return torch.cat(parts)


def contrastive_targets(labels: torch.Tensor, mode: str = "diagonal", temperature: float = 0.1) -> torch.Tensor | None:
    """Symmetric positive weights ``(N, N)`` between batch items (module doc); ``None`` for ``"diagonal"``.

    Parameters
    ----------
    labels : (N, 1 + K) int64 tensor
        Column 0 a camera key; columns ``1..`` item ids, ``-1`` padding.
    mode : {"diagonal", "same_text", "same_camera", "text_similarity"}
    temperature : float
        Of ``"text_similarity"``: lower is closer to ``"same_text"``.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([[7, 1, 2], [7, 1, 3], [8, 4, -1]])
    >>> contrastive_targets(labels, "same_camera").tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> w = contrastive_targets(labels, "text_similarity", temperature=1.0)
    >>> round(float(w[0, 1]), 4), float(w[0, 0]), round(float(w[0, 2]), 4)  # exp((1/3 - 1) / 1), 1, exp(-1)
    (0.5134, 1.0, 0.3679)
    """
    if mode not in TARGET_MODES:
        raise ValueError(f"targets must be one of {TARGET_MODES}, got {mode!r}")
    if mode == "diagonal":
        return None
    if labels is None:
        raise ValueError(f"targets={mode!r} needs the batch's labels")
    if mode == "same_camera":
        return (labels[:, :1] == labels[:, 0][None, :]).float()
    items = labels[:, 1:]
    present = items >= 0
    _, column = torch.unique(items[present], return_inverse=True)
    multi_hot = torch.zeros(items.shape[0], int(column.max()) + 1 if column.numel() else 0, device=labels.device)
    multi_hot[present.nonzero()[:, 0], column] = 1.0
    inter = multi_hot @ multi_hot.t()
    size = multi_hot.sum(1)
    if mode == "same_text":
        return ((inter == size[:, None]) & (inter == size[None, :])).float()
    jaccard = inter / (size[:, None] + size[None, :] - inter).clamp(min=1.0)
    jaccard.fill_diagonal_(1.0)
    return torch.exp((jaccard - 1.0) / float(temperature))


def info_nce(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of square ``logits``: the mean of the row-wise and column-wise cross-entropies.

    ``weights`` (N, N), non-negative with a positive diagonal, gives each
    direction its soft targets (the weights normalised over that direction's
    rows); ``None`` is the diagonal (CLIP's loss).

    Examples
    --------
    >>> import torch, math
    >>> logits = 2.0 * torch.eye(3)
    >>> round(float(info_nce(logits)), 4) == round(math.log(math.exp(2) + 2) - 2, 4)
    True
    """
    if weights is None:
        targets = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    weights = weights.to(logits.dtype)

    def soft(lg, w):
        return -(w / w.sum(1, keepdim=True) * F.log_softmax(lg, dim=1)).sum(1).mean()

    return 0.5 * (soft(logits, weights) + soft(logits.t(), weights.t()))


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
    targets : {"diagonal", "same_text", "same_camera", "text_similarity"}
        Which batch items are positives (module doc); all but ``"diagonal"``
        need ``labels`` in :meth:`forward` (gathered like the embeddings).
    temperature : float, default=0.1
        Of the ``"text_similarity"`` targets.
    patch_weight : float, default=0.0
        Weight of the patch-to-patch term; above 0, :meth:`forward` needs
        ``patch_embeds``.

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

    def __init__(self, rank: int = 0, world_size: int = 1, group: Any = None, *, targets: str = "diagonal",
                 temperature: float = 0.1, patch_weight: float = 0.0):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if targets not in TARGET_MODES:
            raise ValueError(f"targets must be one of {TARGET_MODES}, got {targets!r}")
        if not temperature > 0 or patch_weight < 0:
            raise ValueError(f"need temperature > 0 and patch_weight >= 0, got {temperature}, {patch_weight}")
        self.rank, self.world_size, self.group = int(rank), int(world_size), group
        self.targets, self.temperature, self.patch_weight = targets, float(temperature), float(patch_weight)

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                valid: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                patch_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The loss over the (global) batch; ``valid`` (N,) bool marks the rows to use; ``labels``
        (N, 1 + K) int64 and ``patch_embeds`` (N, d) as the class doc says."""
        options = dict(targets=self.targets, temperature=self.temperature, patch_weight=self.patch_weight)
        if self.patch_weight > 0 and patch_embeds is None:
            raise ValueError("ClipLoss(patch_weight > 0) needs patch_embeds: a second patch of each photo")
        if self.world_size == 1:
            return global_clip_loss(image_embeds, text_embeds, logit_scale, valid, labels=labels,
                                    patch_embeds=patch_embeds, **options)
        self._check_group()
        if valid is None:
            valid = torch.ones(image_embeds.shape[0], dtype=torch.bool, device=image_embeds.device)
        d = image_embeds.shape[1]
        # One all_gather for the embeddings and validity: [image | text | (second patch) | valid].
        use_patch = self.patch_weight > 0
        parts = [image_embeds, text_embeds] + ([patch_embeds] if use_patch else [])
        rows = torch.cat(parts + [valid.to(image_embeds.dtype)[:, None]], dim=1)
        full = gather_with_local_grad(rows, self.group)
        if self.targets != "diagonal":
            labels = gather_labels(labels, self.group) if labels is not None else None
        loss = global_clip_loss(full[:, :d], full[:, d:2 * d], scale_grad(logit_scale, 1.0 / self.world_size),
                                full[:, -1] > 0.5, labels=labels,
                                patch_embeds=full[:, 2 * d:3 * d] if use_patch else None, **options)
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
        extra = "" if self.targets == "diagonal" else f", targets={self.targets!r}"
        if self.targets == "text_similarity":
            extra += f", temperature={self.temperature}"
        if self.patch_weight:
            extra += f", patch_weight={self.patch_weight}"
        return f"rank={self.rank}, world_size={self.world_size}{extra}"


def global_clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                     valid: torch.Tensor | None = None, *, labels: torch.Tensor | None = None,
                     targets: str = "diagonal", temperature: float = 0.1, patch_embeds: torch.Tensor | None = None,
                     patch_weight: float = 0.0) -> torch.Tensor:
    """Symmetric CLIP loss over the rows marked ``valid`` (on one process: no gathering).

    Parameters
    ----------
    image_embeds, text_embeds : (N, d) tensors, L2-normalised
    logit_scale : scalar tensor (the multiplier, not its log)
    valid : (N,) bool tensor, optional
        Rows to use (photos that failed to decode are padding).
    labels, targets, temperature
        The multi-positive targets (:func:`contrastive_targets`).
    patch_embeds : (N, d) tensor, optional
        A second patch of each photo, L2-normalised; with ``patch_weight``
        > 0 the loss adds ``patch_weight`` times the InfoNCE between
        ``image_embeds`` and ``patch_embeds``, with the same targets.

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
    use_patch = patch_weight > 0 and patch_embeds is not None
    if valid is not None:
        idx = valid.nonzero().squeeze(1)
        image_embeds, text_embeds = image_embeds[idx], text_embeds[idx]
        labels = labels[idx] if labels is not None else None
        patch_embeds = patch_embeds[idx] if use_patch else None
    if image_embeds.shape[0] == 0:
        return (image_embeds.sum() + text_embeds.sum() + (patch_embeds.sum() if use_patch else 0.0)) * 0.0
    weights = contrastive_targets(labels, targets, temperature)
    loss = info_nce(logit_scale * image_embeds @ text_embeds.t(), weights)
    if use_patch:
        loss = loss + patch_weight * info_nce(logit_scale * image_embeds @ patch_embeds.t(), weights)
    return loss
