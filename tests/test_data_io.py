"""spml.data.image_io and the scribble check: reading, 16-bit depth repair, bad files (docs/method.md §3.1)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from spml.data import DataError
from spml.data.datasets import read_scribble
from spml.data.image_io import read_depth, read_gray, read_rgb


def test_16bit_depth_is_min_max_scaled_not_clipped(shared_data_dir, caplog):
    path = sorted((shared_data_dir / "rgbd_samples" / "NLPR_raw16_noGT" / "depth").iterdir())[0]
    raw = np.asarray(Image.open(path)).astype(np.int64)
    assert raw.max() > 255, "fixture should hold 16-bit depth"
    with caplog.at_level(logging.WARNING, logger="spml.data"):
        depth = read_depth(path)
        read_depth(path)
    assert depth.dtype == np.uint8 and depth.shape == raw.shape
    assert depth[raw == raw.min()].max() == 0 and depth[raw == raw.max()].min() == 255
    # Order is kept: the nearer half of the raw values maps to the upper half of 0..255.
    middle = (raw.min() + raw.max()) / 2
    assert depth[raw > middle + 50].min() >= 128 > depth[raw < middle - 50].max()
    repairs = [record for record in caplog.records if str(path) in record.getMessage()]
    assert len(repairs) == 1, "the repair must be logged once per file"


def test_8bit_depth_and_bilevel_gt_are_read_unchanged(shared_data_dir):
    folder = shared_data_dir / "rgbd_samples" / "DES"
    depth_path = sorted((folder / "depth").iterdir())[0]
    assert np.array_equal(read_depth(depth_path), np.asarray(Image.open(depth_path).convert("L")))
    gt = read_gray(sorted((folder / "GT").iterdir())[0])
    assert gt.dtype == np.uint8 and set(np.unique(gt)) == {0, 255}
    rgb = read_rgb(sorted((folder / "RGB").iterdir())[0])
    assert rgb.dtype == np.uint8 and rgb.shape == gt.shape + (3,)


@pytest.mark.parametrize("reader", [read_rgb, read_depth, read_gray])
def test_unreadable_image_names_the_file(tmp_path, reader):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="broken.png"):
        reader(path)


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(DataError, match="absent.jpg"):
        read_rgb(tmp_path / "absent.jpg")


def test_scribble_values_other_than_0_1_2_raise_naming_the_file(tmp_path):
    path = tmp_path / "scribble.png"
    values = np.zeros((8, 8), np.uint8)
    values[2, 3] = 255
    Image.fromarray(values).save(path)
    with pytest.raises(DataError, match=r"scribble.png.*\[255\]"):
        read_scribble(path)
    Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8)).save(path)
    assert set(np.unique(read_scribble(path))) == {0, 1, 2}
