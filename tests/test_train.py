"""Training through the launcher on generated data (docs/method.md §4): a 3-iteration CPU run, the
checkpoint layout, TensorBoard output, bad input and a non-finite loss."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lib.io import is_temporary
from network import build_model, load_checkpoint
from spml.config import load_config
from spml.data.lists import ensure_train_list
from spml.training.layout import CONFIG_NAME
from spml.training.settings import prepare_training_run

from training_runs import LAUNCHER, NUM_TRAIN, SMALL_RUN, TEST_SCORE_LAUNCHER, launch, launcher_environment, \
    make_dataset

pytestmark = pytest.mark.slow


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
    assert not [path for path in stage.iterdir() if is_temporary(path)], "atomic writes leave no temporary file"
    model = build_model()
    load_checkpoint(model, stage / "model-2.pth")
    first, last = (torch.load(stage / f"model-{i}.pth", weights_only=True)["embedding_model"] for i in (1, 2))
    assert any(not torch.equal(first[key], last[key]) for key in first), "the third step changed no weight"
    state = torch.load(stage / "model-2.state.pth", weights_only=True)
    assert state["iteration"] == 2
    assert {int(entry["step"]) for entry in state["optimizer"]["state"].values()} == {3}
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert len(state["memory_bank"]["entries"]) == 2


def test_config_is_filled_from_the_environment(three_iterations, dataset):
    run, snapshot_dir = three_iterations
    config = load_config(snapshot_dir / CONFIG_NAME)
    assert (config.train.max_iteration, config.train.batch_size, config.train.snapshot_step) == (3, 1, 2)
    assert config.train.joint_passes is False, "two calls by default on the CPU"
    assert "JOINT_PASSES=0: the plain and the augmented pass run as two calls of batch 1" in run.stderr
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


def test_a_gpu_torch_does_not_see_stops_the_launcher_before_anything_is_written(repo_root, tmp_path):
    run = launch(repo_root, "99", SNAPSHOT_DIR=str(tmp_path / "run"))  # CUDA drops an index that does not exist
    assert run.returncode == 2
    assert error_line(run) == ("error: GPU_ID 99: torch sees no CUDA GPU on this machine "
                               "(`nvidia-smi -L` lists its GPUs; GPU_ID cpu runs on the CPU)")
    assert not (tmp_path / "run").exists(), "nothing written"


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
    if break_data is not _bad_scribble:  # a list error: found by the launcher, before it writes the run's config
        assert not (tmp_path / "snapshot").exists()


def test_missing_imagenet_weights_or_data_stop_the_launcher_before_anything_is_written(repo_root, dataset, tmp_path):
    snapshot_dir = tmp_path / "run"
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(snapshot_dir),
                 PRETRAINED=str(tmp_path / "absent.pth"))
    line = error_line(run)
    assert "absent.pth" in line and "bash bashscripts/download_snapshots.sh localvit" in line
    line = error_line(launch(repo_root, "cpu", DATAROOT=str(tmp_path / "no-data"), SNAPSHOT_DIR=str(snapshot_dir)))
    assert line == f"error: data root not found: {tmp_path / 'no-data'} (set DATAROOT)"
    assert not snapshot_dir.exists(), "nothing written"


def test_paths_are_relative_to_the_folder_the_launcher_starts_in(repo_root, dataset, tmp_path):
    (tmp_path / "data").symlink_to(dataset)
    run = subprocess.run(["bash", str(repo_root / LAUNCHER), "cpu"], cwd=tmp_path, capture_output=True, text=True,
                         env=launcher_environment(DATAROOT="data", SNAPSHOT_DIR="run", PRETRAINED="weights.pth"),
                         timeout=300)
    # The data root was found (it is checked first), the weights are looked for beside it.
    assert error_line(run).startswith(f"error: ImageNet weights not found: {tmp_path / 'weights.pth'}; ")
    assert not (tmp_path / "run").exists() and not (repo_root / "run").exists()


def test_the_trainer_checks_the_data_root_of_a_config_itself(dataset, tmp_path, capsys, restored_logging):
    from pyscripts.train import train as train_script

    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    config_path, _, _ = prepare_training_run({**SMALL_RUN, "DATAROOT": str(root), "SNAPSHOT_DIR": str(tmp_path / "run")})
    shutil.rmtree(root)
    assert train_script.main(["--config", str(config_path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"train.py: error: data root not found: {root} (set DATAROOT)\n"


def test_test_score_reads_the_runs_config_and_never_rewrites_it(repo_root, three_iterations, dataset, tmp_path):
    _, snapshot_dir = three_iterations
    config_path = snapshot_dir / CONFIG_NAME
    before = hashlib.sha256(config_path.read_bytes()).hexdigest()
    stamp = config_path.stat().st_mtime_ns
    # Settings that differ from the run's: they must not reach its config.
    run = launch(repo_root, "cpu", launcher=TEST_SCORE_LAUNCHER, SNAPSHOT_DIR=str(snapshot_dir), DATAROOT=str(dataset),
                 SAVE_DIR=str(tmp_path / "scores"), TEST_NUM_WORKERS="0", LR="1e-3", BATCH_SIZE="4")
    assert run.returncode == 0, run.stderr
    assert "checkpoint:" in run.stdout and "model-2.pth" in run.stdout, "the run's newest checkpoint is scored"
    assert hashlib.sha256(config_path.read_bytes()).hexdigest() == before
    assert config_path.stat().st_mtime_ns == stamp
    assert sorted(path.name for path in snapshot_dir.iterdir()) == [CONFIG_NAME, "stage1"]


def test_test_score_without_a_checkpoint_names_the_folder(repo_root, tmp_path):
    line = error_line(launch(repo_root, "cpu", launcher=TEST_SCORE_LAUNCHER, SNAPSHOT_DIR=str(tmp_path)))
    assert f"no checkpoint {tmp_path}/stage1/model-*.pth" in line
    assert not list(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize("variable, value, accepted", [
    ("BATCH_SIZE", "0", "an integer >= 1"), ("BATCH_SIZE", "-2", "an integer >= 1"),
    ("MAX_ITERATION", "0", "an integer >= 1"), ("LR", "fast", "a number > 0"), ("SNAPSHOT_STEP", "0", "an integer >= 1"),
    ("NUM_WORKERS", "-1", "an integer >= 0"), ("CROP_SIZE", "320", "the network takes only 224"),
    ("RESUME", "yes", "0 or 1"), ("PRECISION", "bf16", "needs a CUDA device"), ("JOINT_PASSES", "yes", "0 or 1"),
    ("EAGER", "yes", "0 or 1"), ("COMPILE", "on", "0 or 1"), ("VALIDATE", "no", "0 or 1"),
    ("MAX_ITERATIONS", "5", "did you mean MAX_ITERATION?"),
])
def test_bad_numbers_stop_the_launcher_with_one_line_naming_the_variable(repo_root, tmp_path, variable, value, accepted):
    run = launch(repo_root, "cpu", SNAPSHOT_DIR=str(tmp_path / "run"), **{variable: value})
    assert run.returncode == 2
    line = error_line(run)
    assert f"{variable}={value}" in line and accepted in line
    assert not (tmp_path / "run").exists(), "nothing written"


def test_resume_refuses_other_settings_and_a_folder_without_checkpoint(repo_root, three_iterations, dataset, tmp_path):
    _, snapshot_dir = three_iterations
    common = {"DATAROOT": str(dataset), "SNAPSHOT_DIR": str(snapshot_dir), "SNAPSHOT_STEP": "2", "RESUME": "1"}
    line = error_line(launch(repo_root, "cpu", MAX_ITERATION="5", LR="1e-3", **common))
    assert "MAX_ITERATION 3 → 5" in line and "LR 0.0001 → 0.001" in line and "RESUME_ALLOW_CHANGES=1" in line
    missing = tmp_path / "elsewhere"
    line = error_line(launch(repo_root, "cpu", **{**common, "SNAPSHOT_DIR": str(missing)}, MAX_ITERATION="3"))
    assert "no complete checkpoint" in line and str(missing / "stage1") in line
    assert not missing.exists()


def test_a_bad_file_late_in_the_list_stops_before_the_first_step(repo_root, dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    ensure_train_list(root)
    late = sorted((root / "sod" / "scribble_tip").iterdir())[-1]
    scribble = np.array(Image.open(late))
    scribble[0, 0] = 5
    Image.fromarray(scribble).save(late)
    snapshot = tmp_path / "snapshot"
    run = launch(repo_root, "cpu", DATAROOT=str(root), SNAPSHOT_DIR=str(snapshot), MAX_ITERATION="1")
    assert run.returncode == 2
    line = error_line(run)
    assert f"{late} has values other than 0/1/2: [5]" in line and "1 unusable training file(s)" in line
    assert not list((snapshot / "stage1").glob("model-*")), "no step was taken"
    # VALIDATE=0 skips the check: the bad file is only met if the step happens to read it.
    run = launch(repo_root, "cpu", DATAROOT=str(root), SNAPSHOT_DIR=str(snapshot), MAX_ITERATION="1", VALIDATE="0")
    assert "checking training data" not in run.stderr and "unusable training file" not in run.stderr


def test_a_start_removes_stale_temporaries_of_this_program_only(repo_root, dataset, tmp_path):
    stage = tmp_path / "snapshot" / "stage1"
    stage.mkdir(parents=True)
    stale = stage / ".model-0.state.pth.k3j4h5g6.dhfr-tmp"
    stale.write_bytes(b"half a checkpoint")
    foreign = stage / "notes.tmp"
    foreign.write_text("not ours")
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(tmp_path / "snapshot"), MAX_ITERATION="1")
    assert run.returncode == 0, run.stderr
    assert not stale.exists() and foreign.exists()
    assert f"removed {stale}, left by an interrupted write" in run.stderr


def test_resume_names_a_corrupt_state_file(repo_root, three_iterations, dataset, tmp_path):
    _, snapshot_dir = three_iterations
    copy = tmp_path / "run"
    shutil.copytree(snapshot_dir, copy)
    (copy / "stage1" / "model-2.state.pth").write_text("<!DOCTYPE html><html></html>")
    # One more iteration than the run had, so the resume has work to do and reads the state file.
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(copy), MAX_ITERATION="4",
                 SNAPSHOT_STEP="2", RESUME="1", RESUME_ALLOW_CHANGES="1")
    line = error_line(run)
    assert f"{copy / 'stage1' / 'model-2.state.pth'}: an HTML page" in line
    assert "weights_only" not in run.stderr


def test_ctrl_c_stops_training_with_one_line_naming_where_it_resumes(dataset, tmp_path, capsys, monkeypatch,
                                                                     restored_logging):
    from pyscripts.train import train as train_script

    run = tmp_path / "run"
    config_path, _, _ = prepare_training_run({**SMALL_RUN, "DATAROOT": str(dataset), "SNAPSHOT_DIR": str(run),
                                              "MAX_ITERATION": "4", "SNAPSHOT_STEP": "2"})
    orphan = run / "stage1" / "model-9.state.pth"  # a state file whose model file a killed run never wrote
    orphan.parent.mkdir()
    orphan.write_bytes(b"")
    real_step = train_script.training_step

    def ctrl_c_at_iteration_2(*args, **kwargs):
        if args[7] == 2:  # the iteration
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_script, "training_step", ctrl_c_at_iteration_2)
    assert train_script.main(["--config", str(config_path), "--device", "cpu", "--no-validate"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"train.py: interrupted; RESUME=1 continues after iteration 1 ({run / 'stage1' / 'model-1.pth'})")
    assert not orphan.exists()
