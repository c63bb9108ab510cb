"""Training checkpoints (docs/method.md §4, §1.8): ``model-<iter>.pth`` in the release layout and
``model-<iter>.state.pth`` beside it with what a resumed run needs to repeat the uninterrupted
one: the optimiser, the grad scaler, the memory bank and every process's random generators.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from lib.distributed import ProcessGroup, barrier, gather_objects
from lib.interrupts import deferred_interrupts
from lib.io import atomic_torch_save
from network import CheckpointError, load_checkpoint, read_torch_file, save_checkpoint
from spml.training.layout import checkpoint_paths
from spml.training.step import TrainingState

logger = logging.getLogger("train")
STATE_KEYS = ("iteration", "world_size", "optimizer", "scaler", "memory_bank", "rng")
"""What a ``model-<iter>.state.pth`` holds."""


def rng_state() -> dict:
    """This process's random generators (python, numpy, torch CPU and, on a GPU, CUDA).

    numpy's uint32 key is stored as int64 (plain tensors load with ``weights_only``)."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(tree: object, device: torch.device) -> object:
    """``tree`` (tensors in dicts, lists, tuples) with every tensor moved to ``device``."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {key: _to_device(value, device) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_device(value, device) for value in tree)
    return tree


def save_training_checkpoint(stage_dir: Path, iteration: int, state: TrainingState, group: ProcessGroup) -> None:
    """Write ``model-<iter>.state.pth`` then ``model-<iter>.pth`` (each atomic, and Ctrl-C waits until
    both are written; a collective call: every process's random generators are gathered; every process
    holds the same memory bank)."""
    rng_states = gather_objects(rng_state())
    if group.is_main:
        model_path, state_path = checkpoint_paths(stage_dir, iteration)
        with deferred_interrupts():
            atomic_torch_save({
                "iteration": iteration,
                "world_size": group.world_size,
                "optimizer": state.optimizer.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler is not None else None,
                "memory_bank": state.memory.state_dict(),
                "rng": rng_states,
            }, state_path)
            save_checkpoint(state.model, model_path)
        logger.info("saved %s", model_path)
    barrier()


def restore_training_checkpoint(stage_dir: Path, iteration: int, state: TrainingState, group: ProcessGroup) -> None:
    """Load what :func:`save_training_checkpoint` wrote for ``iteration`` into ``state``."""
    model_path, state_path = checkpoint_paths(stage_dir, iteration)
    load_checkpoint(state.model, model_path)
    # Onto the CPU: random-generator states must stay there; the optimiser moves its own state.
    saved = read_torch_file(state_path, required_keys=STATE_KEYS)
    if saved["iteration"] != iteration:
        raise CheckpointError(f"{state_path}: holds iteration {saved['iteration']}, expected {iteration}")
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved["scaler"] is not None:
        state.scaler.load_state_dict(saved["scaler"])
    state.memory.load_state_dict(_to_device(saved["memory_bank"], group.device))
    if saved["world_size"] == group.world_size:
        set_rng_state(saved["rng"][group.rank])
    else:
        logger.warning("%s was written by %d processes, this run has %d: random streams restart from the seed",
                       state_path, saved["world_size"], group.world_size)
    logger.info("resuming after iteration %d from %s", iteration, model_path)
