"""Training checkpoints (spml.training.checkpoint): a full disk, or Ctrl-C, while writing one."""
from __future__ import annotations

import errno
import os
import signal

import pytest
import torch

from lib.distributed import ProcessGroup
from lib.io import WriteError, is_temporary
from network import build_model
from spml.training.checkpoint import save_training_checkpoint
from spml.training.layout import newest_complete_checkpoint
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


def test_ctrl_c_during_a_checkpoint_takes_effect_once_both_files_are_written(tmp_path, monkeypatch):
    state = make_training_state(build_model(), 1e-4, 2, "fp32", torch.device("cpu"))
    group = ProcessGroup(rank=0, world_size=1, device=torch.device("cpu"))
    real_save = torch.save

    def save_then_ctrl_c(obj, file, *args, **kwargs):  # Ctrl-C while the state file, written first, is saved
        real_save(obj, file, *args, **kwargs)
        if not os.path.exists(tmp_path / "model-1.pth"):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(torch, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint(tmp_path, 1, state, group)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model-1.pth", "model-1.state.pth"]
    assert newest_complete_checkpoint(tmp_path) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
