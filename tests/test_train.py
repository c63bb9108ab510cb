"""Training through the launcher on generated data (docs/method.md §4): a 3-iteration CPU run, the
checkpoint layout, TensorBoard output, bad input and a non-finite loss."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from network import build_model, load_checkpoint
from spml.config import load_config
from spml.data.lists import ensure_train_list

from training_runs import NUM_TRAIN, launch, load_train_script, make_dataset


def error_line(run: subprocess.CompletedProcess) -> str:
    """The single error line of a failed run (fails the test if there is a traceback or none)."""
    assert run.returncode != 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if "error" in line.lower() or "usage" in line.lower()]
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dataset(repo_root, tmp_path_factory) -> Path:
    return make_dataset(repo_root, tmp_path_factory.mktemp("train") / "data")


@pytest.fixture(scope="module")
def three_iterations(repo_root, dataset, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    snapshot_dir = tmp_path_factory.mktemp("snapshot")
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(snapshot_dir),
                 MAX_ITERATION="3", SNAPSHOT_STEP="2")
    assert run.returncode == 0, run.stderr
    return run, snapshot_dir


def test_checkpoints_at_the_snapshot_step_and_the_last_iteration_load_strictly(three_iterations):
    _, snapshot_dir = three_iterations
    stage = snapshot_dir / "stage1"
    assert sorted(path.name for path in stage.glob("model-*")) == [
        "model-1.pth", "model-1.state.pth", "model-2.pth", "model-2.state.pth"]
    assert not list(stage.glob(".*.tmp")), "atomic writes leave no temporary file"
    model = build_model()
    load_checkpoint(model, stage / "model-2.pth")
    first, last = (torch.load(stage / f"model-{i}.pth", weights_only=True)["embedding_model"] for i in (1, 2))
    assert any(not torch.equal(first[key], last[key]) for key in first), "the third step changed no weight"
    state = torch.load(stage / "model-2.state.pth", weights_only=True)
    assert state["iteration"] == 2
    assert {int(entry["step"]) for entry in state["optimizer"]["state"].values()} == {3}
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert len(state["memory_bank"]) == 2


def test_config_is_filled_from_the_environment(three_iterations, dataset):
    _, snapshot_dir = three_iterations
    config = load_config(snapshot_dir / "config.yaml")
    assert (config.train.max_iteration, config.train.batch_size, config.train.snapshot_step) == (3, 1, 2)
    assert (config.dataset.data_dir, config.train.snapshot_dir) == (str(dataset), str(snapshot_dir))
    assert config.train.pretrained == "none"


def test_missing_train_list_is_built_by_scanning(three_iterations, dataset):
    assert len((dataset / "lists" / "train.txt").read_text().split("\n")) == NUM_TRAIN + 1


def test_tensorboard_gets_the_losses_lr_and_image_strip(three_iterations):
    _, snapshot_dir = three_iterations
    [events] = (snapshot_dir / "stage1").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    for tag in ("train/loss", "train/sem_ann_loss", "train/img_sim_loss", "train/partedCE_loss", "train/ssc_loss",
                "train/smo_loss", "train/contour_loss", "train/accuracy", "train/lr"):
        assert [event.step for event in accumulator.Scalars(tag)] == [0, 1, 2], tag
    strip = accumulator.Images("train/strip")[0]
    assert (strip.width, strip.height) == (8 * 224, 224)


def test_progress_bar_shows_losses_and_lr(three_iterations):
    run, _ = three_iterations
    assert "3/3" in run.stderr and "lr=1.0e-04" in run.stderr and "loss=" in run.stderr


@pytest.mark.parametrize("args", [(), ("0", "1")])
def test_launcher_wants_exactly_one_argument(repo_root, args):
    assert error_line(launch(repo_root, *args)).startswith("usage:")


def test_launcher_rejects_a_bad_gpu_id(repo_root):
    assert "bad GPU_ID 'gpu'" in error_line(launch(repo_root, "gpu"))


def _append_short_line(root: Path) -> str:
    list_path = root / "lists" / "train.txt"
    list_path.write_text(list_path.read_text() + "sod/RGB_Train/a.jpg sod/Depth_Train/a.bmp\n")
    return f"train.txt:{NUM_TRAIN + 1}: expected 5 columns"


def _remove_a_listed_file(root: Path) -> str:
    victim = sorted((root / "sod" / "hed").iterdir())[1]
    victim.unlink()
    return f"missing file {victim}"


def _empty_list(root: Path) -> str:
    (root / "lists" / "train.txt").write_text("")
    return "list is empty"


def _bad_scribble(root: Path) -> str:
    for scribble in (root / "sod" / "scribble_tip").iterdir():
        Image.fromarray(np.full((64, 64), 7, np.uint8)).save(scribble)
    return "values other than 0/1/2"


@pytest.mark.parametrize("break_data", [_append_short_line, _remove_a_listed_file, _empty_list, _bad_scribble])
def test_bad_input_stops_with_one_line_naming_it(repo_root, dataset, tmp_path, break_data):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    ensure_train_list(root)
    expected = break_data(root)
    # One DataLoader worker: an error raised in a worker must still come out as one line.
    run = launch(repo_root, "cpu", DATAROOT=str(root), SNAPSHOT_DIR=str(tmp_path / "snapshot"),
                 MAX_ITERATION="1", NUM_WORKERS="1")
    assert expected in error_line(run)


def test_missing_imagenet_weights_say_how_to_download_them(repo_root, dataset, tmp_path):
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(tmp_path),
                 PRETRAINED=str(tmp_path / "absent.pth"))
    line = error_line(run)
    assert "absent.pth" in line and "bash bashscripts/download_snapshots.sh localvit" in line


def test_non_finite_loss_stops_naming_the_iteration_and_the_loss(repo_root, dataset, tmp_path, monkeypatch, capsys):
    train_script = load_train_script(repo_root)

    class NaNContour(train_script.DHFRObjective):
        def forward(self, outputs, labels, image, memory=None):
            result = super().forward(outputs, labels, image, memory)
            result["contour_loss"] = result["contour_loss"] * float("nan")
            return result

    monkeypatch.setattr(train_script, "DHFRObjective", NaNContour)
    config_path = tmp_path / "config.yaml"
    config = load_config(repo_root / "configs" / "sod_template.yaml")
    config.dataset.data_dir, config.train.snapshot_dir = str(dataset), str(tmp_path)
    config.train.batch_size, config.train.num_workers, config.train.pretrained = 1, 0, "none"
    config_path.write_text(yaml.safe_dump({"dataset": vars(config.dataset), "train": vars(config.train)}))
    assert train_script.main(["--config", str(config_path), "--device", "cpu"]) == 1
    assert "train.py: error: iteration 0: non-finite contour_loss = nan" in capsys.readouterr().err
    assert not list((tmp_path / "stage1").glob("model-*")), "no checkpoint after a non-finite loss"
