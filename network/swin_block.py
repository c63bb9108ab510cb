"""The window-attention block shared by encoder, fusion and decoder, and Swin patch merging.

docs/method.md §1.1 (block, patch merging) and §1.3 (saliency-guided block). Blocks take and return
NCHW feature maps ``[B, C, h, w]`` of the fixed square grid they were built for.
"""
from __future__ import annotations

import torch
from timm.layers import DropPath, trunc_normal_
from timm.models.swin_transformer import window_partition, window_reverse
from torch import nn

from network.locality_ffn import LocalityFFN
from network.window_attention import WindowAttention, saliency_window_masks, shifted_window_mask

WINDOW_SIZE = 7
SHIFT_SIZE = 3


class SwinBlock(nn.Module):
    """``x + DropPath(WindowAttention(LN(x)))`` followed by the residual :class:`LocalityFFN`.

    Shifted blocks roll the normalised tokens by ``(-shift, -shift)`` before the window
    partition (and back after), and own the Swin region mask as buffer ``attn_mask``.
    """

    def __init__(self, dim: int, grid: int, num_heads: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.shift = shift
        self.register_buffer("attn_mask", shifted_window_mask(grid, WINDOW_SIZE, shift) if shift else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, WINDOW_SIZE)
        self.drop_path = DropPath(drop_path)
        self.conv = LocalityFFN(dim)

    def forward(
        self, x: torch.Tensor, saliency_masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``[B, C, h, w]`` -> ``[B, C, h, w]``; ``saliency_masks`` as in ``WindowAttention``."""
        _, channels, height, width = x.shape
        tokens = x.permute(0, 2, 3, 1)
        y = self.norm1(tokens)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(y, (WINDOW_SIZE, WINDOW_SIZE)).flatten(1, 2)
        windows = self.attn(windows, self.attn_mask, saliency_masks)
        y = window_reverse(windows.view(-1, WINDOW_SIZE, WINDOW_SIZE, channels), (WINDOW_SIZE, WINDOW_SIZE), height, width)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        tokens = tokens + self.drop_path(y)
        return self.conv(feed_forward_layout(tokens.permute(0, 3, 1, 2)))


def feed_forward_layout(x: torch.Tensor) -> torch.Tensor:
    """The block's ``[B, C, h, w]`` map in the memory layout the :class:`LocalityFFN` runs fastest in.

    On the CPU channels-last, which the map (a view of the block's tokens) usually is already,
    so nothing is copied: oneDNN's convolutions take it without reordering, and the next
    block's LayerNorm reads its tokens without a copy (2-core CPU: a training step at batch 2
    and an eval forward at batch 1 and 4 8–9 % faster). On a GPU contiguous NCHW: cuDNN's
    float32 kernels measured no faster in channels-last on an H100 (README), so the GPU path
    stays as timed."""
    return x.contiguous(memory_format=torch.channels_last if x.device.type == "cpu" else torch.contiguous_format)


class SaliencyGuidedBlock(nn.Module):
    """Saliency-masked window self-attention block, MWSA (docs/method.md §1.3).

    Runs the wrapped :class:`SwinBlock` ``w_attn`` (the release's state-dict name) with the
    masks of :func:`saliency_masks`; the blocks of one group share one saliency map, so the
    group computes the masks once and hands them to each block.
    """

    def __init__(self, dim: int, grid: int, num_heads: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.w_attn = SwinBlock(dim, grid, num_heads, shift, drop_path)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, C, h, w]``, ``masks`` from :func:`saliency_masks` or None (plain attention)."""
        return self.w_attn(x, masks)


def saliency_masks(saliency: torch.Tensor | None) -> torch.Tensor | None:
    """Attention masks of a ``[B, 1, h, w]`` saliency map (probabilities) at a block grid ``h = w``,
    unshifted (release quirk); None for None."""
    return None if saliency is None else saliency_window_masks(saliency, WINDOW_SIZE)


class PatchMerging(nn.Module):
    """``[B, C, h, w]`` -> ``[B, 2C, h/2, w/2]``: 2x2 neighbours on channels, LN(4C), Linear(4C -> 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quadrants = (x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2])
        merged = torch.cat(quadrants, dim=1).permute(0, 2, 3, 1)
        return self.reduction(self.norm(merged)).permute(0, 3, 1, 2)


def alternating_shift(block_index: int) -> int:
    """Odd blocks of a stage are shifted by :data:`SHIFT_SIZE`, even ones are not."""
    return SHIFT_SIZE if block_index % 2 else 0


def init_swin_weights(module: nn.Module) -> None:
    """Swin initialisation for ``module.apply``: Linear trunc-normal(0.02)/0, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
