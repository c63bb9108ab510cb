"""Partial cross-entropy on the scribbles for the six side outputs (docs/method.md §2.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lib.device_constants import device_constant

# Side output -> weight (docs/method.md §2.1).
SIDE_WEIGHTS = {
    "div1": 1.0,
    "div2": 0.8,
    "div4": 0.8,
    "div8": 0.6,
    "div16": 0.4,
    "before_fuse_div16": 0.4,
}
FOREGROUND, BACKGROUND = 1, 0


def _mean_over(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` ``[..., B, H, W]`` where ``mask`` ``[B, H, W]`` holds, per leading index; 0 (not NaN) when it holds nowhere."""
    return (values * mask).sum(dim=(-3, -2, -1)) / mask.sum().clamp(min=1)


def scribble_cross_entropy(probability: Tensor, semantic_label: Tensor) -> tuple[Tensor, Tensor]:
    """``(CE_fg, CE_bg)`` of side outputs ``[..., B, 1, H, W]`` against scribbles ``[B, H, W]``.

    The release feeds ``(1 − P, P)`` to softmax cross-entropy as logits, so per pixel
    ``CE_fg = log(1 + exp(1 − 2P)) = softplus(1 − 2P)`` and ``CE_bg = softplus(2P − 1)``;
    each is averaged over the batch's foreground (label 1) or background (label 0) pixels.
    Both have the leading shape ``[...]`` (0-d for one side output).
    """
    logit = 2 * probability.squeeze(-3) - 1  # 2P − 1; its negation is 1 − 2P exactly
    foreground = (semantic_label == FOREGROUND).to(logit.dtype)
    background = (semantic_label == BACKGROUND).to(logit.dtype)
    return _mean_over(F.softplus(-logit), foreground), _mean_over(F.softplus(logit), background)


def parted_cross_entropy(side_outputs: dict[str, Tensor], semantic_label: Tensor) -> Tensor:
    """``Σ_side w_side · (CE_fg + CE_bg)`` over :data:`SIDE_WEIGHTS` (unweighted by the config).

    The six side outputs are scored together, stacked as ``[6, B, 1, H, W]``.
    """
    probability = torch.stack([side_outputs[name] for name in SIDE_WEIGHTS])
    foreground_ce, background_ce = scribble_cross_entropy(probability, semantic_label)
    weights = device_constant(tuple(SIDE_WEIGHTS.values()), probability.dtype, probability.device)
    return (weights * (foreground_ce + background_ce)).sum()
