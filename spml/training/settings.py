"""A run's settings from the launchers' environment (docs/method.md §4).

The defaults live only in :mod:`spml.config`. The launchers export the variables the user
set (``BATCH_SIZE=2 ...``); :data:`ENVIRONMENT` says which config key each one sets. A
training start writes ``<snapshot dir>/config_sod_emb.yaml`` from the defaults plus these;
a resume checks them against the run's saved config; a test score only reads.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from lib.io import output_folder_problem
from lib.precisions import check_precision_device
from spml.config import Config, ConfigError, config_from_dict, config_to_dict, default_config, default_joint_passes, \
    describe_accepted, load_config, save_config
from spml.data.errors import DataError
from spml.data.lists import ensure_train_list, read_train_list, train_list_location
from spml.training.errors import InputError
from spml.training.layout import CONFIG_NAME, RESULTS_ROOT, STAGE_DIR, newest_complete_checkpoint, newest_model_file, \
    release_snapshot_dir

# Launcher variable -> config key it sets.
ENVIRONMENT = {
    "DATAROOT": "dataset.data_dir",
    "MAX_ITERATION": "train.max_iteration",
    "BATCH_SIZE": "train.batch_size",
    "SNAPSHOT_STEP": "train.snapshot_step",
    "TENSORBOARD_STEP": "train.tensorboard_step",
    "LR": "train.base_lr",
    "NUM_CLUSTERS": "network.kmeans_num_clusters",
    "KMEANS_ITERATIONS": "network.kmeans_iterations",
    "SEM_ANN_CONCENTRATION": "loss.sem_ann_concentration",
    "IMG_SIM_CONCENTRATION": "loss.img_sim_concentration",
    "SEM_ANN_LOSS_WEIGHT": "loss.sem_ann_loss_weight",
    "IMG_SIM_LOSS_WEIGHT": "loss.img_sim_loss_weight",
    "PARTED_CE_LOSS_WEIGHT": "loss.parted_ce_loss_weight",
    "SSC_LOSS_WEIGHT": "loss.ssc_loss_weight",
    "NUM_WORKERS": "train.num_workers",
    "SEED": "train.seed",
    "PRECISION": "train.precision",
    "JOINT_PASSES": "train.joint_passes",
    "PRETRAINED": "train.pretrained",
}
# The other variables the launchers (bashscripts/) and fill_config.py read.
LAUNCHER_VARIABLES = frozenset({
    "RESUME", "RESUME_ALLOW_CHANGES", "EAGER", "COMPILE", "VALIDATE", "SNAPSHOT_DIR",  # training
    "CHECKPOINT", "SAVE_DIR", "PROTOCOL", "TEST_BATCH_SIZE", "TEST_NUM_WORKERS",      # test score
    "CROP_SIZE", "EMBEDDING_DIM", "MIXED_PRECISION",  # the release's, checked by config_from_environment
    "NPROC", "PYTHON", "GT_ROOT", "OUT_DIR",
    "DEMO_GPU", "DEMO_DIR", "DEMO_ITERATIONS", "DEMO_BATCH_SIZE", "DEMO_LR", "DEMO_NUM_TRAIN", "DEMO_NUM_TEST",
})
MISSPELLING_SIMILARITY = 0.85
"""``difflib`` similarity from which an unknown variable is taken for a misspelt launcher variable:
``MAX_ITERATIONS``, ``DATA_ROOT``, ``BATCHSIZE`` and ``NUM_WORKER`` score 0.94–0.96, ``PAGER``
0.8 (against ``EAGER``). A shell's own variable this close, such as ``COMPILER`` (0.93 against
``COMPILE``), is refused too; the message says to unset it."""
_TEXT_KEYS = {"dataset.data_dir", "train.pretrained"}
# Keys that do not change what a run computes: they may differ on resume.
_RESUME_FREE = {"train.num_workers", "train.snapshot_dir"}


IMAGENET_DOWNLOAD = "bash bashscripts/download_snapshots.sh localvit"
RELEASED_MODEL_DOWNLOAD = "bash bashscripts/download_snapshots.sh model"


class SettingsError(ValueError):
    """A launcher variable or run folder that does not fit (exit status 2)."""


def check_run_inputs(config: Config, starting: bool) -> None:
    """Raise :class:`InputError` unless the folders and files a run reads first are there: the data
    root (unless the config names its training list) and, when ``starting`` from iteration 0, the
    ImageNet weights (unless ``PRETRAINED=none``). Checked by the launcher before the run's config
    is written, and by the trainer."""
    data_root = Path(config.dataset.data_dir)
    if not config.dataset.train_list and not data_root.is_dir():
        raise InputError(f"data root not found: {data_root} (set DATAROOT)")
    pretrained = config.train.pretrained
    if starting and pretrained != "none" and not Path(pretrained).is_file():
        raise InputError(f"ImageNet weights not found: {pretrained}; download them with `{IMAGENET_DOWNLOAD}`, "
                         f"or set PRETRAINED=none to train from scratch")


def run_train_list(config: Config) -> Path:
    """The run's training list: ``dataset.train_list`` if the config names one, else the data root's
    ``lists/train.txt`` (in the snapshot dir when the data root is read-only and has none;
    :func:`spml.data.lists.train_list_location`)."""
    if config.dataset.train_list:
        return Path(config.dataset.train_list)
    return train_list_location(config.dataset.data_dir, config.train.snapshot_dir)


def _prepare_train_list(config: Config) -> list[str]:
    """Read the run's training list, built first by scanning the data root when absent, as the
    trainer would; a bad list raises :class:`SettingsError` naming its line. Returns a note on a
    list built here."""
    list_path = run_train_list(config)
    build = not config.dataset.train_list and not list_path.is_file()
    try:
        if build:
            ensure_train_list(config.dataset.data_dir, list_path)
        samples = read_train_list(list_path, config.dataset.data_dir)
    except DataError as error:
        raise SettingsError(str(error)) from None
    return [f"wrote the training list {list_path.absolute()}: {len(samples)} sample(s) scanned from "
            f"{Path(config.dataset.data_dir).absolute()}"] if build else []


def _fixed_sizes() -> dict[str, int]:
    """Variables of the release's launcher that the network fixes: accepted only at that value."""
    from network.sfnet import EMBEDDING_DIM, INPUT_SIZE

    return {"CROP_SIZE": INPUT_SIZE, "EMBEDDING_DIM": EMBEDDING_DIM}


