"""Ground truth read as the metric library's users read it.

The ground truth is read with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, exactly as
pysodmetrics' examples (and the outside checks) do, so the scores equal theirs bit for bit.
Maps and visualisations are written with :func:`spml.data.image_io.write_image`.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from spml.data.errors import DataError


def read_ground_truth(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 ground truth as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` gives it."""
    gt = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if gt is None:
        raise DataError(f"missing or unreadable ground-truth file: {path}")
    return gt

