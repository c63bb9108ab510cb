"""Small constant tensors made once per dtype and device.

``torch.tensor(values, device="cuda")`` copies from pageable host memory, and such a copy
waits for the GPU stream to drain: built inside every training step, constants stall the
step like a host read. :func:`device_constant` builds each one once and then returns the same
tensor (callers must not modify it in place).
"""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def device_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)``, made on the first call and reused."""
    return torch.tensor(values, dtype=dtype, device=device)
