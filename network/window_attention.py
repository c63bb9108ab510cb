"""Window self-attention with relative position bias and optional saliency guidance (docs/method.md §1.1, §1.3).

Top-down: the additive masks a block feeds to its attention (Swin shift-region mask, saliency
foreground/background masks), then :class:`WindowAttention` itself. Window tensors are laid out
``[B * num_windows, N, C]`` with ``N = window_size ** 2``, windows in row-major order per image.
"""
from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.swin_transformer import get_relative_position_index, window_partition
from torch import nn

MASKED_LOGIT = -100.0
"""Additive logit for a disallowed query/key pair (the release uses -100, not -inf)."""

FOREGROUND_THRESHOLD = 0.8
BACKGROUND_THRESHOLD = 0.2


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0 where ``allowed`` (bool) holds, :data:`MASKED_LOGIT` elsewhere; same shape."""
    return torch.where(allowed, 0.0, MASKED_LOGIT).to(dtype)


def member_pairs(member: torch.Tensor) -> torch.Tensor:
    """``[..., N]`` bool -> ``[..., N, N]`` bool: query and key are both members."""
    return member.unsqueeze(-1) & member.unsqueeze(-2)


def shifted_window_mask(grid: int, window_size: int, shift: int) -> torch.Tensor:
    """Swin region mask ``[num_windows, N, N]`` for a cyclically shifted ``grid x grid`` map.

    Regions are the slices ``[0:-ws], [-ws:-shift], [-shift:]`` on each axis (docs/method.md §1.1);
    tokens of different regions get :data:`MASKED_LOGIT`.
    """
    bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    region = torch.zeros(1, grid, grid, 1)
    for row, rows in enumerate(bounds):
        for col, cols in enumerate(bounds):
            region[:, rows, cols, :] = row * len(bounds) + col
    windows = window_partition(region, (window_size, window_size)).flatten(1)
    return additive_mask(windows.unsqueeze(2) == windows.unsqueeze(1))


def saliency_window_masks(saliency: torch.Tensor, window_size: int) -> torch.Tensor:
    """Plain, foreground and background attention masks from a saliency map (docs/method.md §1.3).

    ``saliency`` ``[B, 1, h, w]`` is partitioned into windows *without* any cyclic shift
    (release quirk). Returns ``[3, B * num_windows, 1, N, N]`` additive masks (broadcast over
    heads): all zeros, then ``M_fg`` from ``saliency >= 0.8`` and ``M_bg`` from ``saliency < 0.2``,
    stacked so that :class:`WindowAttention` takes the three softmaxes in one call.
    """
    windows = window_partition(saliency.permute(0, 2, 3, 1), (window_size, window_size)).flatten(1)
    members = torch.stack((torch.ones_like(windows, dtype=torch.bool), windows >= FOREGROUND_THRESHOLD,
                           windows < BACKGROUND_THRESHOLD))
    return additive_mask(member_pairs(members), saliency.dtype).unsqueeze(2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows with a learnt relative position bias.

    Plain: ``softmax(A) V`` with ``A = (q * head_dim**-0.5) k^T + B_rel (+ R)``.
    Saliency-guided (docs/method.md §1.3): ``softmax(A) V + softmax(A + M_fg) V - softmax(A + M_bg) V``,
    computed as ``(softmax(A + 0) + softmax(A + M_fg) - softmax(A + M_bg)) V`` with the three
    softmaxes in one call over the stacked masks of :func:`saliency_window_masks`.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.window_area = window_size * window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", get_relative_position_index(window_size, window_size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(
        self,
        windows: torch.Tensor,
        shift_mask: torch.Tensor | None = None,
        saliency_masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``windows`` ``[B*nW, N, C]`` -> ``[B*nW, N, C]``.

        ``shift_mask`` ``[nW, N, N]`` is added to every logit map; ``saliency_masks`` are the
        stacked ``[3, B*nW, 1, N, N]`` masks of :func:`saliency_window_masks`.
        """
        num_windows, tokens, channels = windows.shape
        qkv = self.qkv(windows).reshape(num_windows, tokens, 3, self.num_heads, self.head_dim)
        # One copy to head-major layout; the matmuls then read k^T and v without copying them.
        q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1) + self._relative_position_bias()
        if shift_mask is not None:
            per_image = logits.view(-1, shift_mask.shape[0], self.num_heads, tokens, tokens)
            logits = (per_image + shift_mask.unsqueeze(1)).view(num_windows, self.num_heads, tokens, tokens)
        if saliency_masks is None:
            attn = logits.softmax(dim=-1)
        else:
            plain, foreground, background = (logits + saliency_masks).softmax(dim=-1).unbind(0)
            attn = plain + foreground - background
        out = (attn @ v).transpose(1, 2).reshape(num_windows, tokens, channels)
        return self.proj(out)

    def _relative_position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` bias gathered from the table by the Swin relative-position index."""
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(self.window_area, self.window_area, -1).permute(2, 0, 1)
