"""Reading RGB, depth and grey label images as uint8 arrays (docs/method.md §3.1, §3.2), and writing them.

Depth files may be 16-bit (or 32-bit integer / float): they are min-max scaled per image
to 0..255 instead of being clipped by an 8-bit conversion, and the repair is logged once
per file. Any file that is missing or not an image raises :class:`DataError` naming it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.io import atomic_path
from spml.data.errors import DataError, log_repair_once

_WIDE_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _open(path: str | os.PathLike) -> Image.Image:
    """Open and decode an image fully, turning every failure into a one-line DataError."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise DataError(f"missing image file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image file: {path} ({error})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 grey (bilevel masks become 0/255)."""
    return np.asarray(_open(path).convert("L"), dtype=np.uint8)


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric map to uint8 0..255 (a constant map becomes 0)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 depth; wider-than-8-bit depth is min-max scaled per image (docs/method.md §3.1)."""
    image = _open(path)
    if image.mode in _WIDE_DEPTH_MODES:
        log_repair_once(path, f"{image.mode} depth min-max scaled to 0..255")
        return scale_to_uint8(np.asarray(image))
    return np.asarray(image.convert("L"), dtype=np.uint8)


def write_image(image: np.ndarray, path: str | os.PathLike, params: Sequence[int] = ()) -> None:
    """Write an HxW grey or HxWx3 RGB uint8 image, encoded by the file's extension (cv2
    ``params``, e.g. JPEG quality), atomically."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"{path}: expected an 8-bit grey or RGB image, got {image.dtype}{image.shape}")
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    encoded, buffer = cv2.imencode(os.path.splitext(path)[1], pixels, list(params))
    if not encoded:
        raise ValueError(f"{path}: encoding failed for an image of shape {image.shape}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.tobytes())
