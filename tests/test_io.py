"""lib.io: atomic writes leave the previous file intact and nothing else behind, whatever fails."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.io
from lib.io import (TEMPORARY_SUFFIX, WriteError, atomic_path, atomic_torch_save, atomic_write_text, is_temporary,
                    remove_stale_temporaries)
from spml.data.image_io import write_image


class _FullDisk(io.RawIOBase):
    """A file whose writes fail with ENOSPC once ``capacity`` bytes are written."""

    def __init__(self, file, capacity: int) -> None:
        self._file, self._left = file, capacity

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self._left:
            self._file.write(bytes(data[: self._left]))
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model-3.state.pth"
    atomic_torch_save({"iteration": 2}, path)
    previous = path.read_bytes()
    real_open = open
    monkeypatch.setattr(lib.io, "open", lambda file, mode="r": _FullDisk(real_open(file, mode), 4096),
                        raising=False)
    with pytest.raises(WriteError) as caught:
        atomic_torch_save({"iteration": 3, "weights": torch.zeros(100_000)}, path)
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt(),
                                   ValueError("bad")], ids=["enospc", "interrupt", "other"])
def test_any_error_inside_the_block_leaves_only_the_previous_file(tmp_path, error):
    path = tmp_path / "scores.md"
    atomic_write_text("old", path)
    with pytest.raises(type(error) if not isinstance(error, OSError) else WriteError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise error
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.md"]


def test_an_image_write_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device$"):
        write_image(np.zeros((4, 4), np.uint8), path)
    assert list(tmp_path.iterdir()) == []


def test_an_uncreatable_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/a.txt: "):
        atomic_write_text("x", tmp_path / "file" / "sub" / "a.txt")


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def test_temporaries_are_recognised_by_name_and_only_they_are_removed(tmp_path):
    with atomic_path(tmp_path / "model-7.state.pth") as tmp:
        name = tmp.name
        assert name.startswith(".model-7.state.pth.") and name.endswith(TEMPORARY_SUFFIX)
        stale = tmp_path / name
        os.link(tmp, stale.with_name(name.replace("7", "8", 1)))  # a copy "left by a killed run"
    left = tmp_path / name.replace("7", "8", 1)
    legacy = tmp_path / ".model-9.pth.ab_cd123.tmp"  # the name earlier versions used
    keep = [tmp_path / name for name in (".model-9.pth.tmp", "model-9.pth", "notes.dhfr-tmp", ".hidden.tmp")]
    for path in [legacy, *keep]:
        path.write_text("x")
    (tmp_path / ".dir.abcdefgh.dhfr-tmp").mkdir()
    assert is_temporary(left) and is_temporary(legacy) and not any(is_temporary(path) for path in keep)
    assert remove_stale_temporaries(tmp_path) == sorted([left, legacy])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".dir.abcdefgh.dhfr-tmp", "model-7.state.pth", *(path.name for path in keep)])
    assert remove_stale_temporaries(tmp_path / "absent") == []


@pytest.fixture()
def file_and_read_only_folder(tmp_path):
    """``tmp_path`` holding a file ``file`` and a read-only folder ``read-only`` (writable again
    afterwards); the test must leave nothing else there."""
    (tmp_path / "file").write_text("x")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    yield tmp_path / "file", read_only
    read_only.chmod(0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "read-only"], "nothing created"


def test_output_folder_problems_are_found_without_creating_anything(tmp_path, file_and_read_only_folder):
    from lib.io import output_folder_problem

    file, read_only = file_and_read_only_folder
    assert output_folder_problem(file) == "exists and is not a folder"
    assert output_folder_problem(read_only) == "folder is read-only (not writable)"
    assert output_folder_problem(read_only / "a" / "b") == f"cannot be created: {read_only} is read-only (not writable)"
    assert output_folder_problem(file / "out") == f"cannot be created: {file} is not a folder"
    assert output_folder_problem(tmp_path / "new" / "out") is None and output_folder_problem(tmp_path) is None


def test_output_file_problems_are_found_without_creating_anything(tmp_path, file_and_read_only_folder):
    from lib.io import output_file_problem

    file, read_only = file_and_read_only_folder
    assert output_file_problem(read_only) == "is a folder"
    assert output_file_problem(read_only / "a.json") == f"{read_only}: folder is read-only (not writable)"
    assert output_file_problem(read_only / "new" / "a.json") == (
        f"{read_only / 'new'}: cannot be created: {read_only} is read-only (not writable)")
    assert output_file_problem(file / "a.json") == f"{file}: exists and is not a folder"
    assert output_file_problem(file) is None and output_file_problem(tmp_path / "a.json") is None
    assert output_file_problem(tmp_path / "new" / "a.json") is None  # the folder is created when written
