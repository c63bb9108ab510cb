"""The synthetic data generator and the datasets on its output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spml.data.datasets import RGBDTestDataset, ScribbleTrainDataset, seed_worker
from spml.data.image_io import read_depth, read_gray, read_rgb
from spml.data.lists import default_train_list, read_train_list, scan_test_sets
from lib.io import WriteError
from pyscripts.tools import make_synthetic_data as generator
from spml.data.synthetic import make_scene

NUM_TRAIN, NUM_TEST = 3, 2


def generate(repo_root: Path, root: Path, num_train: int, seed: int) -> Path:
    subprocess.run([sys.executable, "pyscripts/tools/make_synthetic_data.py", "--root", str(root),
                    "--num-train", str(num_train), "--num-test", str(NUM_TEST), "--seed", str(seed)],
                   cwd=repo_root, check=True, capture_output=True)
    return root


def file_bytes(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def synthetic_root(repo_root, tmp_path_factory) -> Path:
    return generate(repo_root, tmp_path_factory.mktemp("synthetic"), NUM_TRAIN, seed=0)


@pytest.mark.slow  # the generator runs as a subprocess
def test_release_layout_and_lists(synthetic_root):
    sod = synthetic_root / "sod"
    expected = {"RGB_Train": ".jpg", "Depth_Train": ".bmp", "scribble_tip": ".png", "hed": ".jpg", "contours_sum": ".png"}
    for folder, extension in expected.items():
        assert sorted(path.suffix for path in (sod / folder).iterdir()) == [extension] * NUM_TRAIN, folder
    test_sets = sorted(path.name for path in (sod / "Test").iterdir())
    assert len(test_sets) == 2
    for set_name in test_sets:
        for folder, extension in {"RGB": ".jpg", "depth": ".bmp", "GT": ".png"}.items():
            assert sorted(path.suffix for path in (sod / "Test" / set_name / folder).iterdir()) == [extension] * NUM_TEST
    assert {name: len(samples) for name, samples in scan_test_sets(synthetic_root).items()} == {
        name: NUM_TEST for name in test_sets}
    assert not list((synthetic_root / "lists").glob("test_*")), "test sets are scanned, not listed"
    assert len(read_train_list(default_train_list(synthetic_root), synthetic_root)) == NUM_TRAIN


@pytest.mark.slow  # the generator runs as a subprocess
def test_scenes_are_learnable_and_annotated(synthetic_root):
    sizes = set()
    for sample in read_train_list(default_train_list(synthetic_root), synthetic_root):
        scribble = read_gray(sample.scribble)
        assert set(np.unique(scribble)) == {0, 1, 2}
        assert read_gray(sample.hed).max() > 0 and read_gray(sample.contour).max() > 0
    for set_name in ("SYN-A", "SYN-B"):
        for sample in scan_test_sets(synthetic_root)[set_name]:
            gt = read_gray(sample.gt) > 127
            rgb, depth = read_rgb(sample.rgb).astype(float), read_depth(sample.depth).astype(float)
            sizes.add(gt.shape)
            assert 0 < gt.mean() < 0.8
            assert depth[gt].mean() > depth[~gt].mean() + 60, "objects must be nearer (brighter)"
            saturation = rgb.max(axis=2) - rgb.min(axis=2)
            assert saturation[gt].mean() > saturation[~gt].mean() + 60, "objects must stand out in colour"
    assert all(240 <= side <= 320 for size in sizes for side in size) and len(sizes) > 1


@pytest.mark.slow  # the generator runs as a subprocess
def test_same_seed_gives_identical_bytes_and_other_seed_differs(repo_root, synthetic_root, tmp_path):
    assert file_bytes(generate(repo_root, tmp_path / "again", NUM_TRAIN, seed=0)) == file_bytes(synthetic_root)
    scene, other = (make_scene(np.random.default_rng([seed, 0, 0])) for seed in (0, 1))
    assert scene.rgb.shape != other.rgb.shape or not np.array_equal(scene.rgb, other.rgb)


@pytest.mark.slow  # the generator runs as a subprocess
def test_train_dataset_is_deterministic_per_seed(synthetic_root):
    samples = read_train_list(default_train_list(synthetic_root), synthetic_root)
    first, same, other = (ScribbleTrainDataset(samples, seed=seed)[1] for seed in (0, 0, 1))
    assert first["image"].shape == (3, 224, 224) and first["name"] == samples[1].rgb.stem
    for key in ("image", "depth", "semantic_label", "instance_label", "contour_sum_label"):
        assert torch.equal(first[key], same[key]), key
    assert not torch.equal(first["image"], other["image"])


@pytest.mark.slow  # the generator runs as a subprocess
def test_worker_augmentation_follows_the_loader_seed(synthetic_root):
    dataset = ScribbleTrainDataset(read_train_list(default_train_list(synthetic_root), synthetic_root), crop_size=64)

    def first_batch(loader_seed: int) -> torch.Tensor:
        loader = DataLoader(dataset, batch_size=NUM_TRAIN, num_workers=1, worker_init_fn=seed_worker,
                            generator=torch.Generator().manual_seed(loader_seed))
        return next(iter(loader))["image"]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


@pytest.mark.slow  # the generator runs as a subprocess
def test_eval_dataloader_batches(synthetic_root):
    samples = scan_test_sets(synthetic_root)["SYN-A"]
    batch = next(iter(DataLoader(RGBDTestDataset(samples), batch_size=2, num_workers=0)))
    assert batch["image"].shape == batch["depth"].shape == (2, 3, 224, 224)
    assert batch["index"].tolist() == [0, 1]
    assert batch["name"] == [sample.rgb.stem for sample in samples[:2]]
    assert 0 <= batch["depth"].min() and batch["depth"].max() <= 1


@pytest.mark.parametrize("root, message", [
    ("{tmp}/made", "--root {tmp}/made: not empty (choose a new or empty folder)"),
    ("{tmp}/file", "--root {tmp}/file: exists and is not a folder"),
    ("{tmp}/file/data", "--root {tmp}/file/data: cannot be created: {tmp}/file is not a folder"),
])
def test_a_root_that_holds_files_or_is_no_folder_is_refused_with_one_line(root, message, tmp_path, capsys):
    (tmp_path / "made" / "sod" / "RGB_Train").mkdir(parents=True)  # left by an earlier run with more scenes
    (tmp_path / "made" / "sod" / "RGB_Train" / "syn_00007.jpg").write_bytes(b"old scene")
    (tmp_path / "file").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as stopped:
        generator.main(["--root", root.format(tmp=tmp_path), "--num-train", "1", "--num-test", "1"])
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(f"error: {message.format(tmp=tmp_path)} (see --help)")
    assert sorted(tmp_path.rglob("*")) == before


def test_an_empty_root_is_filled_and_a_failed_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    assert generator.main(["--root", str(root), "--num-train", "1", "--num-test", "1"]) == 0
    assert len(read_train_list(default_train_list(root), root)) == 1
    write_image, written = generator.write_image, []

    def fill_the_disk_at_the_fourth_file(image, path, params):
        if len(written) == 3:
            raise WriteError(path, OSError(28, "No space left on device"))
        write_image(image, path, params)
        written.append(path)

    monkeypatch.setattr(generator, "write_image", fill_the_disk_at_the_fourth_file)
    (tmp_path / "empty").mkdir()
    for new_root in (tmp_path / "empty", tmp_path / "new"):
        written.clear()
        assert generator.main(["--root", str(new_root), "--num-train", "2", "--num-test", "1"]) == 1
        assert capsys.readouterr().err.endswith(  # after the progress bars
            f"\nerror: cannot write {new_root}/sod/hed/syn_00000.jpg: No space left on device\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "empty"] and not any((tmp_path / "empty").iterdir())


def test_ctrl_c_leaves_nothing(tmp_path, monkeypatch):
    write_image = generator.write_image

    def ctrl_c_at_the_second_file(image, path, params):
        if list(tmp_path.rglob("*.jpg")):
            raise KeyboardInterrupt
        write_image(image, path, params)

    monkeypatch.setattr(generator, "write_image", ctrl_c_at_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        generator.main(["--root", str(tmp_path / "new"), "--num-train", "2", "--num-test", "1"])
    assert not list(tmp_path.iterdir())
