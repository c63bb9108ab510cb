"""Spherical k-means of pixel embeddings and the segments built from it (docs/method.md §2.5 steps 1-4).

Everything works on whole batches at once on the device of the embeddings:

* :func:`pixel_features` — unit embeddings ``z`` and the location-augmented ``zl``
  (docs/method.md §6 C.1-3);
* :func:`grid_initial_labels` and :func:`spherical_kmeans` — the 6×6 grid start and the
  10 assignment rounds, for all images together (§6 C.4-5);
* :func:`segment_keys` and :func:`build_segments` — one segment per (image, k-means cluster,
  semantic, instance), numbered by ascending key exactly as the release numbers them (§6 D/E);
* :func:`segment_prototypes` — ``normalise(Σ features)`` per segment (§6 E.6).

Nothing here reads a tensor back to the host: shapes that depend on the data (the number of
segments) are arguments, which the caller reads once per step for everything at once
(:meth:`SegmentKeys.num_segments` and :meth:`SegmentKeys.max_segments_per_image` give what to read).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NORM_EPS = 1e-12
SEMANTIC_RANGE = 3
"""Scribble classes 0 background, 1 foreground, 2 unknown (docs/method.md §2)."""
INSTANCE_RANGE = 257
"""Bound on instance labels: ``hed + 1`` ∈ 1..256, 256 being the release's uint8 overflow (docs/method.md §3.2)."""


def normalize(x: Tensor) -> Tensor:
    """L2-normalise the last dimension, flooring the norm at 1e-12 (a zero vector stays zero)."""
    return F.normalize(x, p=2.0, dim=-1, eps=NORM_EPS)


