"""Datasets of scribble-annotated training samples and of RGB-D test images (docs/method.md §3).

Randomness of the training augmentation: each :class:`ScribbleTrainDataset` owns a
``random.Random`` seeded with its ``seed``. In the main process (``num_workers=0``) it is
one stream over the whole run. With DataLoader workers, pass ``worker_init_fn=seed_worker``:
every worker re-seeds its copy of the dataset from ``(seed, torch worker seed)``; the torch
worker seed is drawn by the DataLoader from its ``generator`` (or the global torch RNG) at
each epoch, so a run with the same seeds draws the same augmentations, and epochs differ.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate, get_worker_info

from network.sfnet import INPUT_SIZE
from spml.data.errors import DataError, collect_repairs, log_repair_once
from spml.data.image_io import match_size, read_depth, read_gray, read_rgb, read_scribble
from spml.data.lists import TestSample, TrainSample
from spml.data.transforms import eval_inputs, train_sample

class ScribbleTrainDataset(Dataset):
    """Training samples after docs/method.md §3.2; items are dicts of ``image``, ``depth``,
    ``semantic_label``, ``instance_label``, ``contour_sum_label`` and ``name`` (the RGB stem)."""

    def __init__(self, samples: Sequence[TrainSample], crop_size: int = INPUT_SIZE, seed: int = 0) -> None:
        if not samples:
            raise DataError("ScribbleTrainDataset: no training samples")
        self.samples = list(samples)
        self.crop_size = crop_size
        self.seed = seed
        self._rng = random.Random(seed)

    def reseed(self, stream: int) -> None:
        """Restart the augmentation stream from ``(seed, stream)``: :func:`seed_worker` passes the
        worker's torch seed; a caller may also pass a per-(epoch, index) number."""
        self._rng.seed(f"{self.seed}/{stream}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sample = self.samples[index]
        rgb = read_rgb(sample.rgb)
        height, width = rgb.shape[:2]
        depth = match_size(read_depth(sample.depth), height, width, Image.BILINEAR, sample.depth)
        scribble = match_size(read_scribble(sample.scribble), height, width, Image.NEAREST, sample.scribble)
        hed = match_size(read_gray(sample.hed), height, width, Image.NEAREST, sample.hed)
        contour = match_size(read_gray(sample.contour), height, width, Image.NEAREST, sample.contour)
        item: dict[str, torch.Tensor | str] = dict(
            train_sample(rgb, depth, scribble, hed, contour, self._rng, self.crop_size))
        item["name"] = sample.rgb.stem
        return item


class RGBDTestDataset(Dataset):
    """Test images after docs/method.md §3.3, for the test score and for predictions.

    Items are dicts of ``image``, ``depth`` (network inputs of ``size``), ``name`` (RGB stem),
    ``index`` (position in ``samples``, whose ``gt`` keeps the original resolution), ``height``
    and ``width`` (of the RGB image) and ``repairs``: the repairs made while reading, one
    ``path<TAB>repair`` per line, for the main process to log (:func:`log_item_repairs`), so
    that loader processes do not write into its progress bar. With ``keep_errors`` an
    unreadable pair gives ``{"index", "error"}`` instead of raising; batch such items with
    :func:`collate_test_items`.
    """

    def __init__(self, samples: Sequence[TestSample], size: int = INPUT_SIZE, keep_errors: bool = False) -> None:
        if not samples:
            raise DataError("RGBDTestDataset: no test samples")
        self.samples = list(samples)
        self.size = size
        self.keep_errors = keep_errors

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | int]:
        sample = self.samples[index]
        with collect_repairs() as repairs:
            try:
                rgb, depth = read_rgb(sample.rgb), read_depth(sample.depth)
            except DataError as error:
                if self.keep_errors:
                    return {"index": index, "error": str(error)}
                raise
            height, width = rgb.shape[:2]
            if depth.shape != (height, width):
                log_repair_once(sample.depth, f"size {depth.shape[1]}x{depth.shape[0]} differs from the RGB size "
                                              f"{width}x{height}; both are resized to {self.size}x{self.size}")
            image, depth_input = eval_inputs(rgb, depth, self.size)
        return {"image": image, "depth": depth_input, "name": sample.rgb.stem, "index": index,
                "height": height, "width": width, "repairs": "\n".join(f"{path}\t{text}" for path, text in repairs)}


def collate_test_items(items: list[dict]) -> tuple[dict | None, list[str]]:
    """Batch the readable items of :class:`RGBDTestDataset` (None if there are none) and
    return the errors of the others beside the batch."""
    readable = [item for item in items if "error" not in item]
    errors = [item["error"] for item in items if "error" in item]
    return (default_collate(readable) if readable else None), errors


def log_item_repairs(repairs: Sequence[str]) -> None:
    """Log (once per file) the ``repairs`` fields of a batch of :class:`RGBDTestDataset` items."""
    for lines in repairs:
        for line in filter(None, lines.split("\n")):
            path, text = line.split("\t", 1)
            log_repair_once(path, text)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random``, numpy and a training dataset's stream
    from the worker's torch seed."""
    info = get_worker_info()
    worker_seed = info.seed % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    if isinstance(info.dataset, ScribbleTrainDataset):
        info.dataset.reseed(worker_seed)
