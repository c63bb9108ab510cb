"""Counting host-device synchronisation points of a piece of work with ``torch.profiler``.

A sync point is anything that needs a tensor's value on the host: ``aten::_local_scalar_dense``
(``item()``, ``int(t)``, tensor-valued Python control flow), the ops whose output size depends
on the data (``nonzero`` behind boolean-mask indexing, ``unique``, ``bincount``,
``masked_select``) and the Python-level reads ``tolist()``/``item()``/``numpy()``. On a GPU each
one makes the CPU wait for the device; on the CPU the same ops show where that would happen.

On a GPU the profiler does not see a CUDA tensor's ``tolist()``; :func:`count_cuda_syncs` counts
there instead, with PyTorch's CUDA sync debug mode, which warns at each synchronising call.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::_unique", "aten::_unique2", "aten::unique_dim",
    "aten::unique_consecutive", "aten::unique_dim_consecutive", "aten::bincount", "aten::masked_select",
})
# Python calls recorded with with_stack=True: a CPU tensor's tolist() runs no aten op.
PYTHON_READ = re.compile(r"<built-in method (tolist|item|numpy) of Tensor object")


def _sync_name(name: str) -> str | None:
    """``name`` for a sync op, ``'tolist()'`` etc. for a Python-level read, ``None`` otherwise."""
    read = PYTHON_READ.match(name)
    if read is not None:
        return f"{read.group(1)}()"
    return name if name in SYNC_OPS else None


def count_host_syncs(work: Callable[[], object]) -> Counter:
    """Sync points of one ``work()`` by name, each counted once (not again for the ops it calls)."""
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as profiler:
        work()
    counts: Counter = Counter()
    for event in profiler.events():
        name = _sync_name(event.name)
        if name is None:
            continue
        parent = event.cpu_parent
        while parent is not None and _sync_name(parent.name) is None:
            parent = parent.cpu_parent
        if parent is None:
            counts[name] += 1
    return counts


def count_cuda_syncs(work: Callable[[], object]) -> int:
    """Calls of one ``work()`` that made the host wait for a CUDA device, as counted by
    ``torch.cuda.set_sync_debug_mode("warn")`` (one warning each; explicit stream or event
    waits are not counted)."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(warning.message).lower() for warning in caught)


def count_dispatched_ops(work: Callable[[], object]) -> Counter:
    """Ops of one ``work()`` that compute something (views left out), by name, as PyTorch
    dispatches them: on a GPU each is at least one kernel launch."""
    counts: Counter = Counter()

    class _Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if not func.is_view:
                counts[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with _Counting():
        work()
    return counts