def _set(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "")
    return value if value != "" else None


def flag(environ: Mapping[str, str], name: str) -> bool:
    """A 0/1 launcher variable (unset = 0)."""
    value = _set(environ, name) or "0"
    if value not in ("0", "1"):
        raise SettingsError(f"{name}={value}: must be 0 or 1")
    return value == "1"


def _parse(name: str, key: str, raw: str) -> object:
    if key in _TEXT_KEYS:
        return raw
    section, field = key.split(".")
    if isinstance(getattr(getattr(default_config(), section), field), bool):
        return flag({name: raw}, name)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return [value, value] if key == "network.kmeans_num_clusters" else value


def misspelt_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``{name: launcher variable it is close to}`` for each variable of ``environ`` that is no
    launcher variable but has :data:`MISSPELLING_SIMILARITY` to one, in name order."""
    known = set(ENVIRONMENT) | LAUNCHER_VARIABLES
    near = {name: difflib.get_close_matches(name, known, n=1, cutoff=MISSPELLING_SIMILARITY)
            for name in sorted(set(environ) - known)}
    return {name: match[0] for name, match in near.items() if match}


def check_spelling(environ: Mapping[str, str]) -> None:
    """Raise :class:`SettingsError` for the first of :func:`misspelt_variables` (``MAX_ITERATIONS=1000``
    would otherwise be ignored, and the run take the default)."""
    for name, meant in misspelt_variables(environ).items():
        raise SettingsError(f"{name}={environ[name]}: not a setting of the launchers; did you mean {meant}? "
                            f"(unset {name})")


def config_from_environment(environ: Mapping[str, str]) -> Config:
    """The defaults with every set :data:`ENVIRONMENT` variable applied; one bad value raises
    :class:`SettingsError` naming the variable and what it accepts, as does a misspelt variable
    (:func:`check_spelling`)."""
    check_spelling(environ)
    for name, size in _fixed_sizes().items():
        if _set(environ, name) not in (None, str(size)):
            raise SettingsError(f"{name}={environ[name]}: the network takes only {size} (unset {name})")
    if _set(environ, "MIXED_PRECISION") not in (None, "0"):
        raise SettingsError(f"MIXED_PRECISION={environ['MIXED_PRECISION']}: replaced by PRECISION=fp16 "
                            f"(float16 with a grad scaler, as before) or PRECISION=bf16; unset MIXED_PRECISION")
    config = default_config()
    for name, key in ENVIRONMENT.items():
        raw = _set(environ, name)
        if raw is None:
            continue
        section, field = key.split(".")
        try:
            config = config_from_dict({section: {field: _parse(name, key, raw)}}, base=config)
        except ConfigError:
            accepted = "an integer >= 1" if key == "network.kmeans_num_clusters" else describe_accepted(section, field)
            raise SettingsError(f"{name}={raw}: must be {accepted}") from None
    return config


def snapshot_dir_of(config: Config, environ: Mapping[str, str]) -> Path:
    """``SNAPSHOT_DIR`` if set, else the folder named after the settings (the release's name)."""
    return Path(_set(environ, "SNAPSHOT_DIR") or release_snapshot_dir(config))


def setting_changes(saved: Config, new: Config) -> list[str]:
    """``'BATCH_SIZE 1 → 2'`` for every setting that changes what the run computes."""
    names = {key: name for name, key in ENVIRONMENT.items()}
    changes = []
    for section, values in config_to_dict(saved).items():
        for field, old in values.items():
            key = f"{section}.{field}"
            now = getattr(getattr(new, section), field)
            if key not in _RESUME_FREE and old != now:
                if key in names and isinstance(now, bool):  # as the launcher variable is set: 0/1
                    old, now = int(old), int(now)
                changes.append(f"{names.get(key, key)} {old} → {now}")
    return changes


def prepare_training_run(environ: Mapping[str, str], processes: int = 1,
                         device_type: str = "cpu") -> tuple[Path, bool, list[str]]:
    """Check the settings and write the run's config; return ``(config path, resume, notes)``.

    A start writes ``<snapshot dir>/config_sod_emb.yaml`` and refuses a folder whose ``stage1``
    holds checkpoints (a run's, or the downloaded released model). ``RESUME=1`` needs a complete
    checkpoint in ``<snapshot dir>/stage1`` and the same settings as the saved config
    (``RESUME_ALLOW_CHANGES=1`` accepts changes and rewrites the config). ``PRECISION`` other
    than fp32 needs ``device_type`` ``cuda``; unset ``JOINT_PASSES`` takes the default for
    ``device_type`` (:func:`spml.config.default_joint_passes`); the data root and the ImageNet weights
    of a start must be there (:func:`check_run_inputs`), and the training list must read without
    error (built by scanning when absent, :func:`run_train_list`). Nothing is written when a check
    fails.
    """
    resume, allow_changes = flag(environ, "RESUME"), flag(environ, "RESUME_ALLOW_CHANGES")
    config = config_from_environment(environ)
    if _set(environ, "JOINT_PASSES") is None:
        config.train.joint_passes = default_joint_passes(device_type)
    try:
        check_precision_device(config.train.precision, device_type, f"PRECISION={config.train.precision}")
    except ValueError as error:
        raise SettingsError(str(error)) from None
    if config.train.batch_size % processes:
        raise SettingsError(f"BATCH_SIZE={config.train.batch_size}: must be a multiple of the {processes} processes")
    snapshot_dir = snapshot_dir_of(config, environ)
    config.train.snapshot_dir = str(snapshot_dir)
    config_path = snapshot_dir / CONFIG_NAME
    stage_dir = snapshot_dir / STAGE_DIR
    problem = output_folder_problem(snapshot_dir)
    if problem is not None:
        raise SettingsError(f"SNAPSHOT_DIR={snapshot_dir}: {problem}")
    try:
        check_run_inputs(config, starting=not resume)
    except InputError as error:
        raise SettingsError(str(error)) from None
    existing = newest_model_file(stage_dir)
    if not resume and existing is not None:
        raise SettingsError(f"{stage_dir} already holds a run's checkpoints (newest {existing.name}), which a new "
                            f"run would overwrite; RESUME=1 continues that run, or set SNAPSHOT_DIR to another folder")
    if resume and newest_complete_checkpoint(stage_dir) is None:
        raise SettingsError(f"RESUME=1: no complete checkpoint (model-<iter>.pth with its .state.pth) in {stage_dir}"
                            f"; check SNAPSHOT_DIR and the settings that name the folder")
    notes, saved = [], None
    if resume:
        try:
            saved = load_config(config_path)
        except ConfigError as error:
            raise SettingsError(f"RESUME=1: cannot read the run's settings: {error}") from None
        changes = setting_changes(saved, config)
        if changes and not allow_changes:
            raise SettingsError(f"RESUME=1: settings differ from {config_path}: {', '.join(changes)}; "
                                f"set them as before, or RESUME_ALLOW_CHANGES=1 to resume with the new ones")
        if changes:
            notes.append(f"resuming with changed settings: {', '.join(changes)}")
    notes += _prepare_train_list(config)
    if saved != config:
        save_config(config, config_path)
    return config_path, resume, notes


@dataclass(frozen=True)
class TestScoreRun:
    """What the test-score launcher scores and where results go; nothing is written."""

    config: Path | None  # the run's config, if it has one
    checkpoint: Path
    save_dir: Path
    protocol: str


def prepare_test_score(environ: Mapping[str, str]) -> TestScoreRun:
    """Resolve ``CHECKPOINT`` (default: the newest ``stage1/model-<iter>.pth`` of the run),
    ``PROTOCOL`` and ``SAVE_DIR`` (default ``results/<run folder name>/<checkpoint>_<protocol>``,
    outside the run's folder, which test score never writes into)."""
    config = config_from_environment(environ)
    snapshot_dir = snapshot_dir_of(config, environ)
    config_path = snapshot_dir / CONFIG_NAME
    run_config = load_config(config_path) if config_path.is_file() else None
    protocol = _set(environ, "PROTOCOL") or (run_config or config).test.protocol
    checkpoint = _set(environ, "CHECKPOINT") or newest_model_file(snapshot_dir / STAGE_DIR)
    if checkpoint is None:
        released = (f" (`{RELEASED_MODEL_DOWNLOAD}` fetches the released model there)"
                    if snapshot_dir == release_snapshot_dir(default_config()) else "")
        raise SettingsError(f"no checkpoint {snapshot_dir / STAGE_DIR}/model-*.pth{released}; "
                            f"set CHECKPOINT=... or SNAPSHOT_DIR=...")
    checkpoint = Path(checkpoint)
    save_dir = _set(environ, "SAVE_DIR") or Path(RESULTS_ROOT) / snapshot_dir.name / f"{checkpoint.stem}_{protocol}"
    return TestScoreRun(config_path if run_config else None, checkpoint, Path(save_dir), protocol)
