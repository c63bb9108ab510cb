"""Helpers for tests that train the network."""
from __future__ import annotations

from timm.layers import DropPath
from torch import nn


def without_droppath(model: nn.Module) -> nn.Module:
    """``model`` with every DropPath rate set to 0, in place: its training forward is deterministic and
    no block's branch is dropped for a whole batch (which leaves that block without a gradient)."""
    for layer in model.modules():
        if isinstance(layer, DropPath):
            layer.drop_prob = 0.0
    return model
