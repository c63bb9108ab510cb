"""The TensorBoard image strip of a training step (docs/method.md §4)."""
from __future__ import annotations

import torch

from spml.evaluation.featvis import embedding_pca_rgb
from spml.normalization import denormalize_rgb


def image_strip(batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """The first sample as uint8 ``[3, size, 8·size]``: RGB, depth, contour label, scribble,
    instance map, prediction, contour prediction, embedding PCA."""
    rgb = denormalize_rgb(batch["image"][0]).clamp(0, 1)
    scribble_grey = torch.tensor([0.0, 1.0, 0.5])[batch["semantic_label"][0]]
    instance = batch["instance_label"][0].float()
    grey_maps = [
        batch["depth"][0, 0],
        batch["contour_sum_label"][0],
        scribble_grey,
        instance / instance.max().clamp(min=1),
        outputs["div1"][0, 0].detach().float().cpu(),
        outputs["contour_div1"][0, 0].detach().float().cpu(),
    ]
    pca = torch.from_numpy(embedding_pca_rgb(outputs["embedding"][:1].detach().float(), out_size=size)[0])
    panels = [rgb, *(grey.expand(3, -1, -1) for grey in grey_maps)]
    panels = [(panel * 255).round().to(torch.uint8) for panel in panels] + [pca.permute(2, 0, 1)]
    return torch.cat(panels, dim=2)
