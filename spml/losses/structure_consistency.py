"""Saliency structure consistency between the plain and the augmented prediction (docs/method.md §2.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_WEIGHT = 0.85


def _local_mean(x: Tensor) -> Tensor:
    """3×3 average, stride 1, zero padding 1, the padded zeros counted (divisor always 9)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=True)


def structure_consistency(x: Tensor, y: Tensor) -> Tensor:
    """``0.85·mean(clamp((1 − SSIM(x, y))/2, 0, 1)) + 0.15·mean|x − y|`` for ``[B, 1, H, W]`` maps.

    The five local means ``μx, μy, pool(x²), pool(y²), pool(xy)`` come from one pooling of the
    stacked maps.
    """
    moments = _local_mean(torch.cat((x, y, x * x, y * y, x * y), dim=1))
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = moments.split(1, dim=1)
    sigma_x = mean_xx - mu_x * mu_x
    sigma_y = mean_yy - mu_y * mu_y
    sigma_xy = mean_xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    )
    ssim_term = torch.clamp((1 - ssim) / 2, 0, 1).mean()
    return SSIM_WEIGHT * ssim_term + (1 - SSIM_WEIGHT) * (x - y).abs().mean()
