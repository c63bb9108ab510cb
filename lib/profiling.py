"""Counting host-device synchronisation points of a piece of work with ``torch.profiler``.

A sync point is anything that needs a tensor's value on the host: ``aten::_local_scalar_dense``
(``int(t)``, ``float(t)``, tensor-valued Python control flow), the ops whose output size depends
on the data (``nonzero`` behind boolean-mask indexing, ``unique``, ``bincount``,
``masked_select``) and the reads ``Tensor.item()``/``tolist()``/``numpy()``. On a GPU each one
makes the CPU wait for the device; on the CPU the same ops show where that would happen.

The three reads are labelled by wrapping the methods while the work runs: a CPU tensor's
``tolist()`` runs no aten op, and the profiler's Python-call events, which would name it, are
not recorded on every Python version (seen missing on Python 3.12 with torch 2.11).

On a GPU the profiler does not see a CUDA tensor's host copy as a sync; :func:`count_cuda_syncs`
counts there instead, with PyTorch's CUDA sync debug mode, which warns at each synchronising call.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from collections import Counter
from typing import Callable
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::_unique", "aten::_unique2", "aten::unique_dim",
    "aten::unique_consecutive", "aten::unique_dim_consecutive", "aten::bincount", "aten::masked_select",
})
READ_METHODS = ("item", "tolist", "numpy")
"""``Tensor`` methods that hand values to Python, counted as ``'item()'`` etc."""
_READ_LABELS = frozenset(f"{name}()" for name in READ_METHODS)
CUDA_SYNC_WARNING = "called a synchronizing CUDA operation"
"""What the CUDA sync debug mode says at each wait (its one-off 'prototype feature' notice is not one)."""


def _labelled(method: Callable) -> Callable:
    """``method`` run inside a profiler label ``'<name>()'``, so the ops it calls count as that one read."""
    @functools.wraps(method)
    def read(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with record_function(f"{method.__name__}()"):
            return method(*args, **kwargs)
    return read


def _sync_name(name: str) -> str | None:
    """``name`` for a sync op or a labelled read, ``None`` otherwise."""
    return name if name in SYNC_OPS or name in _READ_LABELS else None


def count_host_syncs(work: Callable[[], object]) -> Counter:
    """Sync points of one ``work()`` by name, each counted once (not again for the ops it calls)."""
    with contextlib.ExitStack() as stack:
        for name in READ_METHODS:
            stack.enter_context(mock.patch.object(torch.Tensor, name, _labelled(getattr(torch.Tensor, name))))
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
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
    ``torch.cuda.set_sync_debug_mode("warn")`` (one :data:`CUDA_SYNC_WARNING` each; explicit
    stream or event waits are not counted)."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum(CUDA_SYNC_WARNING in str(warning.message) for warning in caught)


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
