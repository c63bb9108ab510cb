"""Run settings: the one place their defaults are defined (the release's, docs/method.md §2, §4).

A config is a tree of dataclasses. Each field's metadata says what values it accepts
(``minimum``, ``positive``, ``choices``); :func:`config_from_dict` checks types and ranges and names the
key on error. A run's YAML file is generated from these defaults plus the settings the user
changed (``spml.training.settings``); :func:`load_config` reads it back strictly.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lib.cpus import cap_workers
from lib.io import atomic_write_text
from lib.precisions import PRECISIONS
from spml.training.layout import IMAGENET_WEIGHTS

TEST_SETS = ("LFSD", "NJU2K", "NLPR", "DES", "SIP", "SSD", "STERE", "DUT")


def _at_least(minimum: int, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A field accepting numbers ``>= minimum``."""
    return field(default=default, metadata={"minimum": minimum}, **kwargs)


def _positive(default: float) -> Any:
    """A field accepting finite numbers ``> 0``."""
    return field(default=default, metadata={"positive": True})


def _one_of(choices: tuple[str, ...], default: str) -> Any:
    """A field accepting one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def default_num_workers() -> int:
    """Data-loading processes: 4, at most one per available core (docs/method.md §4)."""
    return cap_workers(4)


def default_joint_passes(device_type: str) -> bool:
    """Whether the training forward runs its two passes as one batch by default on ``device_type``
    (docs/method.md §1.7): yes on a GPU, where one batch of ``2B`` means fewer, larger kernels
    (README: 89.0 against 100.8 ms a step on an H100); no on the CPU, where it saves nothing
    and measured 4–16 % slower. A config holds the value chosen when its run started
    (:func:`spml.training.settings.prepare_training_run`)."""
    return device_type != "cpu"


@dataclass
class DatasetConfig:
    data_dir: str = "dataroot"
    # List file; empty means the default place under ``data_dir`` (see spml.data.lists).
    train_list: str = ""
    num_classes: int = _at_least(1, 2)


@dataclass
class NetworkConfig:
    backbone_types: str = "rgbd_sod_sfnet"
    prediction_types: str = "segsort"
    label_divisor: int = _at_least(1, 2048)
    kmeans_num_clusters: list[int] = _at_least(1, default_factory=lambda: [6, 6])
    kmeans_iterations: int = _at_least(1, 10)


@dataclass
class LossConfig:
    sem_ann_loss_types: str = "segsort"
    img_sim_loss_types: str = "segsort"
    sem_ann_concentration: float = _positive(6.0)
    img_sim_concentration: float = _positive(16.0)
    margin: float = _at_least(0, 0.5)
    sem_ann_loss_weight: float = _at_least(0, 1.0)
    img_sim_loss_weight: float = _at_least(0, 0.1)
    parted_ce_loss_weight: float = _at_least(0, 1.0)
    ssc_loss_weight: float = _at_least(0, 1.0)
    memory_bank_size: int = _at_least(0, 2)


@dataclass
class TrainConfig:
    base_lr: float = _positive(1e-4)
    grad_clamp: float = _positive(0.5)
    lr_decay_epochs: int = _at_least(1, 60)
    lr_decay_factor: float = _positive(0.1)
    batch_size: int = _at_least(1, 4)
    max_iteration: int = _at_least(1, 109250)
    snapshot_step: int = _at_least(1, 21850)
    tensorboard_step: int = _at_least(1, 100)
    num_workers: int = _at_least(0, default_factory=default_num_workers)
    seed: int = _at_least(0, 0)
    precision: str = _one_of(PRECISIONS, "fp32")  # network/precision.py
    # network/model.py: both passes of the training forward in one batch; a run on the CPU starts
    # with default_joint_passes("cpu") instead
    joint_passes: bool = field(default_factory=lambda: default_joint_passes("cuda"))
    pretrained: str = IMAGENET_WEIGHTS
    snapshot_dir: str = ""


@dataclass
class TestConfig:
    batch_size: int = _at_least(1, 8)
    num_workers: int = _at_least(0, 2)
    protocol: str = "field"


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


class ConfigError(ValueError):
    """A configuration file or setting that does not fit the schema."""


def default_config() -> Config:
    """The release's configuration."""
    return Config()


