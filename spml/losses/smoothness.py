"""Edge-aware smoothness of the final saliency map (docs/method.md §2.3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lib.device_constants import device_constant
from spml.normalization import denormalize_rgb

SMOOTHNESS_FACTOR = 0.3
FIRST_ORDER_WEIGHT = 10.0
LAPLACIAN_WEIGHT = 1.0
EDGE_SHARPNESS = 10.0
CHARBONNIER_EPS = 1e-6
GREY_WEIGHTS = (0.299, 0.587, 0.114)
# Cross-correlation kernels: Sobel x, Sobel y, Laplacian.
SOBEL_X = ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1))
SOBEL_Y = ((-1, -2, -1), (0, 0, 0), (1, 2, 1))
LAPLACIAN = ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1))


def _filter_responses(x: Tensor) -> Tensor:
    """``|Sobel-x|, |Sobel-y|, |Laplacian|`` of ``[B, 1, H, W]`` maps as ``[B, 3, H, W]`` (zero padding 1)."""
    kernels = device_constant((SOBEL_X, SOBEL_Y, LAPLACIAN), x.dtype, x.device).unsqueeze(1)
    return F.conv2d(x, kernels, padding=1).abs()


def grey_image(image: Tensor) -> Tensor:
    """Undo the ImageNet normalisation of ``[B, 3, H, W]`` and return ``0.299R + 0.587G + 0.114B`` ``[B, 1, H, W]``."""
    weights = device_constant(GREY_WEIGHTS, image.dtype, image.device).reshape(1, 3, 1, 1)
    return (denormalize_rgb(image) * weights).sum(dim=1, keepdim=True)


def smoothness(saliency: Tensor, image: Tensor) -> Tensor:
    """``0.3·(10·mean(ρ(|∂x P|·w_x) + ρ(|∂y P|·w_y)) + mean(ρ(|ΔP|·w_Δ)))``, ``w = exp(−10|filter(grey)|)``.

    ``saliency`` ``[B, 1, H, W]``, ``image`` the normalised RGB ``[B, 3, H, W]``;
    ``ρ(s) = sqrt(s² + 1e-6)``.
    """
    weights = torch.exp(-EDGE_SHARPNESS * _filter_responses(grey_image(image.to(saliency.dtype))))
    penalty = torch.sqrt((_filter_responses(saliency) * weights) ** 2 + CHARBONNIER_EPS)
    first_order = (penalty[:, 0] + penalty[:, 1]).mean()
    return SMOOTHNESS_FACTOR * (FIRST_ORDER_WEIGHT * first_order + LAPLACIAN_WEIGHT * penalty[:, 2].mean())
