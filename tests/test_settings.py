"""Run settings (docs/method.md §4): defaults defined once, the release's folder and file names,
launcher variables checked with one line each, a strict resume, a test score that writes nothing."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

from spml.config import ConfigError, default_config, default_joint_passes, load_config, save_config
from spml.training.layout import CONFIG_NAME, STAGE_DIR, checkpoint_paths, newest_complete_checkpoint, newest_model_file, \
    orphaned_state_files, release_checkpoint, release_snapshot_dir
from spml.training.settings import ENVIRONMENT, LAUNCHER_VARIABLES, SettingsError, config_from_environment, \
    prepare_test_score, prepare_training_run, run_train_list, setting_changes

from training_runs import list_unreadable_sample

REPO_ROOT = Path(__file__).resolve().parents[1]

RELEASE_DIR = ("snapshots/sod_scribble/rgbd_sod_sfnet_segsort/p224_dim64_nc6_ki10_lr1e-4_syncbn_false_bs4_gpu0_it109250"
               "_wd5e-4_memsize2_losstypesegsort_segsort_segsort_none_lossconc6_12_16_0_lossw1.0_0.0_0.1_0.0_0.0_0.0_1.0_1.0")


@pytest.fixture(autouse=True)
def run_inputs_present(tmp_path_factory, monkeypatch) -> Path:
    """A working folder holding the default data root with a one-sample training list, and the ImageNet
    weights file, which a start checks before it writes anything; returns it."""
    folder = tmp_path_factory.mktemp("working-folder")
    monkeypatch.chdir(folder)
    list_unreadable_sample(folder / default_config().dataset.data_dir)
    weights = folder / default_config().train.pretrained
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    return folder


def test_release_names():
    assert str(release_snapshot_dir(default_config())) == RELEASE_DIR
    assert str(release_checkpoint()) == f"{RELEASE_DIR}/stage1/model-109249.pth"
    assert CONFIG_NAME == "config_sod_emb.yaml"


def test_folder_name_follows_the_settings():
    config = config_from_environment({"BATCH_SIZE": "2", "LR": "1e-3", "MAX_ITERATION": "30"})
    assert release_snapshot_dir(config).name.startswith("p224_dim64_nc6_ki10_lr1e-3_syncbn_false_bs2_gpu0_it30_")


def test_unset_and_empty_variables_keep_the_defaults():
    assert config_from_environment({"LR": "", "HOME": "/root"}) == default_config()


@pytest.mark.parametrize("variable, value, message", [
    ("BATCH_SIZE", "0", "BATCH_SIZE=0: must be an integer >= 1"),
    ("BATCH_SIZE", "-2", "BATCH_SIZE=-2: must be an integer >= 1"),
    ("BATCH_SIZE", "two", "BATCH_SIZE=two: must be an integer >= 1"),
    ("MAX_ITERATION", "0", "MAX_ITERATION=0: must be an integer >= 1"),
    ("LR", "0", "LR=0: must be a number > 0"),
    ("LR", "inf", "LR=inf: must be a number > 0"),
    ("SNAPSHOT_STEP", "1.5", "SNAPSHOT_STEP=1.5: must be an integer >= 1"),
    ("TENSORBOARD_STEP", "0", "TENSORBOARD_STEP=0: must be an integer >= 1"),
    ("NUM_WORKERS", "-1", "NUM_WORKERS=-1: must be an integer >= 0"),
    ("NUM_CLUSTERS", "0", "NUM_CLUSTERS=0: must be an integer >= 1"),
    ("SEM_ANN_CONCENTRATION", "-6", "SEM_ANN_CONCENTRATION=-6: must be a number > 0"),
    ("IMG_SIM_LOSS_WEIGHT", "-0.1", "IMG_SIM_LOSS_WEIGHT=-0.1: must be a number >= 0"),
    ("PRECISION", "half", "PRECISION=half: must be one of fp32, tf32, bf16, fp16"),
    ("MIXED_PRECISION", "1", "MIXED_PRECISION=1: replaced by PRECISION=fp16"),
    ("JOINT_PASSES", "yes", "JOINT_PASSES=yes: must be 0 or 1"),
    ("JOINT_PASSES", "true", "JOINT_PASSES=true: must be 0 or 1"),
    ("CROP_SIZE", "320", "CROP_SIZE=320: the network takes only 224"),
    ("EMBEDDING_DIM", "32", "EMBEDDING_DIM=32: the network takes only 64"),
])
def test_a_bad_value_names_the_variable_and_what_it_accepts(variable, value, message):
    with pytest.raises(SettingsError) as raised:
        config_from_environment({variable: value})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("misspelt, meant", [("MAX_ITERATIONS", "MAX_ITERATION"), ("DATA_ROOT", "DATAROOT"),
                                              ("BATCHSIZE", "BATCH_SIZE"), ("NUM_WORKER", "NUM_WORKERS"),
                                              ("SNAPSHOTDIR", "SNAPSHOT_DIR"), ("RESUMES", "RESUME")])
def test_a_misspelt_variable_stops_the_launcher_instead_of_being_ignored(misspelt, meant, tmp_path):
    message = f"{misspelt}=1000: not a setting of the launchers; did you mean {meant}? (unset {misspelt})"
    with pytest.raises(SettingsError, match=re.escape(message)):
        config_from_environment({misspelt: "1000"})
    with pytest.raises(SettingsError, match=misspelt):
        prepare_training_run({misspelt: "1000", "SNAPSHOT_DIR": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


def test_every_launcher_variable_and_ordinary_environment_variables_pass_the_spelling_check():
    launchers = "\n".join(path.read_text() for path in (REPO_ROOT / "bashscripts").rglob("*.sh"))
    read_with_default = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", launchers))
    assert read_with_default and read_with_default <= set(ENVIRONMENT) | LAUNCHER_VARIABLES
    ordinary = ("PATH", "HOME", "PAGER", "EDITOR", "PYTHONPATH", "NPROCS_AVAILABLE", "CUDA_VISIBLE_DEVICES",
                "LOCAL_RANK", "OMP_NUM_THREADS", "DHFR_MIRROR")
    everything = {name: "" for name in (*ENVIRONMENT, *LAUNCHER_VARIABLES, *ordinary)}
    assert config_from_environment(everything) == default_config()


def test_the_fixed_sizes_may_be_given_at_their_value():
    assert config_from_environment({"CROP_SIZE": "224", "EMBEDDING_DIM": "64"}) == default_config()


def test_precision_sets_the_training_arithmetic():
    assert config_from_environment({"PRECISION": "bf16"}).train.precision == "bf16"
    assert config_from_environment({"MIXED_PRECISION": "0"}) == default_config()


def test_joint_passes_is_a_0_or_1_setting_whose_default_depends_on_the_device(tmp_path):
    assert default_joint_passes("cuda") is True and default_joint_passes("cpu") is False
    assert default_config().train.joint_passes is True
    assert config_from_environment({"JOINT_PASSES": "1"}) == default_config()
    assert setting_changes(default_config(), config_from_environment({"JOINT_PASSES": "0"})) == ["JOINT_PASSES 1 → 0"]
    for device_type, environment, saved in (("cpu", {}, False), ("cuda", {}, True),
                                            ("cpu", {"JOINT_PASSES": "1"}, True), ("cuda", {"JOINT_PASSES": "0"}, False)):
        run = tmp_path / f"{device_type}{environment}"
        config_path, _, _ = prepare_training_run({"SNAPSHOT_DIR": str(run), **environment}, device_type=device_type)
        assert load_config(config_path).train.joint_passes is saved, (device_type, environment)


def test_a_run_resumed_on_another_kind_of_device_keeps_its_passes_only_when_told(tmp_path):
    config_path, _, _ = prepare_training_run({"SNAPSHOT_DIR": str(tmp_path)}, device_type="cpu")
    fake_checkpoint(tmp_path, 9)
    assert prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "RESUME": "1"}, device_type="cpu")[1] is True
    with pytest.raises(SettingsError, match="RESUME=1: settings differ .*: JOINT_PASSES 0 → 1; set them as before"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "RESUME": "1"}, device_type="cuda")
    environment = {"SNAPSHOT_DIR": str(tmp_path), "RESUME": "1", "JOINT_PASSES": "0"}
    assert prepare_training_run(environment, device_type="cuda")[1] is True
    assert load_config(config_path).train.joint_passes is False


def test_a_reduced_precision_on_the_cpu_stops_before_anything_is_written(tmp_path):
    with pytest.raises(SettingsError, match=r"^PRECISION=bf16: needs a CUDA device \(the CPU runs fp32\)$"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRECISION": "bf16"}, device_type="cpu")
    assert not (tmp_path / "run").exists()
    config_path, _, _ = prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRECISION": "bf16"},
                                             device_type="cuda")
    assert load_config(config_path).train.precision == "bf16"


@pytest.mark.parametrize("mixed_precision, precision", [(True, "fp16"), (False, "fp32")])
def test_a_config_from_before_precision_existed_is_read_with_its_meaning(tmp_path, mixed_precision, precision):
    path = tmp_path / CONFIG_NAME
    path.write_text(f"train:\n  batch_size: 2\n  mixed_precision: {str(mixed_precision).lower()}\n")
    config = load_config(path)
    assert config.train.precision == precision and config.train.batch_size == 2


def test_a_config_from_before_joint_passes_existed_keeps_its_two_calls(tmp_path):
    path = tmp_path / CONFIG_NAME
    path.write_text("train:\n  batch_size: 2\n  precision: fp32\n")
    assert load_config(path).train.joint_passes is False
    path.write_text("train:\n  batch_size: 2\n  joint_passes: true\n")
    assert load_config(path).train.joint_passes is True


def test_config_files_are_read_strictly(tmp_path):
    path = tmp_path / CONFIG_NAME
    path.write_text("train:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match="train.batch_size must be an integer >= 1, got 0"):
        load_config(path)
    path.write_text("test:\n  save_dir: x\n")
    with pytest.raises(ConfigError, match="unknown key 'test.save_dir'"):
        load_config(path)


def fake_checkpoint(snapshot_dir: Path, iteration: int) -> None:
    for path in checkpoint_paths(snapshot_dir / "stage1", iteration):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_a_start_writes_the_config_from_the_defaults_and_the_set_variables(tmp_path):
    config_path, resume, _ = prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "BATCH_SIZE": "2"})
    assert (config_path, resume) == (tmp_path / CONFIG_NAME, False)
    config = load_config(config_path)
    assert (config.train.batch_size, config.train.snapshot_dir, config.train.base_lr) == (2, str(tmp_path), 1e-4)


def test_a_batch_must_split_over_the_processes(tmp_path):
    with pytest.raises(SettingsError, match="BATCH_SIZE=3: must be a multiple of the 2 processes"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "BATCH_SIZE": "3"}, processes=2)


def test_resume_without_a_checkpoint_names_the_folder_and_writes_nothing(tmp_path):
    with pytest.raises(SettingsError, match=f"no complete checkpoint .* in {tmp_path / 'run' / 'stage1'}"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "RESUME": "1"})
    assert not (tmp_path / "run").exists()


def test_resume_refuses_changed_settings_unless_allowed(tmp_path):
    environment = {"SNAPSHOT_DIR": str(tmp_path), "BATCH_SIZE": "2", "LR": "1e-3", "MAX_ITERATION": "30"}
    config_path, _, _ = prepare_training_run(environment)
    fake_checkpoint(tmp_path, 9)
    saved = config_path.read_bytes()
    assert prepare_training_run({**environment, "RESUME": "1"})[1] is True
    assert config_path.read_bytes() == saved, "an unchanged resume leaves the config as it was"
    assert prepare_training_run({**environment, "RESUME": "1", "NUM_WORKERS": "0"})[1] is True
    assert load_config(config_path).train.num_workers == 0, "the worker count may change"
    saved = config_path.read_bytes()
    with pytest.raises(SettingsError) as raised:
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "RESUME": "1", "MAX_ITERATION": "30"})
    message = str(raised.value)
    assert "BATCH_SIZE 2 → 4" in message and "LR 0.001 → 0.0001" in message and "MAX_ITERATION" not in message
    assert "RESUME_ALLOW_CHANGES=1" in message and config_path.read_bytes() == saved
    _, resume, notes = prepare_training_run({**environment, "BATCH_SIZE": "4", "RESUME": "1",
                                             "RESUME_ALLOW_CHANGES": "1"})
    assert resume and notes == ["resuming with changed settings: BATCH_SIZE 2 → 4"]
    assert load_config(config_path).train.batch_size == 4


def test_a_run_from_before_joint_passes_resumes_only_as_two_calls(tmp_path):
    environment = {"SNAPSHOT_DIR": str(tmp_path), "JOINT_PASSES": "0"}
    config_path, _, _ = prepare_training_run(environment)
    config_path.write_text(config_path.read_text().replace("  joint_passes: false\n", ""))
    assert "joint_passes" not in config_path.read_text(), "the config as an earlier version wrote it"
    fake_checkpoint(tmp_path, 9)
    with pytest.raises(SettingsError, match="JOINT_PASSES 0 → 1; set them as before"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path), "RESUME": "1"}, device_type="cuda")
    assert prepare_training_run({**environment, "RESUME": "1"}, device_type="cuda")[1] is True


def test_test_score_reads_the_run_and_writes_nothing(tmp_path):
    config = default_config()
    config.test.protocol = "release"
    save_config(config, tmp_path / CONFIG_NAME)
    fake_checkpoint(tmp_path, 3)
    fake_checkpoint(tmp_path, 11)
    before = sorted(tmp_path.rglob("*"))
    run = prepare_test_score({"SNAPSHOT_DIR": str(tmp_path)})
    assert run.config == tmp_path / CONFIG_NAME and run.checkpoint == tmp_path / "stage1" / "model-11.pth"
    assert (run.protocol, run.save_dir) == ("release", Path("results") / tmp_path.name / "model-11_release")
    assert tmp_path not in run.save_dir.resolve().parents, "test score never writes into the run folder"
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(SettingsError, match=rf"^no checkpoint {tmp_path / 'empty'}/stage1/model-\*.pth; set CHECKPOINT"):
        prepare_test_score({"SNAPSHOT_DIR": str(tmp_path / "empty")})
    # The release's folder (default settings) without the downloaded model: how to fetch it.
    with pytest.raises(SettingsError, match=r"^no checkpoint snapshots/sod_scribble/.*/stage1/model-\*.pth "
                                            r"\(`bash bashscripts/download_snapshots.sh model` fetches the released "
                                            r"model there\); set CHECKPOINT=\.\.\. or SNAPSHOT_DIR=\.\.\.$"):
        prepare_test_score({})


def test_newest_checkpoints(tmp_path):
    assert newest_complete_checkpoint(tmp_path) is None and newest_model_file(tmp_path) is None
    (tmp_path / "model-5.state.pth").write_bytes(b"")  # killed between the state and the model file
    (tmp_path / "model-3.pth").write_bytes(b"")
    (tmp_path / "model-3.state.pth").write_bytes(b"")
    (tmp_path / "model-12.pth").write_bytes(b"")  # a model without state (e.g. the released one)
    assert newest_complete_checkpoint(tmp_path) == 3
    assert newest_model_file(tmp_path) == tmp_path / "model-12.pth"
    assert orphaned_state_files(tmp_path) == [tmp_path / "model-5.state.pth"]


def test_data_loading_processes_default_to_four_at_most_one_per_core(caplog):
    from lib.cpus import available_cpus as available_cores
    from spml.training.sampling import loader_workers

    assert default_config().train.num_workers == min(4, available_cores())
    with caplog.at_level(logging.INFO, logger="train"):
        assert loader_workers(available_cores() + 3) == available_cores()
    assert "cores" in caplog.text


@pytest.mark.parametrize("environment, assignments", [
    ({}, "EAGER=0\nCOMPILE=0\nVALIDATE=1"),
    ({"EAGER": "1", "COMPILE": "1", "VALIDATE": "0"}, "EAGER=1\nCOMPILE=1\nVALIDATE=0"),
])
def test_the_launcher_gets_how_to_run_as_0_or_1_and_none_of_it_in_the_config(tmp_path, monkeypatch, capsys,
                                                                             environment, assignments):
    from pyscripts.tools import fill_config

    for name, value in {"SNAPSHOT_DIR": str(tmp_path / "run"), **environment}.items():
        monkeypatch.setenv(name, value)
    assert fill_config.main(["train"]) == 0
    assert capsys.readouterr().out.endswith(f"RESUME=0\n{assignments}\n")
    saved = (tmp_path / "run" / CONFIG_NAME).read_text()
    assert "compile" not in saved and "eager" not in saved


@pytest.mark.parametrize("visible, seen, processes, found", [
    ("3", 0, 1, "no CUDA GPU"),
    ("0,1", 1, 2, "1 CUDA GPU of the 2 needed"),
])
def test_a_gpu_launch_without_its_gpus_stops_before_anything_is_written(tmp_path, monkeypatch, capsys,
                                                                      visible, seen, processes, found):
    """Training and test score (one GPU) check the GPUs that ``GPU_ID`` names before anything else."""
    from pyscripts.tools import fill_config

    monkeypatch.setattr(torch.cuda, "device_count", lambda: seen)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path / "run"))
    assert fill_config.main(["train", "--device", "cuda", "--processes", str(processes)]) == 2
    assert capsys.readouterr().err == (f"error: GPU_ID {visible}: torch sees {found} on this "
                                       f"machine (`nvidia-smi -L` lists its GPUs; GPU_ID cpu runs on the CPU)\n")
    assert not (tmp_path / "run").exists()
    if processes == 1:
        assert fill_config.main(["test-score", "--device", "cuda"]) == 2
        assert "torch sees no CUDA GPU" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "device_count", lambda: processes)
    assert fill_config.main(["train", "--device", "cuda", "--processes", str(processes)]) == 0
    assert (tmp_path / "run" / CONFIG_NAME).is_file()


def test_a_start_without_its_data_or_imagenet_weights_stops_before_anything_is_written(tmp_path, run_inputs_present):
    run = tmp_path / "run"
    with pytest.raises(SettingsError, match=r"^data root not found: /absent \(set DATAROOT\)$"):
        prepare_training_run({"SNAPSHOT_DIR": str(run), "DATAROOT": "/absent"})
    weights = tmp_path / "absent.pth"
    with pytest.raises(SettingsError, match=rf"^ImageNet weights not found: {weights}; download them with "
                                            r"`bash bashscripts/download_snapshots.sh localvit`, or set PRETRAINED=none"):
        prepare_training_run({"SNAPSHOT_DIR": str(run), "PRETRAINED": str(weights)})
    assert not run.exists()
    assert prepare_training_run({"SNAPSHOT_DIR": str(run), "PRETRAINED": "none"})[0].is_file()
    # A resume does not read the ImageNet weights, but its data.
    (run / STAGE_DIR).mkdir()
    for path in checkpoint_paths(run / STAGE_DIR, 3):
        path.write_bytes(b"")
    assert prepare_training_run({"SNAPSHOT_DIR": str(run), "PRETRAINED": "none", "RESUME": "1"})[1] is True
    shutil.rmtree(run_inputs_present / default_config().dataset.data_dir)
    with pytest.raises(SettingsError, match=r"^data root not found: dataroot \(set DATAROOT\)$"):
        prepare_training_run({"SNAPSHOT_DIR": str(run), "PRETRAINED": "none", "RESUME": "1"})


def test_a_bad_training_list_stops_the_start_before_its_config_is_written(tmp_path, run_inputs_present):
    list_path = run_inputs_present / default_config().dataset.data_dir / "lists" / "train.txt"
    list_path.write_text(list_path.read_text() + "sod/RGB_Train/a.jpg sod/Depth_Train/a.bmp\n")
    with pytest.raises(SettingsError, match=r"^dataroot/lists/train.txt:2: expected 5 columns"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRETRAINED": "none"})
    with pytest.raises(SettingsError, match=rf"^missing data folder: {tmp_path}/sod/RGB_Train$"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRETRAINED": "none", "DATAROOT": str(tmp_path)})
    assert not (tmp_path / "run").exists() and not (tmp_path / "lists").exists()


def test_an_absent_training_list_is_built_by_the_start_where_the_trainer_reads_it(tmp_path, run_inputs_present):
    data_root = run_inputs_present / default_config().dataset.data_dir
    (data_root / "lists" / "train.txt").unlink()
    config_path, _, notes = prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRETRAINED": "none"})
    assert notes == [f"wrote the training list {data_root}/lists/train.txt: 1 sample(s) scanned from {data_root}"]
    assert run_train_list(load_config(config_path)) == Path("dataroot/lists/train.txt")
    assert (data_root / "lists" / "train.txt").read_text().split() == [
        "sod/RGB_Train/a.jpg", "sod/Depth_Train/a.bmp", "sod/scribble_tip/a.png", "sod/hed/a.jpg", "sod/contours_sum/a.png"]


def test_a_read_only_data_root_gets_its_training_list_in_the_snapshot_dir(tmp_path, run_inputs_present):
    data_root = run_inputs_present / default_config().dataset.data_dir
    shutil.rmtree(data_root / "lists")
    data_root.chmod(0o555)  # read-only for the superuser too, by lib.io's rule
    try:
        config_path, _, _ = prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "run"), "PRETRAINED": "none"})
        list_path = run_train_list(load_config(config_path))  # what the trainer then reads
    finally:
        data_root.chmod(0o755)
    assert list_path == tmp_path / "run" / "lists" / "train.txt"
    assert (tmp_path / "run" / "lists" / "train.txt").is_file() and not (data_root / "lists").exists()


def test_a_start_never_overwrites_the_checkpoints_of_a_run(tmp_path):
    environment = {"SNAPSHOT_DIR": str(tmp_path), "PRETRAINED": "none"}
    config_path, _, _ = prepare_training_run(environment)
    (tmp_path / STAGE_DIR).mkdir()
    model, state = checkpoint_paths(tmp_path / STAGE_DIR, 21849)
    model.write_bytes(b"")  # a model file alone (the downloaded release) counts too
    saved = config_path.read_bytes()
    with pytest.raises(SettingsError, match=rf"^{tmp_path / STAGE_DIR} already holds a run's checkpoints \(newest "
                                            r"model-21849.pth\), which a new run would overwrite; RESUME=1 continues"):
        prepare_training_run({**environment, "LR": "1e-3"})
    assert config_path.read_bytes() == saved
    state.write_bytes(b"")
    assert prepare_training_run({**environment, "RESUME": "1"})[1] is True


def test_a_snapshot_dir_that_cannot_hold_files_is_named(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SettingsError, match=rf"^SNAPSHOT_DIR={tmp_path / 'a-file'}: exists and is not a folder$"):
        prepare_training_run({"SNAPSHOT_DIR": str(tmp_path / "a-file")})
