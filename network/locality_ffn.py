"""LocalViT's locality feed-forward network: 1x1 expand, depthwise 3x3, squeeze-excite, 1x1 project (docs/method.md §1.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from network.per_pass_batch_norm import PerPassBatchNorm2d

SE_HIDDEN = 16
"""Squeeze-excite hidden width: ``4C / (C / 4) = 16`` for every stage."""


class HardSigmoid(nn.Module):
    """``relu6(x + 3) / 6``.

    float64 is spelled out: CUDA's fused ``hardsigmoid``/``hardswish`` kernels compute float64
    inputs at float32 precision (relative error 3e-8 measured on an H100, torch 2.11), which
    would break the float64 fixture on CUDA. Other dtypes use the fused kernel, whose float32
    result is the same rounding sequence as the spelled-out formula.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            return F.relu6(x + 3) / 6
        return F.hardsigmoid(x)


class HardSwish(nn.Module):
    """``x · relu6(x + 3) / 6`` (h-swish), float64 spelled out as in :class:`HardSigmoid`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            return x * F.relu6(x + 3) / 6
        return F.hardswish(x)


class SqueezeExcite(nn.Module):
    """``u * hsig(fc2(relu(fc1(mean_hw(u)))))`` on ``[B, C, h, w]``."""

    def __init__(self, channels: int, hidden: int = SE_HIDDEN) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            HardSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class LocalityFFN(nn.Module):
    """Residual locality feed-forward on ``[B, C, h, w]`` with hidden width ``4C``.

    ``x + BN(Conv1x1(SE(hs(BN(DWConv3x3(hs(BN(Conv1x1(x)))))))))``; ``hs`` is h-swish.
    Submodule indices of ``conv`` are the release's state-dict names.
    """

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__()
        hidden = dim * expansion
        self.conv = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            PerPassBatchNorm2d(hidden),
            HardSwish(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            PerPassBatchNorm2d(hidden),
            HardSwish(),
            SqueezeExcite(hidden),
            nn.Conv2d(hidden, dim, 1, bias=False),
            PerPassBatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)
