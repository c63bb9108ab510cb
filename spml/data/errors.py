"""Bad and repaired input: the error raised for unusable data, and the once-per-file repair log.

docs/method.md §3.1: real data is untidy; a repair (16-bit depth, size mismatch) is logged once per
file under the logger ``spml.data``. Input that cannot be repaired raises :class:`DataError`
with one line naming the file (or ``list:line``). "Once" is per process: each DataLoader
worker logs a repaired file the first time it reads it.
"""
from __future__ import annotations

import logging
import os

logger = logging.getLogger("spml.data")

_logged_repairs: set[tuple[str, str]] = set()


class DataError(ValueError):
    """A data file or list that cannot be used; the message names the file or list line."""


def log_repair_once(path: str | os.PathLike, repair: str) -> None:
    """Log ``repair`` for ``path`` at WARNING level, the first time only."""
    key = (str(path), repair)
    if key not in _logged_repairs:
        _logged_repairs.add(key)
        logger.warning("%s: %s", path, repair)
