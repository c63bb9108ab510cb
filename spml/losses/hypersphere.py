"""The hypersphere feature regularisation terms ``sem_ann`` and ``img_sim`` (docs/method.md §2.5 steps 6-7).

Both apply :func:`~spml.losses.segsort.fused_segsort_loss` to segment prototypes built by
:mod:`spml.clustering`; the exact wiring follows docs/method.md §6 G.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from spml.clustering import Segments, segment_prototypes
from spml.losses.segsort import fused_segsort_loss

# Elements of the pixel × segment matrices of img_sim scored in one block. Whole batches fit on
# a GPU; on CPU smaller blocks stay in cache and run about twice as fast as one big block.
CPU_BLOCK_ELEMENTS = 2**22
GPU_BLOCK_ELEMENTS = 2**28


def semantic_annotation_loss(
    pixels: Tensor,
    pixel_label: Tensor,
    own_prototype: Tensor,
    prototypes: Tensor,
    prototype_label: Tensor,
    num_classes: int,
    concentration: float,
    margin: float,
    *,
    num_kept_pixels: int,
    num_kept_prototypes: int,
    segsort: Callable[..., Tensor] = fused_segsort_loss,
) -> Tensor:
    """``sem_ann`` (unweighted): SegSort over the scribbled pixels against every scribbled prototype.

    ``pixels`` ``[N, D]`` with scribble class ``pixel_label`` and ``own_prototype`` (row of
    ``prototypes`` ``[P, D]``, labels ``prototype_label``). Pixels and prototypes labelled
    ``≥ num_classes`` (unknown) are dropped and own indices renumbered to the kept list
    (docs/method.md §2.5 step 6; §6 G). ``num_kept_pixels`` and ``num_kept_prototypes`` are how
    many are kept (known to the caller, so no tensor is read back). The mean over kept pixels;
    0 when no pixel is scribbled. ``segsort`` is the SegSort formulation (the benchmark passes
    the reference :func:`~spml.losses.segsort.segsort_loss`).
    """
    kept_prototypes = prototype_label < num_classes
    kept_position = torch.cumsum(kept_prototypes, dim=0) - 1
    pixel_rows = true_positions(pixel_label < num_classes, num_kept_pixels)
    prototype_rows = true_positions(kept_prototypes, num_kept_prototypes)
    kept_label = prototype_label[prototype_rows]
    per_pixel = segsort(
        pixels.index_select(0, pixel_rows).unsqueeze(0),
        pixel_label[pixel_rows].unsqueeze(0),
        kept_position[own_prototype[pixel_rows]].unsqueeze(0),
        prototypes.index_select(0, prototype_rows).unsqueeze(0),
        kept_label.unsqueeze(0),
        torch.ones_like(kept_label, dtype=torch.bool).unsqueeze(0),
        concentration,
        margin,
    )
    return per_pixel.sum() / max(num_kept_pixels, 1)


def true_positions(mask: Tensor, count: int) -> Tensor:
    """``[count]`` ascending positions where the 1-d ``mask`` holds, ``count`` being their number.

    ``x[true_positions(mask, count)]`` is ``x[mask]`` without the host read of the mask's sum.
    """
    return torch.argsort(~mask, stable=True)[:count]


def image_similarity_loss(features: Tensor, instance_label: Tensor, segments: Segments, concentration: float, margin: float) -> Tensor:
    """``img_sim`` (unweighted) for one pass: per image, SegSort of its pixels against its own segments.

    ``features`` ``[B, N, D]`` (the location-augmented ``zl``), ``instance_label`` ``[B, N]``;
    ``segments`` index the ``B·N`` pixels. A segment's prototype is ``normalise(Σ zl)`` and its
    class is its instance label. The images are laid out in a padded ``[B, N, S_max]`` form
    and scored in blocks of images whose matrices hold at most ``*_BLOCK_ELEMENTS`` entries
    (memory stays bounded at any batch size). Returns the mean over images of the per-image
    pixel mean (every image has ``N`` pixels).
    """
    num_images, num_pixels, dim = features.shape
    prototypes = segment_prototypes(features.reshape(-1, dim), segments.index, segments.count)
    first_segment = torch.cumsum(segments.per_image, dim=0) - segments.per_image
    local_index = torch.arange(segments.count, device=features.device) - first_segment[segments.batch_index]
    max_segments = segments.max_per_image
    position = (segments.batch_index, local_index)
    padded_prototypes = prototypes.new_zeros(num_images, max_segments, dim).index_put(position, prototypes)
    padded_label = segments.instance_label.new_full((num_images, max_segments), -1).index_put(position, segments.instance_label)
    valid = torch.arange(max_segments, device=features.device) < segments.per_image.unsqueeze(1)
    own = local_index[segments.index].reshape(num_images, num_pixels)
    images_per_block = max(1, _block_elements(features.device) // (num_pixels * max_segments))
    blocks = [slice(start, start + images_per_block) for start in range(0, num_images, images_per_block)]
    loss_sum = sum(
        fused_segsort_loss(
            features[block], instance_label[block], own[block], padded_prototypes[block], padded_label[block], valid[block],
            concentration, margin,
        ).sum()
        for block in blocks
    )
    return loss_sum / (num_images * num_pixels)


def _block_elements(device: torch.device) -> int:
    """Largest ``[images, N, S_max]`` block scored at once: cache-sized on CPU, large on GPUs."""
    return GPU_BLOCK_ELEMENTS if device.type == "cuda" else CPU_BLOCK_ELEMENTS
