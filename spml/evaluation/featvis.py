"""Feature visualisation of the hypersphere embedding (docs/method.md §5).

Per image: L2-normalise each pixel's 64-d embedding, centre over the image's pixels, project
onto the first three principal components, min-max scale the three channels together to
0..255. Batched on the embedding's device with ``torch.linalg.svd``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PCA_COMPONENTS = 3


def _principal_axes(centred: torch.Tensor) -> torch.Tensor:
    """First three principal axes [B, C, 3] of centred pixels [B, N, C], signs made deterministic.

    Each axis is flipped so that its entry of largest magnitude is positive (the convention of
    scikit-learn's ``svd_flip`` applied to the axes), so the colours do not depend on the SVD
    implementation's sign choice.
    """
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:, :PCA_COMPONENTS].transpose(1, 2)
    largest = axes.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(torch.gather(axes, 1, largest))
    return axes * torch.where(signs == 0, torch.ones_like(signs), signs)


def embedding_pca_rgb(embedding: torch.Tensor, out_size: int | None = None) -> np.ndarray:
    """PCA colouring of an embedding [B, C, h, w] as uint8 RGB images [B, h, w, 3].

    With ``out_size`` the three-channel projection is bilinearly resized to
    ``out_size``×``out_size`` before the 8-bit scaling (the release saves 224×224 images).
    """
    if embedding.ndim != 4:
        raise ValueError(f"expected an embedding [B, C, h, w], got shape {tuple(embedding.shape)}")
    batch, channels, height, width = embedding.shape
    if channels < PCA_COMPONENTS or height * width < PCA_COMPONENTS:
        raise ValueError(f"embedding {tuple(embedding.shape)} is too small for a {PCA_COMPONENTS}-component PCA")
    pixels = F.normalize(embedding.detach().float().flatten(2).transpose(1, 2), dim=2)  # [B, N, C]
    centred = pixels - pixels.mean(dim=1, keepdim=True)
    projection = centred @ _principal_axes(centred)  # [B, N, 3]
    image = projection.transpose(1, 2).reshape(batch, PCA_COMPONENTS, height, width)
    if out_size is not None:
        image = F.interpolate(image, size=(out_size, out_size), mode="bilinear", align_corners=False)
    low = image.amin(dim=(1, 2, 3), keepdim=True)
    span = image.amax(dim=(1, 2, 3), keepdim=True) - low
    scaled = (image - low) / torch.where(span > 0, span, torch.ones_like(span)) * 255.0
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
