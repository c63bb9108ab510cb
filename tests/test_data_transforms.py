"""spml.data.transforms and the size repair of the training dataset (docs/method.md §3.1-§3.3)."""
from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image

from spml.data.datasets import ScribbleTrainDataset
from spml.data.lists import TrainSample
from spml.data.transforms import eval_inputs, train_sample
from spml.normalization import IMAGENET_MEAN, IMAGENET_STD


class ScriptedRandom(random.Random):
    """Returns the given integers and floats in order instead of random draws."""

    def __init__(self, ints: list[int], floats: list[float]) -> None:
        super().__init__(0)
        self.ints, self.floats = list(ints), list(floats)

    def randint(self, low: int, high: int) -> int:
        value = self.ints.pop(0)
        assert low <= value <= high
        return value

    def random(self) -> float:
        return self.floats.pop(0)


def identity_script(size: int, flip: int = 0, rotate: bool = False) -> ScriptedRandom:
    """Draws for: flip, crop width/height = full size, [angle], four enhancement factors of 1.0."""
    angle = [15] if rotate else []
    return ScriptedRandom([flip, size, size, *angle, 10, 10, 10, 10], [0.9 if rotate else 0.5])


@pytest.fixture
def sample_arrays():
    generator = np.random.default_rng(0)
    rgb = generator.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    depth = generator.integers(0, 256, (64, 64), dtype=np.uint8)
    scribble = generator.integers(0, 3, (64, 64), dtype=np.uint8)
    hed = generator.integers(0, 256, (64, 64), dtype=np.uint8)
    hed[0, 0] = 255  # the release's uint8 overflow case (docs/method.md §7)
    contour = generator.integers(0, 256, (64, 64), dtype=np.uint8)
    return rgb, depth, scribble, hed, contour


def test_identity_draws_keep_every_map(sample_arrays):
    rgb, depth, scribble, hed, contour = sample_arrays
    item = train_sample(*sample_arrays, identity_script(64), crop_size=64)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(item["image"] * std + mean, torch.from_numpy(rgb).permute(2, 0, 1) / 255, atol=1e-6)
    assert torch.equal(item["depth"], torch.from_numpy(depth).float().div(255).expand(3, -1, -1))
    assert torch.equal(item["semantic_label"], torch.from_numpy(scribble).long())
    assert torch.equal(item["contour_sum_label"], torch.from_numpy(contour).float() / 255)
    # Instance recovery round(v/255*max(hed+1)) is exact up to the uint8 quantisation step,
    # and hed = 255 gives 256 (computed in int64), not a wrapped 0.
    instance = item["instance_label"]
    assert instance.dtype == torch.int64 and instance.max() == 256
    assert (instance - torch.from_numpy(hed).long() - 1).abs().max() <= 1
    dim_hed = hed // 2  # max(hed+1) = 128 < 255: every edge value keeps a label >= 1
    dim_instance = train_sample(rgb, depth, scribble, dim_hed, contour, identity_script(64), crop_size=64)["instance_label"]
    assert torch.equal(dim_instance, torch.from_numpy(dim_hed).long() + 1)


def test_flip_mirrors_all_maps(sample_arrays):
    plain = train_sample(*sample_arrays, identity_script(64), crop_size=64)
    flipped = train_sample(*sample_arrays, identity_script(64, flip=1), crop_size=64)
    for key in ("image", "depth", "semantic_label", "instance_label", "contour_sum_label"):
        assert torch.equal(flipped[key], plain[key].flip(-1)), key


def test_random_augmentation_shapes_dtypes_and_value_sets(sample_arrays):
    for seed in range(6):  # some of these draws rotate (p = 0.2), all crop and enhance
        item = train_sample(*sample_arrays, random.Random(seed), crop_size=48)
        assert item["image"].shape == item["depth"].shape == (3, 48, 48)
        assert item["image"].dtype == item["depth"].dtype == item["contour_sum_label"].dtype == torch.float32
        assert item["semantic_label"].shape == item["instance_label"].shape == (48, 48)
        assert set(item["semantic_label"].unique().tolist()) <= {0, 1, 2}
        assert 0 <= item["instance_label"].min() and item["instance_label"].max() <= 256
        assert 0 <= item["contour_sum_label"].min() and item["contour_sum_label"].max() <= 1
        assert 0 <= item["depth"].min() and item["depth"].max() <= 1


def test_rotation_keeps_scribble_labels_valid(sample_arrays):
    rgb, depth, _, hed, contour = sample_arrays
    scribble = np.full((64, 64), 2, np.uint8)
    scribble[20:40, 20:40] = 1
    item = train_sample(rgb, depth, scribble, hed, contour, identity_script(64, rotate=True), crop_size=64)
    labels = item["semantic_label"]
    assert set(labels.unique().tolist()) == {0, 1, 2}  # 0 only where the rotation filled the corners
    assert labels[30, 30] == 1 and labels[32, 5] == 2 and labels[0, 0] == 0


def test_eval_inputs_resize_nearest_and_normalise():
    rgb = np.zeros((300, 250, 3), np.uint8)
    rgb[:150] = (255, 128, 0)
    depth = np.full((300, 250), 51, np.uint8)
    image, depth_input = eval_inputs(rgb, depth)
    assert image.shape == depth_input.shape == (3, 224, 224)
    assert image.dtype == depth_input.dtype == torch.float32
    expected_top = (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(image[:, 0, 0], expected_top)
    assert torch.allclose(image[:, -1, -1], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))
    assert len(image[0].unique()) == 2  # nearest neighbour: no blended values
    assert torch.all(depth_input == 51 / 255)


def test_dataset_resizes_mismatched_maps_to_rgb_size(tmp_path, caplog):
    sizes = {"rgb": (80, 60), "depth": (40, 30), "scribble": (40, 30), "hed": (80, 60), "contour": (160, 120)}
    paths = {}
    for role, (width, height) in sizes.items():
        array = np.full((height, width, 3) if role == "rgb" else (height, width), 1, np.uint8)
        paths[role] = tmp_path / f"{role}.png"
        Image.fromarray(array).save(paths[role])
    dataset = ScribbleTrainDataset([TrainSample(**paths)], crop_size=32)
    with caplog.at_level(logging.WARNING, logger="spml.data"):
        item = dataset[0]
        dataset[0]
    assert item["semantic_label"].shape == (32, 32) and item["name"] == "rgb"
    repaired = sorted(record.getMessage().split(":")[0] for record in caplog.records)
    assert repaired == sorted(str(paths[role]) for role in ("depth", "scribble", "contour"))
