"""Arithmetic precision of the network on a GPU: exact float32 by default, TF32 or bf16/fp16 on request,
for inference (``--precision``) and training (``PRECISION``).

PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) for float32 inputs unless told
otherwise. TF32 moves outputs past the saliency-mask thresholds of the attention blocks
(docs/method.md §1.3), so the released weights would no longer give the release's maps: the
exact setting turns it off. The faster settings and their measured accuracy cost on the
forward fixture are listed in README.md ("GPU fast paths").

| precision | float32 matmul/conv | autocast |
|---|---|---|
| ``fp32`` (default) | IEEE float32 | none |
| ``tf32`` | TF32 | none |
| ``bf16`` / ``fp16`` | IEEE float32 | ``torch.autocast`` to that dtype |
"""
from __future__ import annotations

import contextlib

import torch

from lib.precisions import PRECISIONS

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    return precision


def set_float32_precision(precision: str) -> None:
    """Allow TF32 for float32 matmuls and convolutions only for ``precision == "tf32"`` (process-wide)."""
    allow_tf32 = check_precision(precision) == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bf16/fp16 for those precisions, a no-op otherwise.

    The autocast weight-cast cache is off, so a CUDA graph captured inside it owns its casts.
    """
    dtype = AUTOCAST_DTYPES.get(check_precision(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)
