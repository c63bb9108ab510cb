"""Atomic file writes: a crash or a full disk never leaves a half-written file at the destination.

A write goes to a temporary file beside the destination, named ``.<name>.<8 random
characters>.dhfr-tmp``, which is renamed onto the destination only when it is complete and
removed on any error. Only a killed process leaves one behind; :func:`remove_stale_temporaries`
finds those by their name and removes them.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

TEMPORARY_SUFFIX = ".dhfr-tmp"
# ``.<name>.<mkstemp's 8 characters><suffix>``; ``.tmp`` is the suffix of earlier versions.
_TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}(?:" + re.escape(TEMPORARY_SUFFIX) + r"|\.tmp)")


class WriteError(OSError):
    """A file could not be written; one line naming the file and the reason (e.g. a full disk)."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), os.fspath(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


def current_umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path``'s name is that of a temporary file written by :func:`atomic_path`."""
    return _TEMPORARY_NAME.fullmatch(Path(path).name) is not None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the destination folder (same file system, so the final
    ``os.replace`` is atomic) and is removed if anything fails; an ``OSError`` (no space,
    no permission) is raised again as a one-line :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(path, error) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


class _ErrorKeepingWriter:
    """A binary file for ``torch.save`` that remembers the ``OSError`` of a failed write:
    torch reports it as a ``RuntimeError`` without the reason."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self._file.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_path` (torch imported here: data tools need no torch)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _ErrorKeepingWriter(file)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def output_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (created if needed), or None; checked
    before any work so that a bad output path fails at once. Nothing is created."""
    folder = Path(os.path.abspath(folder))
    if folder.exists():
        if not folder.is_dir():
            return "exists and is not a folder"
        return None if _writable(folder) else "folder is read-only (not writable)"
    ancestor = next(parent for parent in folder.parents if parent.exists())
    if not ancestor.is_dir():
        return f"cannot be created: {ancestor} is not a folder"
    return None if _writable(ancestor) else f"cannot be created: {ancestor} is read-only (not writable)"


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why the file ``path`` cannot be written (its folder created if needed), or None; checked
    before any work so that a bad output path fails at once. Nothing is created."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        return "is a folder"
    problem = output_folder_problem(path.parent)
    return None if problem is None else f"{path.parent}: {problem}"


def _writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``; a folder without the owner's write
    permission counts as read-only even for the superuser, who could write into it anyway."""
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & stat.S_IWUSR)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` (not its subfolders)
    when a process was killed mid-write; return them, sorted.

    Call it when no other process of this program writes into ``folder`` (at the start or
    resume of a run); other files, whatever their name, are never touched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(path for path in folder.iterdir() if is_temporary(path) and path.is_file()
                   and not path.is_symlink())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
