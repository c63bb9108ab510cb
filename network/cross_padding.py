"""Cross-padding (CP) and the cross-padding attention block (CPAB), docs/method.md §1.2 and §1.4."""
from __future__ import annotations

import torch
from torch import nn

from network.swin_block import SaliencyGuidedBlock, alternating_shift, saliency_masks

CPAB_DROP_PATH_STEP = 0.1 / 11
"""DropPath rate of CPAB block i is ``CPAB_DROP_PATH_STEP * (2 + i)``."""


def cross_pad(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """Interleave two ``[B, 2c, h, w]`` maps into one ``[B, c, 2h, 2w]`` map.

    In every 2x2 cell: top-left even channels of ``f1``, top-right even channels of ``f2``,
    bottom-left odd channels of ``f2``, bottom-right odd channels of ``f1``.
    """
    batch, _, height, width = f1.shape
    top = torch.stack((f1[:, 0::2], f2[:, 0::2]), dim=-1)
    bottom = torch.stack((f2[:, 1::2], f1[:, 1::2]), dim=-1)
    cells = torch.stack((top, bottom), dim=3)
    return cells.reshape(batch, -1, 2 * height, 2 * width)


class CrossPadding(nn.Module):
    """:func:`cross_pad` followed by LayerNorm over channels: ``2 x [B, 2c, h, w]`` -> ``[B, c, 2h, 2w]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return self.norm(cross_pad(f1, f2).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CrossPaddingAttentionBlock(nn.Module):
    """CPAB: cross-padding to a ``grid x grid`` map of ``dim`` channels, then ``depth`` MWSA blocks.

    Shifts alternate 0/3; DropPath of block i is ``0.1 / 11 * (2 + i)``. The blocks share one
    set of saliency masks.
    """

    def __init__(self, dim: int, grid: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.cross_padding = CrossPadding(dim)
        self.layers = nn.ModuleList(
            SaliencyGuidedBlock(dim, grid, num_heads, alternating_shift(i), CPAB_DROP_PATH_STEP * (2 + i))
            for i in range(depth)
        )

    def forward(self, f1: torch.Tensor, f2: torch.Tensor, saliency: torch.Tensor | None = None) -> torch.Tensor:
        """``f1, f2`` ``[B, 2*dim, grid/2, grid/2]``, ``saliency`` ``[B, 1, grid, grid]`` or None."""
        x = self.cross_padding(f1, f2)
        masks = saliency_masks(saliency)
        for layer in self.layers:
            x = layer(x, masks)
        return x
