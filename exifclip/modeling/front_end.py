"""Forensic front-ends: what the image tower sees before its first learned layer.

A small network trained on a few hundred photos learns whatever separates
them most easily, and that is scene content (a red car, a bright wall), not
the camera's traces. Forensic designs put a high-pass stage first so the
network sees noise residuals, where sensor, demosaicking and processing
traces live, and little of the content. Two published designs are offered,
named by :attr:`ExifClipConfig.vision_front_end`:

``"rgb"``
    No front-end (the paper's model and ``exifclip-small``).
``"srm"``
    Three fixed high-pass residual filters from the spatial rich model
    (Fridrich & Kodovsky, "Rich Models for Steganalysis of Digital Images",
    IEEE TIFS 2012): the 5x5 "KV" filter, the 3x3 second-order filter and
    the horizontal 1-D second-order filter, each applied to each colour
    channel: 9 channels. The same three kernels were used as a noise stream
    for splice detection by Zhou et al. ("Learning Rich Features for Image
    Manipulation Detection", CVPR 2018).
``"rgb+srm"``
    The colour channels and those 9 residuals side by side: 12 channels.
``"constrained"``
    A learned 5x5 convolution constrained to prediction-error filters
    (Bayar & Stamm, "A Deep Learning Approach to Universal Image
    Manipulation Detection Using a New Convolutional Layer", IH&MMSec 2016):
    each kernel's centre weight is -1 and its other weights sum to 1, so
    every kernel sums to zero and passes no flat content. The paper projects
    the weights onto the constraint after each optimiser step; here the
    constraint is a parametrisation applied in ``forward``, so it holds for
    any optimiser, after loading, and under resume. 3 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FRONT_ENDS", "ConstrainedConv", "SRMResiduals", "build_front_end", "front_end_channels"]

#: Names accepted by ``ExifClipConfig(vision_front_end=...)``.
FRONT_ENDS = ("rgb", "srm", "rgb+srm", "constrained")

_CHANNELS = {"rgb": 3, "srm": 9, "rgb+srm": 12, "constrained": 3}


def front_end_channels(name: str) -> int:
    """Channels the front-end ``name`` hands to the ResNet stem.

    Examples
    --------
    >>> [front_end_channels(n) for n in FRONT_ENDS]
    [3, 9, 12, 3]
    """
    if name not in _CHANNELS:
        raise ValueError(f"vision_front_end must be one of {FRONT_ENDS}, got {name!r}")
    return _CHANNELS[name]


def _srm_kernels() -> torch.Tensor:
    """The three SRM high-pass kernels, each normalised as published, ``(3, 5, 5)``."""
    kv = torch.tensor([[-1, 2, -2, 2, -1],
                       [2, -6, 8, -6, 2],
                       [-2, 8, -12, 8, -2],
                       [2, -6, 8, -6, 2],
                       [-1, 2, -2, 2, -1]], dtype=torch.float64) / 12.0
    second = torch.zeros(5, 5, dtype=torch.float64)
    second[1:4, 1:4] = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=torch.float64) / 4.0
    horizontal = torch.zeros(5, 5, dtype=torch.float64)
    horizontal[2, 1:4] = torch.tensor([1, -2, 1], dtype=torch.float64) / 2.0
    return torch.stack([kv, second, horizontal]).float()


class SRMResiduals(nn.Module):
    """Fixed SRM residuals of each colour channel, optionally beside the colours.

    Parameters
    ----------
    keep_rgb : bool, default=False
        Also pass the input channels on (first), as ``"rgb+srm"`` does.

    Examples
    --------
    >>> x = torch.ones(1, 3, 8, 8)  # flat content has no residual
    >>> y = SRMResiduals()(x)
    >>> y.shape, float(y[..., 2:-2, 2:-2].abs().max()) < 1e-6
    (torch.Size([1, 9, 8, 8]), True)
    """

    #: Side of the residual filters, in pixels (what the front-end adds to the trunk's receptive field).
    kernel_size = 5

    def __init__(self, keep_rgb: bool = False):
        super().__init__()
        self.keep_rgb = keep_rgb

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # Constants of the design, built here rather than held as buffers: checkpoints hold only what
        # was learned, and loading (which may build the model on the meta device) has nothing to restore.
        # Each colour channel through the three kernels: output channel 3c+k is kernel k on channel c.
        kernels = _srm_kernels().repeat(pixel_values.shape[1], 1, 1).unsqueeze(1)
        weight = kernels.to(device=pixel_values.device, dtype=pixel_values.dtype)
        residuals = F.conv2d(pixel_values, weight, padding=self.kernel_size // 2, groups=pixel_values.shape[1])
        return torch.cat([pixel_values, residuals], dim=1) if self.keep_rgb else residuals


class ConstrainedConv(nn.Module):
    """A 5x5 convolution whose kernels are prediction-error filters.

    Parameters
    ----------
    in_channels, out_channels : int, default=3
    kernel_size : int, default=5

    Examples
    --------
    >>> conv = ConstrainedConv()
    >>> w = conv.constrained_weight()
    >>> c = conv.kernel_size // 2
    >>> bool((w[:, :, c, c] == -1).all()), bool(torch.allclose(w.sum((2, 3)), torch.zeros(3, 3), atol=1e-5))
    (True, True)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.1)

    def constrained_weight(self) -> torch.Tensor:
        """The kernels used: centre -1, the other weights shifted to sum to 1."""
        k = self.kernel_size
        centre = torch.zeros(k, k, device=self.weight.device, dtype=self.weight.dtype)
        centre[k // 2, k // 2] = 1.0
        off = 1.0 - centre
        free = self.weight * off
        # An additive shift (not the paper's division by the sum) keeps the map smooth when that sum is near 0.
        shifted = free + off * (1.0 - free.sum((2, 3), keepdim=True)) / (k * k - 1)
        return shifted - centre

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.constrained_weight().to(pixel_values.dtype)
        return F.conv2d(pixel_values, weight, padding=self.kernel_size // 2)


def build_front_end(name: str) -> nn.Module:
    """The module for a front-end name: ``nn.Identity`` for ``"rgb"``.

    Examples
    --------
    >>> build_front_end("srm")(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 9, 16, 16])
    """
    front_end_channels(name)  # validates the name
    if name == "srm":
        return SRMResiduals()
    if name == "rgb+srm":
        return SRMResiduals(keep_rgb=True)
    if name == "constrained":
        return ConstrainedConv()
    return nn.Identity()
