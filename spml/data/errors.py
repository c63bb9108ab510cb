"""Bad and repaired input: the error raised for unusable data, and the once-per-file repair log.

docs/method.md §3.1: real data is untidy; a repair (16-bit depth, size mismatch) is logged once per
file under the logger ``spml.data``. Input that cannot be repaired raises :class:`DataError`
with one line naming the file (or ``list:line``). "Once" is per process: each DataLoader
worker logs a repaired file the first time it reads it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Iterator

logger = logging.getLogger("spml.data")

_logged_repairs: set[tuple[str, str]] = set()
_collecting = threading.local()


class DataError(ValueError):
    """A data file or list that cannot be used; the message names the file or list line."""


def log_repair_once(path: str | os.PathLike, repair: str) -> None:
    """Log ``repair`` for ``path`` at WARNING level, the first time only (inside
    :func:`collect_repairs`: gather it instead)."""
    key = (str(path), repair)
    collected = getattr(_collecting, "repairs", None)
    if collected is not None:
        collected.append(key)
        return
    if key not in _logged_repairs:
        _logged_repairs.add(key)
        logger.warning("%s: %s", path, repair)


@contextlib.contextmanager
def collect_repairs() -> Iterator[list[tuple[str, str]]]:
    """Within the block (in this thread), repairs are gathered as ``(path, repair)`` into the
    yielded list instead of logged: a worker hands them to the process that shows the progress
    bar, which logs them with :func:`log_repair_once`."""
    previous = getattr(_collecting, "repairs", None)
    _collecting.repairs = collected = []
    try:
        yield collected
    finally:
        _collecting.repairs = previous
