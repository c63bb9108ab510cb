"""Helpers for tests that train the network: a realistic training batch, DropPath off, relative differences."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

BATCH_SIZE, INPUT_SIZE = 2, 224


def training_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Image, depth and labels shaped like a real batch: bg/fg scribbles with unknown elsewhere, and
    smooth edge-map-like instance labels in 1..256 (hundreds of distinct values)."""
    shape = (BATCH_SIZE, INPUT_SIZE, INPUT_SIZE)
    semantic = torch.full(shape, 2, dtype=torch.long)
    semantic[:, 8:24] = 0
    semantic[:, 100:116, 60:160] = 1
    field = F.interpolate(torch.rand(BATCH_SIZE, 1, 14, 14, generator=generator), size=INPUT_SIZE, mode="bilinear", align_corners=False)
    labels = {
        "semantic_label": semantic,
        "instance_label": (1 + 255 * field.squeeze(1)).round().long(),
        "contour_sum_label": torch.rand(shape, generator=generator),
    }
    image = torch.randn(BATCH_SIZE, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
    return image, torch.rand(BATCH_SIZE, 3, INPUT_SIZE, INPUT_SIZE, generator=generator), labels


def without_droppath(model: nn.Module) -> nn.Module:
    """``model`` with every DropPath rate set to 0, in place: its training forward is deterministic and
    no block's branch is dropped for a whole batch (which leaves that block without a gradient)."""
    for layer in model.modules():
        if isinstance(layer, DropPath):
            layer.drop_prob = 0.0
    return model


def relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude (0 for two zero tensors)."""
    value, reference = value.detach().double(), reference.detach().double()
    scale = reference.abs().max()
    return float((value - reference).abs().max() / scale) if scale > 0 else float(value.abs().max())


def gradient_difference(model: nn.Module, reference: nn.Module) -> float:
    """``‖g - g_ref‖ / ‖g_ref‖`` over the gradients of all parameters together (same parameter order)."""
    gradient, expected = (torch.cat([parameter.grad.double().flatten() for parameter in module.parameters()])
                          for module in (model, reference))
    return float((gradient - expected).norm() / expected.norm())
