"""hubconf.py through torch.hub (source="local"): the network against the forward fixture, the
release checkpoint lookup, and the preprocessing/predict helpers against the data pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hubconf
from network import save_checkpoint
from reference_tables import float32_tolerances
from spml.data.image_io import read_depth, read_rgb
from spml.data.transforms import eval_inputs

FLOAT32_MARGIN = 2.0
"""Allowed multiple of the reference's own float32-vs-float64 difference (as tests/test_network_fixture.py)."""


@pytest.fixture(scope="module")
def hub_model(repo_root: Path, deterministic_checkpoint: Path) -> torch.nn.Module:
    return torch.hub.load(str(repo_root), "dhfr", source="local", checkpoint=deterministic_checkpoint)


def test_entry_points_are_the_public_callables_and_dependencies_are_declared() -> None:
    # torch.hub.list's rule (it only lists GitHub repositories): public callables of hubconf.
    entries = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert entries == {"dhfr", "dhfr_preprocess", "predict"}
    assert {"torch", "timm", "numpy", "PIL"} <= set(hubconf.dependencies)


def test_hub_model_is_in_eval_mode_and_matches_the_forward_fixture(hub_model, reference_dir: Path) -> None:
    assert not hub_model.training and next(hub_model.parameters()).device.type == "cpu"
    with np.load(reference_dir / "forward_eval.npz") as data:
        reference = dict(data)
    tolerances = float32_tolerances(reference_dir / "README.md")
    with torch.no_grad():
        outputs = hub_model(torch.from_numpy(reference["image"]), torch.from_numpy(reference["depth"]))
    for name in ("div1", "embedding"):
        difference = np.abs(outputs[name].double().numpy() - reference[name]).max()
        assert difference <= FLOAT32_MARGIN * tolerances[name], f"{name}: max |diff| {difference:.3g}"


def test_release_checkpoint_is_found_where_the_download_puts_it(monkeypatch, tmp_path: Path,
                                                               deterministic_checkpoint: Path) -> None:
    monkeypatch.setattr(hubconf, "REPO_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="bash bashscripts/download_snapshots.sh model"):
        hubconf.dhfr("release")
    path = hubconf._release_checkpoint()
    assert path.is_relative_to(tmp_path / "snapshots") and path.name == "model-109249.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(deterministic_checkpoint.read_bytes())
    model = hubconf.dhfr("release")
    expected = torch.load(deterministic_checkpoint, weights_only=True)["embedding_model"]
    assert all(torch.equal(value, expected[name]) for name, value in model.state_dict().items())


def test_random_network_and_checkpoint_round_trip(tmp_path: Path) -> None:
    model = hubconf.dhfr()
    assert not model.training
    save_checkpoint(model, tmp_path / "model.pth")
    again = hubconf.dhfr(tmp_path / "model.pth", map_location="cpu")
    assert all(torch.equal(value, again.state_dict()[name]) for name, value in model.state_dict().items())


@pytest.mark.parametrize("rgb_file, depth_file", [
    ("DES/RGB/RGBD_data_1.jpg", "DES/depth/RGBD_data_1.bmp"),                    # 8-bit depth, 640x480
    ("NLPR_raw16_noGT/RGB/1_02-02-40.jpg", "NLPR_raw16_noGT/depth/1_02-02-40.png"),  # 16-bit depth, portrait
])
def test_preprocess_of_pil_and_numpy_images_equals_the_data_pipeline(shared_data_dir: Path, rgb_file: str,
                                                                     depth_file: str) -> None:
    samples = shared_data_dir / "rgbd_samples"
    rgb_image, depth_image = Image.open(samples / rgb_file), Image.open(samples / depth_file)
    expected_image, expected_depth = eval_inputs(read_rgb(samples / rgb_file), read_depth(samples / depth_file))
    for rgb, depth in ((rgb_image, depth_image), (np.asarray(rgb_image), np.asarray(depth_image))):
        image, depth_input = hubconf.dhfr_preprocess(rgb, depth)
        assert image.shape == depth_input.shape == (1, 3, 224, 224)
        assert torch.equal(image[0], expected_image) and torch.equal(depth_input[0], expected_depth)


def test_predict_gives_div1_at_the_input_size_or_the_image_size(hub_model, shared_data_dir: Path) -> None:
    des = shared_data_dir / "rgbd_samples/DES"
    rgb, depth = Image.open(des / "RGB/RGBD_data_1.jpg"), Image.open(des / "depth/RGBD_data_1.bmp")
    with torch.no_grad():
        expected = hub_model(*hubconf.dhfr_preprocess(rgb, depth))["div1"]
    saliency = hubconf.predict(hub_model, rgb, depth)
    assert saliency.shape == (224, 224) and saliency.dtype == np.float32
    np.testing.assert_allclose(saliency, expected[0, 0].numpy(), rtol=0, atol=1e-6)
    full = hubconf.predict(hub_model, np.asarray(rgb), np.asarray(depth), original_size=True)
    resized = torch.nn.functional.interpolate(expected, size=(480, 640), mode="bilinear", align_corners=False)
    assert full.shape == (480, 640)
    np.testing.assert_allclose(full, resized[0, 0].numpy(), rtol=0, atol=1e-6)


def test_preprocess_rejects_what_is_not_an_image() -> None:
    with pytest.raises(ValueError, match="rgb: expected an HxWx3 uint8 array"):
        hubconf.dhfr_preprocess(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="depth: expected an HxW array"):
        hubconf.dhfr_preprocess(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 2), np.uint16))


def test_preprocess_names_missing_depth_instead_of_scaling_it_to_garbage() -> None:
    depth = np.linspace(0.5, 4.0, 64, dtype=np.float32).reshape(8, 8)
    depth[2, 3], depth[5, 5] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"^depth: 2 of 64 values are NaN or infinite; replace them"):
        hubconf.dhfr_preprocess(np.zeros((8, 8, 3), np.uint8), depth)
    with pytest.raises(ValueError, match=r"^depth: 2 of 64 values are NaN or infinite"):
        hubconf.dhfr_preprocess(np.zeros((8, 8, 3), np.uint8), Image.fromarray(depth))
    filled = np.nan_to_num(depth, nan=4.0, posinf=4.0)
    image, depth_input = hubconf.dhfr_preprocess(np.zeros((8, 8, 3), np.uint8), filled)
    assert torch.isfinite(depth_input).all() and depth_input.shape == (1, 3, 224, 224)
