"""ImageNet normalisation of RGB inputs (docs/method.md §3.2-§3.3), shared by data, losses and logging.

The network sees ``(rgb/255 − mean) / std`` with the ImageNet statistics below; depth is only
divided by 255. Losses that need the original colours (the smoothness term, docs/method.md §2.3)
and the TensorBoard strip undo it with :func:`denormalize_rgb`.
"""
from __future__ import annotations

from torch import Tensor

from lib.device_constants import device_constant

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _statistics(like: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std shaped ``[3, 1, 1]`` in ``like``'s dtype and device (broadcast over a batch)."""
    mean = device_constant(IMAGENET_MEAN, like.dtype, like.device).view(3, 1, 1)
    std = device_constant(IMAGENET_STD, like.dtype, like.device).view(3, 1, 1)
    return mean, std


def normalize_rgb(rgb: Tensor) -> Tensor:
    """``[..., 3, H, W]`` RGB in [0, 1] -> ``(rgb − mean) / std``."""
    mean, std = _statistics(rgb)
    return (rgb - mean) / std


def denormalize_rgb(image: Tensor) -> Tensor:
    """Inverse of :func:`normalize_rgb`: ``image · std + mean``."""
    mean, std = _statistics(image)
    return image * std + mean
