"""Deterministic weights of ../shared/reference/README.md §1, shared by the tests that use the fixtures.

Every entry ``(name, tensor)`` of a model's state dict gets values from a generator seeded
with ``crc32(name)``, drawn in float64 and cast to the entry's dtype, so float32 and float64
runs use the same numbers.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn

KEPT_BUFFERS = ("relative_position_index", "attn_mask")


def deterministic_value(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The ../shared/reference/README.md §1 value of one state-dict entry, in ``tensor``'s dtype and on the CPU."""
    if name.endswith("num_batches_tracked"):
        return torch.zeros_like(tensor, device="cpu")
    if name.endswith(KEPT_BUFFERS):
        return tensor.detach().cpu().clone()
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
    shape = tuple(tensor.shape)

    def normal() -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    if name.endswith("running_var"):
        value = 1 + 0.5 * torch.rand(shape, generator=generator, dtype=torch.float64)
    elif name.endswith("running_mean"):
        value = 0.1 * normal()
    elif "relative_position_bias_table" in name:
        value = 0.5 * normal()
    elif name.endswith("bias"):
        value = 0.1 * normal()
    elif tensor.dim() == 1:
        value = 1 + 0.1 * normal()
    else:
        value = normal() / math.sqrt(math.prod(shape[1:]))
    return value.to(tensor.dtype)


def deterministic_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """../shared/reference/README.md §1 weights for every entry of ``model.state_dict()``, in the model's dtypes."""
    return {name: deterministic_value(name, tensor) for name, tensor in model.state_dict().items()}
