"""Partial cross-entropy on the scribbles for the six side outputs (docs/method.md §2.1)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

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
    """Mean of ``values`` where ``mask`` holds; 0 (not NaN) when it holds nowhere."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def scribble_cross_entropy(probability: Tensor, semantic_label: Tensor) -> tuple[Tensor, Tensor]:
    """``(CE_fg, CE_bg)`` of one side output ``[B, 1, H, W]`` against scribbles ``[B, H, W]``.

    The release feeds ``(1 − P, P)`` to softmax cross-entropy as logits, so per pixel
    ``CE_fg = log(1 + exp(1 − 2P)) = softplus(1 − 2P)`` and ``CE_bg = softplus(2P − 1)``;
    each is averaged over the batch's foreground (label 1) or background (label 0) pixels.
    """
    probability = probability.squeeze(1)
    foreground = (semantic_label == FOREGROUND).to(probability.dtype)
    background = (semantic_label == BACKGROUND).to(probability.dtype)
    return (
        _mean_over(F.softplus(1 - 2 * probability), foreground),
        _mean_over(F.softplus(2 * probability - 1), background),
    )


def parted_cross_entropy(side_outputs: dict[str, Tensor], semantic_label: Tensor) -> Tensor:
    """``Σ_side w_side · (CE_fg + CE_bg)`` over :data:`SIDE_WEIGHTS` (unweighted by the config)."""
    return sum(weight * sum(scribble_cross_entropy(side_outputs[name], semantic_label)) for name, weight in SIDE_WEIGHTS.items())
