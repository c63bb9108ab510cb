"""Checkpoint I/O in the release layout and ImageNet initialisation (docs/method.md §1.8).

Release checkpoints are ``{'embedding_model': state_dict}`` with float32 and int64 entries;
the LocalViT-Swin ImageNet checkpoint is ``{'model': state_dict}`` of a 4-stage encoder.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lib.io import atomic_torch_save

RELEASE_KEY = "embedding_model"
IMAGENET_KEY = "model"
CheckpointSource = str | os.PathLike | Mapping[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint file or state dict that does not fit the model; the message names the culprit."""


def load_checkpoint(model: nn.Module, path_or_state_dict: CheckpointSource) -> None:
    """Load a release checkpoint (or its bare state dict) into ``model``, strictly.

    Entries are cast to the dtype of the model's own tensors. Raises :class:`CheckpointError`
    naming the missing, unexpected or mis-shaped entry, or the unreadable file.
    """
    state, origin = _read_state(path_or_state_dict, RELEASE_KEY)
    own = model.state_dict()
    _require_same_keys(own, state, origin)
    for name, value in state.items():
        _require_shape(value, own[name], f"entry {name!r}", origin)
    model.load_state_dict({name: value.to(own[name].dtype) for name, value in state.items()}, strict=True)


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``{'embedding_model': state_dict}`` atomically: floats as float32, integers as int64, on CPU."""
    state = {
        name: tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype).clone()
        for name, tensor in model.state_dict().items()
    }
    atomic_torch_save({RELEASE_KEY: state}, path)


def init_from_imagenet(model: nn.Module, path_or_state_dict: CheckpointSource) -> list[str]:
    """Copy LocalViT-Swin ImageNet entries into ``model`` by :func:`imagenet_source_key`.

    Returns the initialised model entry names in state-dict order; all other entries keep
    their values. A missing or mis-shaped source entry raises :class:`CheckpointError`.
    """
    source, origin = _read_state(path_or_state_dict, IMAGENET_KEY)
    own = model.state_dict()
    mapping = {target: imagenet_source_key(target) for target in own}
    mapping = {target: key for target, key in mapping.items() if key is not None}
    for target, key in mapping.items():
        if key not in source:
            raise CheckpointError(f"{origin}: missing ImageNet entry {key!r} (needed for {target!r})")
        _require_shape(source[key], own[target], f"ImageNet entry {key!r} (for {target!r})", origin)
    with torch.no_grad():
        for target, key in mapping.items():
            own[target].copy_(source[key])
    return list(mapping)


_FUSION_RULES = (
    (re.compile(r"sfnet\.fuse_swin\.cpab\.layers\.(\d+)\.w_attn\.(.+)"), r"layers.1.blocks.\1.\2"),
    (re.compile(r"sfnet\.fuse_swin\.pmab\.patch_merging\.(.+)"), r"layers.1.downsample.\1"),
    (re.compile(r"sfnet\.fuse_swin\.pmab\.layers\.(\d+)\.w_attn\.(.+)"), r"layers.2.blocks.\1.\2"),
)
_ENCODER_PREFIXES = ("sfnet.rgb_swin.", "sfnet.depth_swin.")


def imagenet_source_key(target_key: str) -> str | None:
    """ImageNet checkpoint key that initialises model entry ``target_key``, or None.

    Encoders copy their own names; the fusion CPAB blocks come from stage-2 blocks, its patch
    merging from stage 2's downsample and its PMAB blocks from stage-3 blocks (zero-based
    ``layers.1`` / ``layers.2``).
    """
    for prefix in _ENCODER_PREFIXES:
        if target_key.startswith(prefix):
            return target_key[len(prefix):]
    for pattern, replacement in _FUSION_RULES:
        if pattern.fullmatch(target_key):
            return pattern.sub(replacement, target_key)
    return None


def _read_state(source: CheckpointSource, wrapper_key: str) -> tuple[Mapping[str, torch.Tensor], str]:
    """The state dict of ``source`` (unwrapped from ``wrapper_key`` if wrapped) and a name for messages."""
    if isinstance(source, Mapping):
        state, origin = source, "state dict"
    else:
        state, origin = _torch_load(Path(source)), str(source)
    if wrapper_key in state:
        state = state[wrapper_key]
        origin = f"{origin}[{wrapper_key!r}]"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{origin}: expected a state dict, found {type(state).__name__}")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{origin}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return state, origin


def _torch_load(path: Path) -> Mapping:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated download or not a .pth file?): {error}"
        ) from error
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(loaded).__name__}")
    return loaded


def _require_same_keys(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], origin: str) -> None:
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    if missing:
        raise CheckpointError(f"{origin}: missing entry {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{origin}: unexpected entry {unexpected[0]!r} ({len(unexpected)} unexpected in all)")


def _require_shape(value: torch.Tensor, target: torch.Tensor, what: str, origin: str) -> None:
    if value.shape != target.shape:
        raise CheckpointError(
            f"{origin}: {what} has shape {list(value.shape)}, the model needs {list(target.shape)}"
        )
