"""Spherical k-means of pixel embeddings and the segments built from it (docs/method.md §2.5 steps 1-4).

Everything works on whole batches at once on the device of the embeddings:

* :func:`pixel_features` — unit embeddings ``z`` and the location-augmented ``zl``
  (docs/method.md §6 C.1-3);
* :func:`grid_initial_labels` and :func:`spherical_kmeans` — the 6×6 grid start and the
  10 assignment rounds, for all images together (§6 C.4-5);
* :func:`build_segments` — one segment per (image, k-means cluster, semantic, instance),
  numbered by ascending key exactly as the release numbers them (§6 D/E);
* :func:`segment_prototypes` — ``normalise(Σ features)`` per segment (§6 E.6).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NORM_EPS = 1e-12


def normalize(x: Tensor) -> Tensor:
    """L2-normalise the last dimension, flooring the norm at 1e-12 (a zero vector stays zero)."""
    return F.normalize(x, p=2.0, dim=-1, eps=NORM_EPS)


def location_features(height: int, width: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[H*W, 2]`` pixel locations ``(y, x)`` with ``y, x = linspace(0, 1, ·) − 0.5``, row-major."""
    y = torch.linspace(0, 1, height, dtype=dtype, device=device) - 0.5
    x = torch.linspace(0, 1, width, dtype=dtype, device=device) - 0.5
    grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack((grid_y, grid_x), dim=-1).reshape(height * width, 2)


def pixel_features(embedding: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel unit embeddings and their location-augmented version (docs/method.md §2.5 step 2).

    ``embedding`` ``[B, D, H, W]`` -> ``z`` ``[B, H*W, D]`` and
    ``zl = normalise(cat(z, y, x))`` ``[B, H*W, D+2]``.
    """
    batch, dim, height, width = embedding.shape
    z = normalize(embedding.flatten(2).transpose(1, 2))
    location = location_features(height, width, dtype=z.dtype, device=z.device)
    zl = normalize(torch.cat((z, location.expand(batch, -1, -1)), dim=-1))
    return z, zl


def grid_initial_labels(height: int, width: int, grid: tuple[int, int], *, device: torch.device) -> Tensor:
    """``[H*W]`` initial k-means labels: a ``grid`` of rectangular cells, made compact.

    Row cell ``round(linspace(0, gy−1, H))``, column cell likewise, label ``ry + gy·rx``
    (docs/method.md §2.5 step 3; §6 C.4).
    """
    grid_y, grid_x = grid
    row_cell = torch.linspace(0, grid_y - 1, height, device=device).round().long()
    col_cell = torch.linspace(0, grid_x - 1, width, device=device).round().long()
    labels = (row_cell[:, None] + grid_y * col_cell[None, :]).reshape(-1)
    return torch.unique(labels, return_inverse=True)[1]


@torch.no_grad()
def spherical_kmeans(features: Tensor, initial_labels: Tensor, iterations: int) -> Tensor:
    """Spherical k-means of every image of the batch at once (docs/method.md §6 C.5).

    ``features`` ``[B, N, D]`` unit vectors, ``initial_labels`` ``[N]`` compact labels shared by
    all images. Each round sets ``prototype_k = normalise(Σ members)`` (empty -> zero vector)
    and relabels each pixel by ``argmax_k features·prototype_k`` (first maximum wins).
    Returns the labels of the last round, ``[B, N]`` int64.
    """
    batch, num_pixels, _ = features.shape
    num_clusters = int(initial_labels.max()) + 1
    labels = initial_labels.to(features.device).expand(batch, num_pixels)
    for _ in range(iterations):
        membership = F.one_hot(labels, num_clusters).to(features.dtype)  # [B, N, K]
        prototypes = normalize(torch.bmm(membership.transpose(1, 2), features))  # [B, K, D]
        labels = torch.bmm(features, prototypes.transpose(1, 2)).argmax(dim=-1)
    return labels


@dataclass(frozen=True)
class Segments:
    """A partition of the batch's pixels into segments, and each segment's labels.

    ``index`` ``[N]`` segment id of every pixel (rows ordered image by image, row-major);
    ``batch_index``, ``semantic_label``, ``instance_label`` ``[S]`` per segment. Segment ids
    are ascending in (image, k-means cluster, semantic, instance), so the segments of one image
    are contiguous.
    """

    index: Tensor
    batch_index: Tensor
    semantic_label: Tensor
    instance_label: Tensor

    @property
    def count(self) -> int:
        return self.batch_index.numel()


def build_segments(
    batch_index: Tensor, cluster_label: Tensor, semantic_label: Tensor, instance_label: Tensor, label_divisor: int
) -> Segments:
    """Group pixels by (image, k-means cluster, ``L = semantic·divisor + instance``) (docs/method.md §2.5 step 4).

    All inputs are ``[N]`` int64 over the pixels of the (gathered) batch. The ids are the dense
    rank of that triple in lexicographic order, which is what the release's two-stage ranking
    (docs/method.md §6 D, then the re-ranking by (image, segment) of §6 E) produces; the
    segment's labels are decoded from its key.
    """
    if int(instance_label.max()) >= label_divisor:
        raise ValueError(f"instance label {int(instance_label.max())} does not fit label_divisor {label_divisor}")
    combined = semantic_label * label_divisor + instance_label
    combined_range = int(combined.max()) + 1
    cluster_range = int(cluster_label.max()) + 1
    key = (batch_index * cluster_range + cluster_label) * combined_range + combined
    unique_keys, index = torch.unique(key, return_inverse=True)
    segment_combined = unique_keys % combined_range
    return Segments(
        index=index,
        batch_index=unique_keys // (combined_range * cluster_range),
        semantic_label=segment_combined // label_divisor,
        instance_label=segment_combined % label_divisor,
    )


def segment_prototypes(features: Tensor, segment_index: Tensor, num_segments: int) -> Tensor:
    """``[S, D]`` prototypes ``normalise(Σ_{pixels of s} features)`` from ``features`` ``[N, D]``."""
    sums = features.new_zeros(num_segments, features.shape[-1]).index_add(0, segment_index, features)
    return normalize(sums)


def resize_labels(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer label maps ``[B, H, W]`` to ``size`` (docs/method.md §2.5 step 1).

    For 224 -> 56 this picks pixel ``(4i, 4j)``, as the release's float resize does.
    """
    return F.interpolate(label.unsqueeze(1).float(), size=size, mode="nearest").squeeze(1).long()
