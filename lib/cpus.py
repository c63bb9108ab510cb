"""How many CPU cores this process may use, and worker counts capped to them."""
from __future__ import annotations

import os


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cap_workers(requested: int) -> int:
    """``requested`` data-loading processes, at most one per available core (0 stays 0)."""
    return min(requested, available_cpus())
