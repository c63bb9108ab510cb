"""Ctrl-C in the long-running scripts: never in the middle of writes that belong together, and one
line instead of a traceback.

``deferred_interrupts()`` holds back SIGINT while a group of files is written (a checkpoint's
model and state file): the interruption takes effect, as ``KeyboardInterrupt``, once the group is
complete. ``exit_status(main, program)`` runs a script's ``main`` and answers Ctrl-C with one line.
``INTERRUPTED`` is the exit status of an interrupted script (128 + SIGINT, as a shell reports it).
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
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


def exit_status(main: Callable[[], int | None], program: str) -> int:
    """``main()``'s exit status (None: 0); on Ctrl-C, the line ``<program>: interrupted`` on stderr
    and :data:`INTERRUPTED`. Whatever ``main`` cleans up on its way out has been cleaned up then."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return INTERRUPTED
