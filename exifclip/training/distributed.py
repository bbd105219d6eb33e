"""Distributed plumbing for training: ranks and global batches.

One process is the degenerate case: every helper here works unchanged
without ``torch.distributed`` initialised. Under ``torchrun``
:class:`GlobalBatchSampler` decides which photos each rank and micro-batch
take; the loss (:class:`~exifclip.modeling.loss.ClipLoss`) gathers the
embeddings of all ranks and scales the gradients (docs/training.rst, "How a
step is computed").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

# The gather and the gradient scaling live with the loss that uses them; named here for exifclip 0.1 code.
from ..modeling.loss import gather_with_local_grad, scale_grad  # noqa: F401 - their exifclip 0.1 path

__all__ = ["DistContext", "GlobalBatchSampler", "setup_distributed"]


class GlobalBatchSampler:
    """Which photos each rank embeds in each micro-batch; a pure function of the step.

    Epoch ``e`` is the permutation ``default_rng([seed, e, 1]).permutation(n)``
    (with ``shuffle=False``, the photos in order) cut into ``n // batch_size``
    global batches (the remainder is dropped);
    step ``s`` uses batch ``s % per_epoch`` of epoch ``s // per_epoch``.
    Iterating yields, for each step from ``start_step`` and each of the
    ``accum_steps`` micro-batches, a list of ``(epoch, index)`` keys for
    :class:`~exifclip.training.data.ExifPatchDataset`.

    With ``batches`` (a function of the step giving its ``batch_size`` photo
    indices, e.g. :class:`~exifclip.training.sampling.CameraBatches`), the
    global batches are that function's instead, and the keys carry the step
    in place of the epoch: a photo that comes back within an epoch gets a
    fresh patch.

    Examples
    --------
    >>> s = GlobalBatchSampler(10, batch_size=4, steps=3, seed=0)
    >>> s.batches_per_epoch, len(list(s))
    (2, 3)
    >>> r0 = GlobalBatchSampler(10, 4, 3, seed=0, world_size=2, rank=0)
    >>> r1 = GlobalBatchSampler(10, 4, 3, seed=0, world_size=2, rank=1)
    >>> [k for k, _ in zip(s, range(1))] == [next(iter(r0)) + next(iter(r1))]
    True
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int = 0, world_size: int = 1, rank: int = 0,
                 accum_steps: int = 1, start_step: int = 0,
                 batches: Callable[[int], Sequence[int]] | None = None, shuffle: bool = True):
        if batch_size % (world_size * accum_steps):
            raise ValueError(f"batch_size {batch_size} must be divisible by world_size x accum_steps "
                             f"= {world_size} x {accum_steps}")
        if n < batch_size:
            raise ValueError(f"only {n} usable photos, but batch_size {batch_size} needs that many distinct "
                             "photos per step (one patch per photo per batch)")
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed
        self.world_size, self.rank, self.accum_steps, self.start_step = world_size, rank, accum_steps, start_step
        self.micro = batch_size // (world_size * accum_steps)
        self.batches_per_epoch = n // batch_size
        self.batches, self.shuffle = batches, shuffle
        self._perm: tuple[int, np.ndarray] | None = None

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, batch within the epoch)`` of ``step`` (0-based)."""
        return divmod(step, self.batches_per_epoch)

    def global_batch(self, step: int) -> list[tuple[int, int]]:
        """Keys of every photo in ``step``'s global batch, in ``g`` order."""
        if self.batches is not None:
            return [(step, int(i)) for i in self.batches(step)]
        epoch, b = self.position(step)
        if self._perm is None or self._perm[0] != epoch:
            order = np.random.default_rng([self.seed, epoch, 1]).permutation(self.n) if self.shuffle \
                else np.arange(self.n)
            self._perm = (epoch, order)
        idx = self._perm[1][b * self.batch_size:(b + 1) * self.batch_size]
        return [(epoch, int(i)) for i in idx]

    def micro_batch(self, step: int, j: int) -> list[tuple[int, int]]:
        """This rank's keys for micro-batch ``j`` of ``step``."""
        g = j * self.world_size + self.rank
        return self.global_batch(step)[g * self.micro:(g + 1) * self.micro]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            for j in range(self.accum_steps):
                yield self.micro_batch(step, j)

    def __len__(self) -> int:
        return max(self.steps - self.start_step, 0) * self.accum_steps


@dataclass
class DistContext:
    """Where this process stands: its rank, the world size and its device (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, value: int) -> int:
        """``value`` summed over the ranks (every rank gets the sum)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def setup_distributed(device: str) -> DistContext:
    import torch.distributed as dist

    from .._device import resolve_device

    initialised = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if initialised else int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = resolve_device(device)
    if want.type == "cuda":
        want = torch.device("cuda", local_rank if want.index is None else want.index)
        torch.cuda.set_device(want)
    owns = False
    if not initialised:
        dist.init_process_group(backend="nccl" if want.type == "cuda" else "gloo")
        owns = True
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, want, owns)