def describe_accepted(section: str, key: str) -> str:
    """What ``section.key`` accepts, in words (``an integer >= 1``, ``a number > 0``, ...)."""
    spec = next(f for f in dataclasses.fields(getattr(Config(), section)) if f.name == key)
    default = getattr(getattr(Config(), section), key)
    kind = {bool: "true/false", int: "an integer", float: "a number", list: "a list of integers",
            str: "a string"}[type(default)]
    if "choices" in spec.metadata:
        return "one of " + ", ".join(spec.metadata["choices"])
    if "minimum" in spec.metadata:
        kind += f" >= {spec.metadata['minimum']}"
    if spec.metadata.get("positive"):
        kind += " > 0"
    return kind


def _in_range(value: Any, metadata: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return False
    if "choices" in metadata and any(v not in metadata["choices"] for v in values):
        return False
    if "minimum" in metadata and any(v < metadata["minimum"] for v in values):
        return False
    return not (metadata.get("positive") and any(v <= 0 for v in values))


def _coerce(value: Any, default: Any, metadata: Any) -> Any:
    """``value`` as the type of ``default`` within the field's range; ``ValueError`` if it is not."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError
        return value
    if isinstance(default, float):
        # YAML reads "1e-4" (no dot) as a string; accept any spelling float() accepts.
        if isinstance(value, bool):
            raise ValueError
        value = float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
    elif isinstance(default, list):
        if not isinstance(value, list) or len(value) != len(default) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError
        value = list(value)
    elif not isinstance(value, str):
        raise ValueError
    if not _in_range(value, metadata):
        raise ValueError
    return value


def config_from_dict(tree: dict[str, Any], source: str = "config", base: Config | None = None) -> Config:
    """``base`` (default: the defaults) with the values of a nested dict; an unknown section or
    key, or a value the key does not accept, raises :class:`ConfigError` naming it."""
    config = copy.deepcopy(base) if base is not None else default_config()
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    for section_name, section_values in tree.items():
        if section_name not in config_to_dict(config):
            raise ConfigError(f"{source}: unknown section '{section_name}'")
        section = getattr(config, section_name)
        if not isinstance(section_values, dict):
            raise ConfigError(f"{source}: section '{section_name}' must be a mapping")
        specs = {spec.name: spec for spec in dataclasses.fields(section)}
        for key, value in section_values.items():
            if key not in specs:
                raise ConfigError(f"{source}: unknown key '{section_name}.{key}'")
            try:
                setattr(section, key, _coerce(value, getattr(section, key), specs[key].metadata))
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: {section_name}.{key} must be "
                                  f"{describe_accepted(section_name, key)}, got {value!r}") from None
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_config(path: str | os.PathLike) -> Config:
    """Read a YAML config file strictly (see module docstring)."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    return config_from_dict(_in_current_keys(tree), source=str(path))


def _in_current_keys(tree: Any) -> Any:
    """A config written by an earlier version, with the meaning it had then.

    * Before ``train.precision`` existed it said ``train.mixed_precision: true|false`` (float16
      autocast or float32): read as ``precision: fp16|fp32``.
    * Before ``train.joint_passes`` existed the training forward ran its two passes as two
      calls: read as ``joint_passes: false``, so a resumed run draws its DropPath masks as it began.
    """
    train = tree.get("train") if isinstance(tree, dict) else None
    if not isinstance(train, dict):
        return tree
    train = dict(train)
    if isinstance(train.get("mixed_precision"), bool) and "precision" not in train:
        train["precision"] = "fp16" if train.pop("mixed_precision") else "fp32"
    train.setdefault("joint_passes", False)
    return {**tree, "train": train}


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write ``config`` as YAML, atomically."""
    atomic_write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), path)
