"""One-time logging setup for the scripts: one line per record, only rank 0 talks at INFO.

Records (and Python warnings) are written through ``tqdm.write``, so a log line never glues
onto a progress bar: the bar is cleared, the line written, the bar redrawn. This holds for
every script and for DataLoader workers forked after the setup.
"""
from __future__ import annotations

import logging
import sys

from tqdm import tqdm


class _ProgressBarSafeHandler(logging.StreamHandler):
    """A stderr handler that writes around the open tqdm bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(rank: int = 0) -> None:
    """Send log records and warnings to stderr as ``[time] LEVEL name: message``.

    Rank 0 logs from INFO up; the other processes of a multi-process run only warnings and
    errors, so messages are not repeated once per process.
    """
    handler = _ProgressBarSafeHandler(sys.stderr)
    prefix = f"[rank {rank}] " if rank else ""
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logging.captureWarnings(True)
