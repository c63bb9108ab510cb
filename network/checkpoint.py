"""Checkpoint I/O in the release layout and ImageNet initialisation (docs/method.md §1.8).

Release checkpoints are ``{'embedding_model': state_dict}`` with float32 and int64 entries;
the LocalViT-Swin ImageNet checkpoint is ``{'model': state_dict}`` of a 4-stage encoder.
Every checkpoint file (those two and the training state files) is read by
:func:`read_torch_file`, which turns any failure into one :class:`CheckpointError` line.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from torch import nn

from lib.io import atomic_torch_save
from lib.sniff import ZIP_MAGIC, looks_like_html, read_head

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
        state, origin = read_torch_file(source), str(source)
    if wrapper_key in state:
        state = state[wrapper_key]
        origin = f"{origin}[{wrapper_key!r}]"
    else:
        _require_not_other_layout(state, wrapper_key, origin)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{origin}: expected a state dict, found {type(state).__name__}")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{origin}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return state, origin


def read_torch_file(path: str | os.PathLike, required_keys: Collection[str] = ()) -> dict:
    """The dict saved in ``path`` (``torch.load`` on the CPU, ``weights_only=True``).

    Every checkpoint read goes through here: release models, ImageNet weights and training
    state files. Any failure raises :class:`CheckpointError` with one line naming the file
    and what it looks like (missing, empty, an HTML page, a truncated zip or torch archive,
    not a torch file, objects other than tensors, or a dict lacking ``required_keys``).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        head = read_head(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint file ({error.strerror})") from None
    problem = _sniff(path, head)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then reads fine
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every torch failure becomes one line
        raise CheckpointError(f"{path}: {_describe_load_failure(path, head, error)}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a dict checkpoint")
    missing = [key for key in required_keys if key not in loaded]
    if missing:
        raise CheckpointError(
            f"{path}: lacks {', '.join(map(repr, missing))}; it looks like {describe_layout(loaded)}"
        )
    return loaded


def describe_layout(checkpoint: Mapping) -> str:
    """What kind of checkpoint a loaded dict is, for messages."""
    if RELEASE_KEY in checkpoint:
        return f"a DHFR model checkpoint ({{{RELEASE_KEY!r}: state dict}})"
    if {"optimizer", "iteration"} <= set(checkpoint):
        return "a training state file (model-<iter>.state.pth: optimiser, memory bank, random generators)"
    if IMAGENET_KEY in checkpoint:
        return f"ImageNet weights ({{{IMAGENET_KEY!r}: state dict}}, e.g. localvit_swin.pth)"
    if _is_tensor_dict(checkpoint):
        return f"a bare state dict of {len(checkpoint)} tensors"
    return f"a dict with keys {sorted(map(str, checkpoint))[:5]}"




def _sniff(path: Path, head: bytes) -> str | None:
    """What the file obviously is instead of a checkpoint, from its first bytes, or None."""
    if not head:
        return "empty file (0 bytes): an interrupted download or write?"
    if looks_like_html(head):
        return "an HTML page, not a checkpoint (a download that fetched a web page, e.g. Google Drive's warning?)"
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            size = path.stat().st_size
            return f"truncated zip/torch archive ({size} bytes, no zip directory at its end: an interrupted download or write?)"
        return None
    if head[:1] == b"\x80":  # a pickle: torch's legacy format (or a plain pickle, refused by torch.load below)
        return None
    return f"not a torch file (it starts with {head[:16]!r})"


def _describe_load_failure(path: Path, head: bytes, error: Exception) -> str:
    """One line for a ``torch.load`` failure on a file that passed :func:`_sniff`."""
    if isinstance(error, EOFError) or "unexpected EOF" in str(error):
        return "truncated torch file (it ends in the middle of its data: an interrupted download or write?)"
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            return f"holds Python objects other than tensors and plain containers (e.g. {found.group(1)}); refused"
        return "not a torch checkpoint (a pickle that torch's safe loader cannot read)"
    if head.startswith(ZIP_MAGIC):
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            with zipfile.ZipFile(path) as archive:
                if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist()):
                    return "a zip archive, but not a torch file (no data.pkl inside)"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"damaged torch archive ({first_line.split('. ')[0]})"
    return f"not a readable torch file ({type(error).__name__})"


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _require_not_other_layout(state: Mapping, wrapper_key: str, origin: str) -> None:
    """A whole checkpoint of another kind (ImageNet weights, a state file, ...) is named as such."""
    if _is_tensor_dict(state):
        return
    wanted = "a DHFR model checkpoint" if wrapper_key == RELEASE_KEY else "ImageNet weights"
    raise CheckpointError(f"{origin}: expected {wanted}, found {describe_layout(state)}")


def _require_same_keys(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], origin: str) -> None:
    missing = [name for name in own if name not in state]
    unexpected = [name for name in state if name not in own]
    problems = []
    if missing:
        problems.append(f"missing entry {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        problems.append(f"unexpected entry {unexpected[0]!r} ({len(unexpected)} unexpected in all)")
    if problems:
        raise CheckpointError(f"{origin}: not a checkpoint of this model: {'; '.join(problems)}")


def _require_shape(value: torch.Tensor, target: torch.Tensor, what: str, origin: str) -> None:
    if value.shape != target.shape:
        raise CheckpointError(
            f"{origin}: {what} has shape {list(value.shape)}, the model needs {list(target.shape)}"
        )
