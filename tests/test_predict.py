"""pyscripts/inference/predict.py on generated RGB-D pairs of any size, a broken file included."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch


SIZES = {"wide": (60, 100), "tall": (90, 50)}  # stem -> (height, width)


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, Path]:
    """Folders ``rgb/`` and ``depth/``: two good pairs, one with a broken depth, one unpaired RGB."""
    rng = np.random.default_rng(0)
    rgb_dir, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for stem, (height, width) in SIZES.items():
        cv2.imwrite(str(rgb_dir / f"{stem}.jpg"), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        cv2.imwrite(str(depth_dir / f"{stem}.png"), rng.integers(0, 256, (height, width), dtype=np.uint8))
    cv2.imwrite(str(rgb_dir / "broken.jpg"), np.zeros((40, 40, 3), np.uint8))
    (depth_dir / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(rgb_dir / "lonely.jpg"), np.zeros((40, 40, 3), np.uint8))
    return rgb_dir, depth_dir


def _predict(repo_root: Path, rgb: Path, depth: Path, out: Path, checkpoint: Path, *extra: str):
    command = [sys.executable, "pyscripts/inference/predict.py", "--rgb", str(rgb), "--depth", str(depth),
               "--out", str(out), "--checkpoint", str(checkpoint), "--device", "cpu", *extra]
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)


def test_folders_give_maps_at_input_size_and_list_the_bad_files(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = pairs
    process = _predict(repo_root, rgb_dir, depth_dir, tmp_path / "out", deterministic_checkpoint, "--featvis")
    assert process.returncode == 1
    assert "broken.png" in process.stderr and "lonely.jpg" in process.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["tall.png", "wide.png"]
    for stem, size in SIZES.items():
        saliency = cv2.imread(str(tmp_path / "out" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert saliency.dtype == np.uint8 and saliency.shape == size
        assert cv2.imread(str(tmp_path / "out/featvis" / f"{stem}.png")).shape == (224, 224, 3)


def test_one_pair_of_files(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = pairs
    process = _predict(
        repo_root, rgb_dir / "wide.jpg", depth_dir / "wide.png", tmp_path / "out", deterministic_checkpoint
    )
    assert process.returncode == 0, process.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["wide.png"]
    assert cv2.imread(str(tmp_path / "out/wide.png"), cv2.IMREAD_GRAYSCALE).shape == SIZES["wide"]


def test_a_checkpoint_that_does_not_fit_is_rejected_naming_the_entry(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    state = torch.load(deterministic_checkpoint, map_location="cpu")
    entry = sorted(state["embedding_model"])[-1]
    del state["embedding_model"][entry]
    torch.save(state, tmp_path / "bad.pth")
    rgb_dir, depth_dir = pairs
    process = _predict(repo_root, rgb_dir, depth_dir, tmp_path / "out", tmp_path / "bad.pth")
    assert process.returncode == 2
    assert entry in process.stderr and "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1
