"""Ctrl-C in the long-running scripts: never in the middle of writes that belong together, and one
line instead of a traceback.

``deferred_interrupts()`` holds back SIGINT while a group of files is written (a checkpoint's
model and state file): the interruption takes effect, as ``KeyboardInterrupt``, once the group is
complete. ``INTERRUPTED`` is the exit status of an interrupted script (128 + SIGINT, as a shell
reports it).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = 128 + signal.SIGINT


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) is recorded instead of raised; after the block, a recorded
    one raises ``KeyboardInterrupt``. Outside the main thread (where Python cannot set signal
    handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
