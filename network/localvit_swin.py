"""LocalViT-Swin encoder: the first three Swin-Tiny stages with locality feed-forward (docs/method.md §1.1).

One encoder per modality (``rgb_swin``, ``depth_swin``). It has no final norm and no head.
"""
from __future__ import annotations

import torch
from torch import nn

from network.swin_block import PatchMerging, SwinBlock, alternating_shift, init_swin_weights

EMBED_DIM = 96
PATCH_SIZE = 4
DEPTHS = (2, 2, 6)
NUM_HEADS = (3, 6, 12)
DROP_PATH_RATE = 0.1


class PatchEmbed(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, 96, H/4, W/4]``: Conv2d(3, 96, 4, stride 4), then LN over channels."""

    def __init__(self, in_chans: int = 3, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EncoderStage(nn.Module):
    """Window blocks with alternating shifts, then (stages 0 and 1) patch merging."""

    def __init__(
        self, dim: int, grid: int, depth: int, num_heads: int, drop_paths: list[float], downsample: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, grid, num_heads, alternating_shift(i), drop_paths[i]) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, C, h, w]`` -> (stage output ``[B, C, h, w]``, next stage input or None)."""
        for block in self.blocks:
            x = block(x)
        return x, None if self.downsample is None else self.downsample(x)


class LocalViTSwinEncoder(nn.Module):
    """``[B, 3, 224, 224]`` -> ``[enc_div4 [B,96,56,56], enc_div8 [B,192,28,28], enc_div16 [B,384,14,14]]``."""

    def __init__(self, image_size: int = 224) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed()
        rates = torch.linspace(0, DROP_PATH_RATE, sum(DEPTHS)).tolist()
        self.layers = nn.ModuleList()
        for index, (depth, heads) in enumerate(zip(DEPTHS, NUM_HEADS)):
            first = sum(DEPTHS[:index])
            self.layers.append(EncoderStage(
                dim=EMBED_DIM * 2 ** index,
                grid=image_size // PATCH_SIZE // 2 ** index,
                depth=depth,
                num_heads=heads,
                drop_paths=rates[first:first + depth],
                downsample=index < len(DEPTHS) - 1,
            ))
        self.apply(init_swin_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.patch_embed(x)
        for stage in self.layers:
            output, x = stage(x)
            features.append(output)
        return features
