"""Where the model runs and in which precision: one place for devices, dtypes and autocast."""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["autocast", "autocast_dtype", "resolve_device", "resolve_dtype"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, then Apple MPS, then CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A dtype name (``"float32"``, ``"bfloat16"``, ...) as a ``torch.dtype``; ``None`` is float32.

    Examples
    --------
    >>> resolve_dtype("bfloat16"), resolve_dtype(None)
    (torch.bfloat16, torch.float32)
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
    return value


def autocast_dtype(device: torch.device, precision: str = "auto", *, fp16_ok: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for full precision.

    ``"auto"`` lowers precision on CUDA only: bf16 where supported, else fp16
    if ``fp16_ok`` (training passes ``False``: fp16 gradients need loss
    scaling, which the training loop does not do).

    Examples
    --------
    >>> autocast_dtype(torch.device("cpu")) is None
    True
    >>> autocast_dtype(torch.device("cpu"), "bf16")
    torch.bfloat16
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if fp16_ok else None


def autocast(device: torch.device, precision: str = "auto", *, fp16_ok: bool = True):
    """``torch.autocast`` for :func:`autocast_dtype`, or a no-op context."""
    dtype = autocast_dtype(device, precision, fp16_ok=fp16_ok)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
