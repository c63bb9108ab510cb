"""Counting host-device synchronisation points of a piece of work with ``torch.profiler``.

A read of a device value on the host (``.item()``, ``int(t)``, tensor-valued ``if``), an op
whose output size depends on values (``nonzero``, boolean-mask indexing, ``unique``) and a
copy to the host make the CPU wait for the GPU; on the CPU the same ops show where that would
happen. The names below are the profiler's events for them.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from torch.profiler import ProfilerActivity, profile

HOST_SYNC_EVENTS = (
    "aten::_local_scalar_dense",  # .item(), int(t), float(t), bool(t), tensor-valued Python control flow
    "aten::nonzero",  # nonzero, boolean-mask indexing and masked assignment
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::unique_dim_consecutive",
)


def count_host_syncs(work: Callable[[], object]) -> dict[str, int]:
    """Run ``work()`` once under the profiler; the number of events of each :data:`HOST_SYNC_EVENTS` name seen."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        work()
    counts = Counter(event.name for event in profiler.events() if event.name in HOST_SYNC_EVENTS)
    return dict(sorted(counts.items()))
