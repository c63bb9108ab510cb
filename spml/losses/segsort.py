"""The SegSort von Mises-Fisher loss with concentration and additive margin (SPEC §2.5 step 5).

For pixel ``z_i`` with label ``y_i`` and own prototype ``s(i)``, against prototypes ``p_j``
with labels ``y_j``:
``sm[i,j] = exp(κ(z_i·p_j − m‖z_i‖‖p_j‖))`` (margin only in the positive terms),
``s[i,j] = exp(κ z_i·p_j)``, ``own = sm[i,s(i)]``, ``same = Σ_{y_j = y_i} sm[i,j] − own``,
``num = same if same > 0 else own``, ``den = Σ_{y_j ≠ y_i} s[i,j] + num``,
``loss_i = −log(num / den)``.
"""
from __future__ import annotations

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
    """Per-pixel SegSort loss for ``G`` independent groups at once.

    Shapes: ``pixels`` ``[G, N, D]``, ``pixel_label`` and ``own_prototype`` (index into the
    group's prototypes) ``[G, N]``, ``prototypes`` ``[G, P, D]``, ``prototype_label`` and
    ``prototype_valid`` ``[G, P]``; invalid prototypes are padding and take no part. A pixel's
    own prototype carries the pixel's label. Returns ``[G, N]``.
    """
    similarity = torch.bmm(pixels, prototypes.transpose(1, 2))  # [G, N, P]
    same_label = (pixel_label.unsqueeze(2) == prototype_label.unsqueeze(1)) & prototype_valid.unsqueeze(1)
    # sm on same-label pairs, s on the others, exp(−inf) = 0 on padding: one [G, N, P] exponential.
    positive_logit = torch.baddbmm(similarity, pixels.norm(dim=-1, keepdim=True), prototypes.norm(dim=-1).unsqueeze(1), alpha=-margin)
    negative_logit = similarity.masked_fill(~prototype_valid.unsqueeze(1), float("-inf"))
    similarity_exp = torch.exp(concentration * torch.where(same_label, positive_logit, negative_logit))
    own = similarity_exp.gather(2, own_prototype.unsqueeze(2)).squeeze(2)
    same = torch.where(same_label, similarity_exp, 0.0).sum(dim=2) - own
    numerator = torch.where(same > 0, same, own)
    denominator = torch.where(same_label, 0.0, similarity_exp).sum(dim=2) + numerator
    return -torch.log(numerator / denominator)
