"""BatchNorm when a global batch is split over ranks and micro-batches.

``batchnorm="batch"`` normalises each micro-batch with its own statistics,
``"sync"`` shares them across GPUs (``torch.nn.SyncBatchNorm``, CUDA only),
``"frozen"`` uses the running statistics (BN layers in eval mode). The
training loop switches modes, keeps the running statistics out of the extra
forward pass of gradient accumulation, and turns SyncBatchNorm back into
plain BatchNorm before it returns the model.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["bn_modules", "revert_sync_batchnorm", "running_stats_kept", "set_train_mode", "sync_batchnorm"]


def bn_modules(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``model`` (SyncBatchNorm included)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_train_mode(model: nn.Module, batchnorm: str) -> None:
    """``model.train()``, except that ``batchnorm="frozen"`` keeps the BN layers in eval mode."""
    model.train()
    if batchnorm == "frozen":
        for m in bn_modules(model):
            m.eval()


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with SyncBatchNorm layers (CUDA only: PyTorch has no CPU version)."""
    if device.type != "cuda":
        raise ValueError("batchnorm='sync' needs CUDA (PyTorch's SyncBatchNorm has no CPU version); "
                         "use 'batch' or 'frozen' on CPU")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every SyncBatchNorm turned back into BatchNorm2d (same state and mode)."""
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats).to(module.weight.device if module.affine else "cpu")
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, revert_sync_batchnorm(child))
    return out


@contextlib.contextmanager
def running_stats_kept(model: nn.Module) -> Iterator[None]:
    """Run forward passes without changing BatchNorm running statistics."""
    saved = [(b, {k: v.clone() for k, v in b.named_buffers(recurse=False)}) for b in bn_modules(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, bufs in saved:
                for k, v in b.named_buffers(recurse=False):
                    v.copy_(bufs[k])
