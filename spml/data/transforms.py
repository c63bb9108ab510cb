"""Preprocessing of training samples (docs/method.md §3.2) and of evaluation inputs (docs/method.md §3.3).

The training augmentation uses PIL operations in the release's order, drawing its random
numbers from a caller-given ``random.Random`` (see ``spml.data.datasets`` for how that
generator is seeded). All maps of one sample must already have the RGB image's size.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageEnhance

from spml.normalization import normalize_rgb

CROP_BORDER = 30
ROTATION_PROBABILITY = 0.2
MAX_ROTATION_DEGREES = 15
# (enhancer, randint range of the factor in tenths), applied to the RGB image in this order.
COLOR_ENHANCEMENTS = (
    (ImageEnhance.Brightness, (5, 15)),
    (ImageEnhance.Contrast, (5, 15)),
    (ImageEnhance.Color, (0, 20)),
    (ImageEnhance.Sharpness, (0, 30)),
)
# Scribble label -> grey level while augmenting: 0 (background) -> 0, 1 (foreground) -> 255,
# 2 (unknown) -> 128; thresholds at 1/3 and 2/3 undo it after interpolation.
SCRIBBLE_GREY = np.array([0, 255, 128], dtype=np.uint8)


def _tensor(array: np.ndarray | Image.Image) -> torch.Tensor:
    """A tensor owning a writable copy of an array or PIL image."""
    return torch.from_numpy(np.array(array))


def rgb_tensor(rgb_u8: np.ndarray | Image.Image) -> torch.Tensor:
    """HxWx3 uint8 -> [3,H,W] float32, ``(x/255 - mean)/std`` with the ImageNet statistics."""
    return normalize_rgb(_tensor(rgb_u8).permute(2, 0, 1).float().div(255))


def depth_tensor(depth_u8: np.ndarray | Image.Image) -> torch.Tensor:
    """HxW uint8 -> [3,H,W] float32 in [0, 1], the grey depth replicated (not normalised)."""
    return _tensor(depth_u8).float().div(255).expand(3, -1, -1).contiguous()


def resize_nearest(image_u8: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size``x``size`` with PIL's nearest neighbour, as the release does."""
    return np.asarray(Image.fromarray(image_u8).resize((size, size), Image.NEAREST))


def eval_inputs(rgb_u8: np.ndarray, depth_u8: np.ndarray, size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/method.md §3.3: nearest resize to ``size``; returns (image [3,s,s] normalised, depth [3,s,s] /255)."""
    return rgb_tensor(resize_nearest(rgb_u8, size)), depth_tensor(resize_nearest(depth_u8, size))


def _augment(rgb: Image.Image, maps: list[Image.Image], rng: random.Random,
             crop_size: int) -> tuple[Image.Image, list[Image.Image]]:
    """docs/method.md §3.2 steps 2-6 on the RGB image and the maps that follow its geometry."""
    images = [rgb, *maps]
    if rng.randint(0, 1) == 1:
        images = [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in images]
    width, height = images[0].size
    crop_width = rng.randint(width - CROP_BORDER, width)
    crop_height = rng.randint(height - CROP_BORDER, height)
    box = ((width - crop_width) >> 1, (height - crop_height) >> 1,
           (width + crop_width) >> 1, (height + crop_height) >> 1)
    images = [image.crop(box) for image in images]
    if rng.random() > 1 - ROTATION_PROBABILITY:
        angle = rng.randint(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
        images = [image.rotate(angle, Image.BICUBIC) for image in images]
    rgb, *maps = images
    for enhancer, (low, high) in COLOR_ENHANCEMENTS:
        rgb = enhancer(rgb).enhance(rng.randint(low, high) / 10)
    resize = (crop_size, crop_size)
    return rgb.resize(resize, Image.NEAREST), [image.resize(resize, Image.NEAREST) for image in maps]


def train_sample(rgb_u8: np.ndarray, depth_u8: np.ndarray, scribble: np.ndarray, hed_u8: np.ndarray,
                 contour_u8: np.ndarray, rng: random.Random, crop_size: int = 224) -> dict[str, torch.Tensor]:
    """docs/method.md §3.2 on one sample of equal-sized maps; ``scribble`` holds labels 0/1/2.

    Returns ``image``, ``depth`` ([3,c,c] float32), ``semantic_label``, ``instance_label``
    ([c,c] int64) and ``contour_sum_label`` ([c,c] float32 in [0, 1]).
    The instance map is computed in int64: an edge value of 255 gives ``hed+1 = 256`` instead
    of wrapping to 0 in uint8 (the release's overflow, docs/method.md §7). Labels equal
    ``hed+1`` up to the uint8 quantisation (which truncates the smallest to 0 once
    ``max(hed+1) > 255``); corners filled by a rotation are 0, as in the release.
    """
    hed_plus_one = hed_u8.astype(np.int64) + 1
    instance_max = int(hed_plus_one.max())
    instance_grey = (hed_plus_one / instance_max * 255).astype(np.uint8)
    maps = [Image.fromarray(array) for array in (depth_u8, SCRIBBLE_GREY[scribble], instance_grey, contour_u8)]
    rgb, (depth, scribble_grey, instance_grey, contour) = _augment(Image.fromarray(rgb_u8), maps, rng, crop_size)
    scribble_level = _tensor(scribble_grey).float().div(255)
    semantic = torch.where(scribble_level >= 2 / 3, 1, torch.where(scribble_level >= 1 / 3, 2, 0))
    return {
        "image": rgb_tensor(rgb),
        "depth": depth_tensor(depth),
        "semantic_label": semantic.long(),
        "instance_label": torch.round(_tensor(instance_grey).float().div(255) * instance_max).long(),
        "contour_sum_label": _tensor(contour).float().div(255),
    }