@functools.lru_cache(maxsize=None)
def location_features(height: int, width: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[H*W, 2]`` pixel locations ``(y, x)`` with ``y, x = linspace(0, 1, ·) − 0.5``, row-major.

    Made once per size, dtype and device and then shared (callers must not modify it in place).
    """
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


@functools.lru_cache(maxsize=None)
def grid_initial_labels(height: int, width: int, grid: tuple[int, int], *, device: torch.device) -> Tensor:
    """``[H*W]`` initial k-means labels: a ``grid`` of rectangular cells, made compact.

    Row cell ``round(linspace(0, gy−1, H))``, column cell likewise, label ``ry + gy·rx``
    made compact (docs/method.md §2.5 step 3; §6 C.4): with cells compact per axis
    (:func:`_compact_cells`), the compact label is ``ry + min(H, gy)·rx``, every (row, column)
    cell pair being present. :func:`grid_num_clusters` labels in all. Made once per size and
    device and then shared (callers must not modify it in place).
    """
    grid_y, grid_x = grid
    row_cell = _compact_cells(height, grid_y, device=device)
    col_cell = _compact_cells(width, grid_x, device=device)
    return (row_cell[:, None] + min(height, grid_y) * col_cell[None, :]).reshape(-1)


def grid_num_clusters(height: int, width: int, grid: tuple[int, int]) -> int:
    """Number of labels of :func:`grid_initial_labels`: ``min(H, gy)·min(W, gx)`` (36 for the release)."""
    return min(height, grid[0]) * min(width, grid[1])


def _compact_cells(length: int, cells: int, *, device: torch.device) -> Tensor:
    """``[length]`` dense rank of ``round(linspace(0, cells−1, length))`` among its values.

    With ``length ≥ cells`` the steps are at most 1, so every cell ``0..cells−1`` occurs and
    the rounded value is its own rank; with ``length < cells`` the steps exceed 1, the rounded
    values are distinct and ascending, and the rank is the position.
    """
    if length < cells:
        return torch.arange(length, device=device)
    return torch.linspace(0, cells - 1, length, device=device).round().long()


@torch.no_grad()
def spherical_kmeans(features: Tensor, initial_labels: Tensor, num_clusters: int, iterations: int) -> Tensor:
    """Spherical k-means of every image of the batch at once (docs/method.md §6 C.5).

    ``features`` ``[B, N, D]`` unit vectors, ``initial_labels`` ``[N]`` labels in
    ``0..num_clusters−1`` shared by all images. Each round sets ``prototype_k = normalise(Σ
    members)`` (empty -> zero vector) and relabels each pixel by ``argmax_k
    features·prototype_k`` (first maximum wins). Returns the labels of the last round,
    ``[B, N]`` int64.
    """
    batch, num_pixels, _ = features.shape
    # One-hot rows of the identity, one gather per round (F.one_hot checks the label range on the host).
    identity = torch.eye(num_clusters, dtype=features.dtype, device=features.device)
    labels = initial_labels.to(features.device).expand(batch, num_pixels)
    for _ in range(iterations):
        membership = identity[labels]  # [B, N, K]
        prototypes = normalize(torch.bmm(membership.transpose(1, 2), features))  # [B, K, D]
        labels = torch.bmm(features, prototypes.transpose(1, 2)).argmax(dim=-1)
    return labels


@dataclass(frozen=True)
class SegmentKeys:
    """Every pixel's key in the dense (image, k-means cluster, semantic, instance) key space.

    ``key`` ``[N]`` is ``((image·K + cluster)·SEMANTIC_RANGE + semantic)·INSTANCE_RANGE +
    instance``; ``present`` ``[B, K, SEMANTIC_RANGE, INSTANCE_RANGE]`` marks the keys some
    pixel has. Ascending keys are ascending (image, cluster, semantic, instance).
    """

    key: Tensor
    present: Tensor

    def num_segments(self) -> Tensor:
        """0-d: the number of segments (keys present)."""
        return self.present.sum()

    def segments_per_image(self) -> Tensor:
        """``[B]``: the number of segments of each image."""
        return self.present.flatten(1).sum(dim=1)

    def max_segments_per_image(self) -> Tensor:
        """0-d: the largest number of segments of one image."""
        return self.segments_per_image().max()

    def num_scribbled_segments(self, num_classes: int) -> Tensor:
        """0-d: the number of segments whose semantic label is below ``num_classes`` (scribbled ones)."""
        return self.present[:, :, :num_classes].sum()


@dataclass(frozen=True)
class Segments:
    """A partition of the batch's pixels into segments, and each segment's labels.

    ``index`` ``[N]`` segment id of every pixel (rows ordered image by image, row-major);
    ``batch_index``, ``semantic_label``, ``instance_label`` ``[S]`` per segment;
    ``per_image`` ``[B]`` the number of segments of each image and ``max_per_image`` its
    maximum. Segment ids are ascending in (image, k-means cluster, semantic, instance), so the
    segments of one image are contiguous.
    """

    index: Tensor
    batch_index: Tensor
    semantic_label: Tensor
    instance_label: Tensor
    per_image: Tensor
    max_per_image: int

    @property
    def count(self) -> int:
        return self.batch_index.numel()


def segment_keys(batch_index: Tensor, cluster_label: Tensor, semantic_label: Tensor, instance_label: Tensor,
                 num_images: int, num_clusters: int) -> SegmentKeys:
    """Key every pixel by (image, k-means cluster, semantic, instance) (docs/method.md §2.5 step 4; §6 D).

    All inputs are int64 over the pixels of the (gathered) batch, ``[N]`` or broadcastable to a
    common shape whose flattening is the pixel list (the objective keys both passes at once, a
    ``[2, N]`` image and cluster index against ``[N]`` scribble and instance labels), with
    ``batch_index < num_images``, ``cluster_label < num_clusters``, ``semantic_label <
    SEMANTIC_RANGE`` and ``instance_label < INSTANCE_RANGE`` (:func:`labels_in_key_range`). The
    key space has a fixed size, so nothing is read back to the host.
    """
    key = ((batch_index * num_clusters + cluster_label) * SEMANTIC_RANGE + semantic_label) * INSTANCE_RANGE + instance_label
    key = key.reshape(-1)
    key_space = num_images * num_clusters * SEMANTIC_RANGE * INSTANCE_RANGE
    present = torch.zeros(key_space, dtype=torch.bool, device=key.device).index_fill_(0, key, True)
    return SegmentKeys(key, present.reshape(num_images, num_clusters, SEMANTIC_RANGE, INSTANCE_RANGE))


def labels_in_key_range(semantic_label: Tensor, instance_label: Tensor) -> Tensor:
    """0-d bool: every semantic label is in ``0..SEMANTIC_RANGE−1`` and every instance label in ``0..INSTANCE_RANGE−1``."""
    semantic_ok = (semantic_label >= 0) & (semantic_label < SEMANTIC_RANGE)
    instance_ok = (instance_label >= 0) & (instance_label < INSTANCE_RANGE)
    return (semantic_ok & instance_ok).all()


def build_segments(keys: SegmentKeys, count: int, max_per_image: int) -> Segments:
    """Number the segments by ascending key and decode their labels (docs/method.md §2.5 step 4; §6 D/E).

    ``count`` and ``max_per_image`` are the values of :meth:`SegmentKeys.num_segments` and
    :meth:`SegmentKeys.max_segments_per_image`, read by the caller. A pixel's segment id is the dense
    rank of its key, ``cumsum(present) − 1`` at the key, which is what the release's two-stage
    ranking (docs/method.md §6 D, then the re-ranking by (image, segment) of §6 E) produces.
    """
    index = (torch.cumsum(keys.present.reshape(-1), dim=0) - 1)[keys.key]
    segment_key = keys.key.new_empty(count).scatter_(0, index, keys.key)
    num_clusters = keys.present.shape[1]
    return Segments(
        index=index,
        batch_index=segment_key // (num_clusters * SEMANTIC_RANGE * INSTANCE_RANGE),
        semantic_label=segment_key // INSTANCE_RANGE % SEMANTIC_RANGE,
        instance_label=segment_key % INSTANCE_RANGE,
        per_image=keys.segments_per_image(),
        max_per_image=max_per_image,
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
