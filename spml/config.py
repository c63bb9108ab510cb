"""Run configuration: typed defaults equal to the release (docs/method.md §2, §4), YAML in and out.

A config is a tree of dataclasses. ``load_config`` reads a YAML file (the filled
``configs/sod_template.yaml``) strictly: an unknown key or a value of the wrong type raises
an error naming the key. ``apply_overrides`` takes ``section.key=value`` strings, which is
how the launchers fill the template.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lib.io import atomic_write_text

TEST_SETS = ("LFSD", "NJU2K", "NLPR", "DES", "SIP", "SSD", "STERE", "DUT")


@dataclass
class DatasetConfig:
    data_dir: str = "dataroot"
    # List files; empty means the default place under ``data_dir`` (see spml.data.lists).
    train_list: str = ""
    test_sets: list[str] = field(default_factory=lambda: list(TEST_SETS))
    crop_size: int = 224
    num_classes: int = 2
    semantic_ignore_index: int = 255


@dataclass
class NetworkConfig:
    backbone_types: str = "rgbd_sod_sfnet"
    prediction_types: str = "segsort"
    embedding_dim: int = 64
    label_divisor: int = 2048
    kmeans_num_clusters: list[int] = field(default_factory=lambda: [6, 6])
    kmeans_iterations: int = 10


@dataclass
class LossConfig:
    sem_ann_loss_types: str = "segsort"
    img_sim_loss_types: str = "segsort"
    sem_ann_concentration: float = 6.0
    img_sim_concentration: float = 16.0
    margin: float = 0.5
    sem_ann_loss_weight: float = 1.0
    img_sim_loss_weight: float = 0.1
    parted_ce_loss_weight: float = 1.0
    ssc_loss_weight: float = 1.0
    memory_bank_size: int = 2


@dataclass
class TrainConfig:
    base_lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clamp: float = 0.5
    lr_decay_epochs: int = 60
    lr_decay_factor: float = 0.1
    batch_size: int = 4
    max_iteration: int = 109250
    snapshot_step: int = 21850
    tensorboard_step: int = 100
    num_workers: int = 4
    seed: int = 0
    mixed_precision: bool = False
    pretrained: str = "snapshots/localvit/localvit_swin.pth"
    snapshot_dir: str = ""


@dataclass
class TestConfig:
    batch_size: int = 8
    num_workers: int = 2
    protocol: str = "field"
    save_dir: str = ""


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def default_config() -> Config:
    """The release's configuration."""
    return Config()


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Check ``value`` against the type of the field's default; ints are accepted for floats."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if isinstance(default, float):
        # YAML reads "1e-4" (no dot) as a string; accept any spelling float() accepts.
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def config_from_dict(tree: dict[str, Any], source: str = "config") -> Config:
    """Build a :class:`Config` from a nested dict; unknown sections or keys raise, naming them."""
    config = default_config()
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    for section_name, section_values in tree.items():
        if not hasattr(config, section_name):
            raise ConfigError(f"{source}: unknown section '{section_name}'")
        section = getattr(config, section_name)
        if not isinstance(section_values, dict):
            raise ConfigError(f"{source}: section '{section_name}' must be a mapping")
        for key, value in section_values.items():
            if not hasattr(section, key):
                raise ConfigError(f"{source}: unknown key '{section_name}.{key}'")
            setattr(section, key, _coerce(value, getattr(section, key), f"{section_name}.{key}"))
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
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return config_from_dict(tree, source=str(path))


def save_config(config: Config, path: str | os.PathLike) -> None:
    atomic_write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), path)


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Return a copy of ``config`` with ``section.key=value`` overrides (values parsed as YAML)."""
    tree = config_to_dict(config)
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        section, dot, key = dotted.partition(".")
        if not sep or not dot:
            raise ConfigError(f"override '{item}': expected section.key=value")
        tree.setdefault(section, {})[key] = yaml.safe_load(raw) if raw != "" else ""
    return config_from_dict(tree, source="overrides")


def _format_lr(lr: float) -> str:
    """1e-4 -> '1e-4', as the release's launcher writes learning rates."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def release_snapshot_dir(config: Config, root: str | os.PathLike = "snapshots") -> Path:
    """The snapshot directory named after the hyper-parameters, as the release's launcher does.

    ``<root>/sod_scribble/<backbone>_<prediction>/p<crop>_dim<d>_nc<k>_ki<it>_lr<lr>_bs<b>_it<n>_
    <sem_ann type><kappa>_<img_sim type><kappa>_w<sem_ann>_<img_sim>_<pce>_<ssc>``;
    checkpoints go to its ``stage1/``.
    """
    net, loss, train = config.network, config.loss, config.train
    name = (
        f"p{config.dataset.crop_size}_dim{net.embedding_dim}_nc{net.kmeans_num_clusters[0]}"
        f"_ki{net.kmeans_iterations}_lr{_format_lr(train.base_lr)}_bs{train.batch_size}"
        f"_it{train.max_iteration}"
        f"_{loss.sem_ann_loss_types}{loss.sem_ann_concentration:g}"
        f"_{loss.img_sim_loss_types}{loss.img_sim_concentration:g}"
        f"_w{loss.sem_ann_loss_weight:g}_{loss.img_sim_loss_weight:g}"
        f"_{loss.parted_ce_loss_weight:g}_{loss.ssc_loss_weight:g}"
    )
    return Path(root) / "sod_scribble" / f"{net.backbone_types}_{net.prediction_types}" / name
