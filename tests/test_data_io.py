"""spml.data.image_io and the scribble check: reading, 16-bit depth repair, bad files (docs/method.md §3.1)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from spml.data import DataError
from spml.data.image_io import read_depth, read_gray, read_rgb, read_scribble


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


def test_float_depth_with_missing_values_is_named_not_scaled(tmp_path):
    depth = np.linspace(0.5, 4.0, 64, dtype=np.float32).reshape(8, 8)
    depth[0, 0] = np.nan
    path = tmp_path / "depth.tif"
    Image.fromarray(depth).save(path)
    with pytest.raises(DataError, match=rf"^unusable depth file: {path} \(1 of 64 values are NaN or infinite; "):
        read_depth(path)


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


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_huge_image_is_one_line_naming_its_size(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(15000, 12500))
    with pytest.raises(DataError) as caught:
        read_rgb(path)
    assert str(caught.value) == (f"image too large: {path} (15000x12500 pixels, over PIL's limit of 179 Mpixels "
                                 "against decompression bombs)")


def test_large_images_can_be_allowed(tmp_path, monkeypatch):
    from spml.data.image_io import allow_large_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(path)
    with pytest.raises(DataError, match="image too large"):
        read_gray(path)
    allow_large_images()
    assert read_gray(path).shape == (20, 20)


def test_the_test_dataset_keeps_errors_and_hands_repairs_to_the_main_process(tmp_path, caplog):
    import torch
    from torch.utils.data import DataLoader

    from spml.data.datasets import RGBDTestDataset, collate_test_items, log_item_repairs
    from spml.data.lists import TestSample

    for name, size in (("a", (30, 40)), ("b", (15, 20))):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / f"{name}.jpg")
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "c.png").write_bytes(b"broken")
    samples = [TestSample(tmp_path / f"{name}.jpg", tmp_path / f"{name}.png", None) for name in ("a", "b")]
    samples.append(TestSample(tmp_path / "a.jpg", tmp_path / "c.png", None))
    dataset = RGBDTestDataset(samples, keep_errors=True)
    with caplog.at_level(logging.WARNING, logger="spml.data"):
        batch, errors = next(iter(DataLoader(dataset, batch_size=3, num_workers=1, collate_fn=collate_test_items)))
        assert not caplog.records  # the worker did not log
        log_item_repairs(batch["repairs"])
        log_item_repairs(batch["repairs"])
    assert batch["index"].tolist() == [0, 1] and batch["height"].tolist() == [30, 30]
    assert batch["image"].shape == (2, 3, 224, 224) and batch["image"].dtype == torch.float32
    assert len(errors) == 1 and "c.png" in errors[0]
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'b.png'}: size 20x15 differs from the RGB size 40x30; both are resized to 224x224"]
    with pytest.raises(DataError, match="c.png"):
        RGBDTestDataset(samples)[2]
