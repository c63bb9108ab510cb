"""Files of the test score: ground truth read as the metric library's users read it, PNG out.

The ground truth is read with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, exactly as
pysodmetrics' examples (and the outside checks) do, so the scores equal theirs bit for bit;
maps and visualisations are written as PNG through :func:`lib.io.atomic_path`.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.io import atomic_path
from spml.data.errors import DataError


def read_ground_truth(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 ground truth as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` gives it."""
    gt = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if gt is None:
        raise DataError(f"missing or unreadable ground-truth file: {path}")
    return gt


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"unreadable image file: {path} ({error})") from None
    return height, width


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an HxW grey or HxWx3 RGB uint8 image as PNG, atomically."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"{path}: expected an 8-bit grey or RGB image, got {image.dtype}{image.shape}")
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    encoded, buffer = cv2.imencode(".png", pixels)
    if not encoded:
        raise ValueError(f"{path}: PNG encoding failed for an image of shape {image.shape}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.tobytes())
