"""The RGB-D fusion block ``fuse_swin``: CPAB then the patch-merging attention block (docs/method.md §1.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from network.cross_padding import CPAB_DROP_PATH_STEP, CrossPaddingAttentionBlock
from network.swin_block import PatchMerging, SaliencyGuidedBlock, alternating_shift, init_swin_weights, saliency_masks

ENCODER_DIM = 384
FUSION_GRID = 28
CPAB_HEADS = 6
PMAB_HEADS = 12
FUSION_DEPTH = 2


class PatchMergingAttentionBlock(nn.Module):
    """PMAB: patch merging ``[B, C, 2g, 2g]`` -> ``[B, 2C, g, g]``, then MWSA blocks at grid ``g``.

    The saliency map is bilinearly resized (align_corners=False) to ``g x g``; DropPath of
    block i is ``0.1 / 11 * (4 + i)``. The blocks share one set of saliency masks.
    """

    def __init__(self, dim: int, grid: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.patch_merging = PatchMerging(dim)
        self.layers = nn.ModuleList(
            SaliencyGuidedBlock(2 * dim, grid, num_heads, alternating_shift(i), CPAB_DROP_PATH_STEP * (4 + i))
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        x = self.patch_merging(x)
        masks = saliency_masks(F.interpolate(saliency, size=x.shape[-2:], mode="bilinear", align_corners=False))
        for layer in self.layers:
            x = layer(x, masks)
        return x


class FusionBlock(nn.Module):
    """``rgb, depth`` ``[B, 384, 14, 14]`` + saliency ``[B, 1, 28, 28]`` -> fused ``[B, 384, 14, 14]``."""

    def __init__(self) -> None:
        super().__init__()
        self.cpab = CrossPaddingAttentionBlock(ENCODER_DIM // 2, FUSION_GRID, FUSION_DEPTH, CPAB_HEADS)
        self.pmab = PatchMergingAttentionBlock(ENCODER_DIM // 2, FUSION_GRID // 2, FUSION_DEPTH, PMAB_HEADS)
        self.apply(init_swin_weights)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        return self.pmab(self.cpab(rgb, depth, saliency), saliency)
