"""One-time logging setup for the scripts: one line per record, only rank 0 talks at INFO."""
from __future__ import annotations

import logging
import sys


def setup_logging(rank: int = 0) -> None:
    """Send log records to stderr as ``[time] LEVEL name: message``.

    Rank 0 logs from INFO up; the other processes of a multi-process run only warnings and
    errors, so messages are not repeated once per process.
    """
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[rank {rank}] " if rank else ""
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
