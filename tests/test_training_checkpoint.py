"""Training checkpoints (spml.training.checkpoint): a full disk while writing one."""
from __future__ import annotations

import errno

import pytest
import torch

from lib.distributed import ProcessGroup
from lib.io import WriteError, is_temporary
from network import build_model
from spml.training.checkpoint import save_training_checkpoint
from spml.training.step import make_training_state


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    state = make_training_state(build_model(), 1e-4, 2, "fp32", torch.device("cpu"))
    group = ProcessGroup(rank=0, world_size=1, device=torch.device("cpu"))
    save_training_checkpoint(tmp_path, 1, state, group)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError, match=r"model-1\.state\.pth.*No space left on device") as caught:
        save_training_checkpoint(tmp_path, 1, state, group)
    assert "\n" not in str(caught.value)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert not [path for path in tmp_path.iterdir() if is_temporary(path)]
