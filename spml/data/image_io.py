"""Reading RGB, depth, scribble and grey label images as uint8 arrays (docs/method.md §3.1, §3.2), and writing them.

Depth files may be 16-bit (or 32-bit integer / float): they are min-max scaled per image
to 0..255 instead of being clipped by an 8-bit conversion; maps whose size differs from
the RGB image are resized to it. Both repairs are logged once per file. Any file that is
missing, not an image, or larger than PIL's decompression-bomb limit (unless
:func:`allow_large_images` was called) raises :class:`DataError` naming it.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.io import atomic_path
from spml.data.errors import DataError, log_repair_once

_WIDE_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
SCRIBBLE_LABELS = (0, 1, 2)


def allow_large_images() -> None:
    """Read images of any size (PIL refuses those over about 179 Mpixels as decompression bombs)."""
    Image.MAX_IMAGE_PIXELS = None


def _open(path: str | os.PathLike) -> Image.Image:
    """Open and decode an image fully, turning every failure into a one-line DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image
    except FileNotFoundError:
        raise DataError(f"missing image file: {path}") from None
    except Image.DecompressionBombError:
        raise DataError(f"image too large: {path} ({_pixel_count(path)}, over PIL's limit of "
                        f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpixels against decompression bombs)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"unreadable image file: {path} ({reason})") from None


def _pixel_count(path: str | os.PathLike) -> str:
    """``W x H pixels`` of an image too large to open normally, from its header."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError):
        return "size unknown"
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return f"{width}x{height} pixels"


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 grey (bilevel masks become 0/255)."""
    return np.asarray(_open(path).convert("L"), dtype=np.uint8)


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric map to uint8 0..255 (a constant map becomes 0). NaN or infinite
    values (missing depth of some sensors) raise ValueError: which value stands for them is the
    caller's choice."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{values.size - int(finite.sum())} of {values.size} values are NaN or infinite; "
                         f"replace them with a depth value first (e.g. numpy.nan_to_num)")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def depth_to_uint8(image: Image.Image) -> np.ndarray:
    """HxW uint8 depth of an opened image; wider-than-8-bit depth is min-max scaled per image (docs/method.md §3.1)
    with :func:`scale_to_uint8`, which refuses NaN or infinite values (ValueError)."""
    if image.mode in _WIDE_DEPTH_MODES:
        return scale_to_uint8(np.asarray(image))
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 depth read with :func:`depth_to_uint8`; the scaling of wide depth is logged once per file.
    A float depth file with NaN or infinite values raises DataError naming it."""
    image = _open(path)
    if image.mode in _WIDE_DEPTH_MODES:
        log_repair_once(path, f"{image.mode} depth min-max scaled to 0..255")
    try:
        return depth_to_uint8(image)
    except ValueError as error:
        raise DataError(f"unusable depth file: {path} ({error})") from None


def read_scribble(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 scribble labels; any value other than 0/1/2 raises DataError naming the file."""
    scribble = read_gray(path)
    bad_values = np.setdiff1d(np.unique(scribble), SCRIBBLE_LABELS)
    if bad_values.size:
        raise DataError(f"scribble file {path} has values other than 0/1/2: {bad_values[:10].tolist()}")
    return scribble


def size_repair(shape: tuple[int, ...], height: int, width: int) -> str | None:
    """The repair a map of ``shape`` needs to match an RGB image of ``height`` x ``width``, or None."""
    if tuple(shape[:2]) == (height, width):
        return None
    return f"size {shape[1]}x{shape[0]} resized to the RGB size {width}x{height}"


def match_size(image_u8: np.ndarray, height: int, width: int, resample: Image.Resampling,
               path: str | os.PathLike) -> np.ndarray:
    """Resize a map to the RGB image's size (docs/method.md §3.1 repair, logged once per file)."""
    repair = size_repair(image_u8.shape, height, width)
    if repair is None:
        return image_u8
    log_repair_once(path, repair)
    return np.asarray(Image.fromarray(image_u8).resize((width, height), resample))


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
