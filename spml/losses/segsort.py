"""The SegSort von Mises-Fisher loss with concentration and additive margin (docs/method.md §2.5 step 5).

For pixel ``z_i`` with label ``y_i`` and own prototype ``s(i)``, against prototypes ``p_j``
with labels ``y_j``:
``sm[i,j] = exp(κ(z_i·p_j − m‖z_i‖‖p_j‖))`` (margin only in the positive terms),
``s[i,j] = exp(κ z_i·p_j)``, ``own = sm[i,s(i)]``, ``same = Σ_{y_j = y_i} sm[i,j] − own``,
``num = same if same > 0 else own``, ``den = Σ_{y_j ≠ y_i} s[i,j] + num``,
``loss_i = −log(num / den)``.

Two formulations with the same forward arithmetic:

* :func:`segsort_loss` — the readable reference, differentiated by autograd (it keeps every
  ``[G, N, P]`` temporary alive for the backward pass);
* :func:`fused_segsort_loss` — the one the objective uses: an autograd function whose
  backward computes ``∂loss/∂(z_i·p_j)`` in closed form as one ``[G, N, P]`` matrix and turns
  it into pixel and prototype gradients with two batched matrix products.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def segsort_loss(
    pixels: Tensor,
    pixel_label: Tensor,
    own_prototype: Tensor,
    prototypes: Tensor,
    prototype_label: Tensor,
    prototype_valid: Tensor,
    concentration: float,
    margin: float,
) -> Tensor:
    """Per-pixel SegSort loss for ``G`` independent groups at once (reference formulation).

    Shapes: ``pixels`` ``[G, N, D]``, ``pixel_label`` and ``own_prototype`` (index into the
    group's prototypes) ``[G, N]``, ``prototypes`` ``[G, P, D]``, ``prototype_label`` and
    ``prototype_valid`` ``[G, P]``; invalid prototypes are padding and take no part. A pixel's
    own prototype carries the pixel's label. Returns ``[G, N]``.
    """
    same_label = _same_label(pixel_label, prototype_label, prototype_valid)
    pixel_norm, prototype_norm = pixels.norm(dim=-1), prototypes.norm(dim=-1)
    similarity_exp = _similarity_exp(pixels, prototypes, pixel_norm, prototype_norm, same_label, prototype_valid, concentration, margin)
    own, same, numerator, denominator = _numerator_denominator(similarity_exp, same_label, own_prototype)
    return -torch.log(numerator / denominator)


def fused_segsort_loss(
    pixels: Tensor,
    pixel_label: Tensor,
    own_prototype: Tensor,
    prototypes: Tensor,
    prototype_label: Tensor,
    prototype_valid: Tensor,
    concentration: float,
    margin: float,
) -> Tensor:
    """:func:`segsort_loss` (same arguments, same values) with an analytic backward (docs/method.md §2.5 step 5).

    Differentiable in ``pixels`` and ``prototypes``, including the margin's dependence on the
    norms ``‖z_i‖‖p_j‖``.
    """
    return _FusedSegSort.apply(pixels, pixel_label, own_prototype, prototypes, prototype_label, prototype_valid, concentration, margin)


def _same_label(pixel_label: Tensor, prototype_label: Tensor, prototype_valid: Tensor) -> Tensor:
    """``[G, N, P]``: valid prototype ``j`` has pixel ``i``'s label."""
    return (pixel_label.unsqueeze(2) == prototype_label.unsqueeze(1)) & prototype_valid.unsqueeze(1)


def _similarity_exp(
    pixels: Tensor,
    prototypes: Tensor,
    pixel_norm: Tensor,
    prototype_norm: Tensor,
    same_label: Tensor,
    prototype_valid: Tensor,
    concentration: float,
    margin: float,
) -> Tensor:
    """``[G, N, P]``: ``sm`` on same-label pairs, ``s`` on the others, ``exp(−inf) = 0`` on padding.

    ``pixel_norm`` ``[G, N]`` and ``prototype_norm`` ``[G, P]`` are ``‖z_i‖`` and ``‖p_j‖``.
    """
    similarity = torch.bmm(pixels, prototypes.transpose(1, 2))
    positive_logit = torch.baddbmm(similarity, pixel_norm.unsqueeze(2), prototype_norm.unsqueeze(1), alpha=-margin)
    negative_logit = similarity.masked_fill(~prototype_valid.unsqueeze(1), float("-inf"))
    return torch.exp(concentration * torch.where(same_label, positive_logit, negative_logit))


def _numerator_denominator(similarity_exp: Tensor, same_label: Tensor, own_prototype: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``own, same, num, den`` ``[G, N]`` from the exponentials."""
    own = similarity_exp.gather(2, own_prototype.unsqueeze(2)).squeeze(2)
    same = torch.where(same_label, similarity_exp, 0.0).sum(dim=2) - own
    numerator = torch.where(same > 0, same, own)
    denominator = torch.where(same_label, 0.0, similarity_exp).sum(dim=2) + numerator
    return own, same, numerator, denominator


class _FusedSegSort(torch.autograd.Function):
    """SegSort forward saving only the exponentials; closed-form backward (see :func:`fused_segsort_loss`).

    With ``E = exp(logit)`` and ``loss_i = log den_i − log num_i``, ``∂loss_i/∂E_ij`` is
    ``1/den_i`` on other-label pairs and ``1/den_i − 1/num_i`` on the pairs ``num_i`` sums (the
    same-label non-own pairs, or only the own pair when ``same_i ≤ 0``), 0 elsewhere. Then
    ``∂/∂(z_i·p_j) = κ E_ij ∂loss_i/∂E_ij`` and, on same-label pairs, ``−m`` times that for
    ``‖z_i‖‖p_j‖``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pixels: Tensor,
        pixel_label: Tensor,
        own_prototype: Tensor,
        prototypes: Tensor,
        prototype_label: Tensor,
        prototype_valid: Tensor,
        concentration: float,
        margin: float,
    ) -> Tensor:
        same_label = _same_label(pixel_label, prototype_label, prototype_valid)
        pixel_norm, prototype_norm = pixels.norm(dim=-1), prototypes.norm(dim=-1)
        similarity_exp = _similarity_exp(pixels, prototypes, pixel_norm, prototype_norm, same_label, prototype_valid, concentration, margin)
        own, same, numerator, denominator = _numerator_denominator(similarity_exp, same_label, own_prototype)
        ctx.save_for_backward(
            pixels, prototypes, pixel_norm, prototype_norm, own_prototype, same_label, similarity_exp, own, same, numerator, denominator
        )
        ctx.concentration, ctx.margin = concentration, margin
        return -torch.log(numerator / denominator)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        (pixels, prototypes, pixel_norm, prototype_norm, own_prototype, same_label,
         similarity_exp, own, same, numerator, denominator) = ctx.saved_tensors
        scale = grad_loss * ctx.concentration
        other_weight = scale / denominator
        numerator_weight = scale * (1 / denominator - 1 / numerator)
        same_weight = torch.where(same > 0, numerator_weight, 0.0)
        own_weight = numerator_weight - same_weight
        # grad_similarity = κ E ∂loss/∂E: one [G, N, P] matrix, built in place.
        grad_similarity = torch.where(same_label, same_weight.unsqueeze(2), other_weight.unsqueeze(2)).mul_(similarity_exp)
        grad_similarity.scatter_(2, own_prototype.unsqueeze(2), (own_weight * own).unsqueeze(2))
        grad_pixels = torch.bmm(grad_similarity, prototypes)
        grad_prototypes = torch.bmm(grad_similarity.transpose(1, 2), pixels)
        if ctx.margin:
            # ∂loss/∂(‖z_i‖‖p_j‖) / (−m): the same-label pairs' entries (the others are ≥ 0, so × 0 gives +0).
            grad_norm_product = grad_similarity.mul_(same_label)
            grad_pixel_norm = -ctx.margin * torch.bmm(grad_norm_product, prototype_norm.unsqueeze(2)).squeeze(2)
            grad_prototype_norm = -ctx.margin * torch.bmm(pixel_norm.unsqueeze(1), grad_norm_product).squeeze(1)
            grad_pixels += _norm_backward(pixels, pixel_norm, grad_pixel_norm)
            grad_prototypes += _norm_backward(prototypes, prototype_norm, grad_prototype_norm)
        return grad_pixels, None, None, grad_prototypes, None, None, None, None


def _norm_backward(vectors: Tensor, norm: Tensor, grad_norm: Tensor) -> Tensor:
    """``grad_norm · v / ‖v‖`` per row, 0 for zero vectors (as autograd's ``norm`` backward)."""
    return vectors * (grad_norm / norm.masked_fill(norm == 0, 1.0)).unsqueeze(-1)
