"""The complete DHFR training objective (docs/method.md §2): scribble CE, SSC, smoothness, contour and vMF terms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spml.clustering import (
    INSTANCE_RANGE,
    SEMANTIC_RANGE,
    SegmentKeys,
    Segments,
    build_segments,
    grid_initial_labels,
    grid_num_clusters,
    labels_in_key_range,
    pixel_features,
    resize_labels,
    segment_keys,
    segment_prototypes,
    spherical_kmeans,
)
from spml.config import Config, LossConfig, default_config
from spml.losses.hypersphere import image_similarity_loss, semantic_annotation_loss
from spml.losses.memory_bank import MemoryBank
from spml.losses.parted_ce import parted_cross_entropy
from spml.losses.prototype_accuracy import prototype_accuracy
from spml.losses.smoothness import smoothness
from spml.losses.structure_consistency import structure_consistency

Gather = Callable[[Tensor], Tensor]


def _no_gather(tensor: Tensor) -> Tensor:
    return tensor


@dataclass(frozen=True)
class _PixelPass:
    """One pass (plain or augmented) of the gathered batch, clustered but not yet segmented (docs/method.md §2.5 steps 2-4)."""

    z: Tensor  # [N, D] unit pixel embeddings
    zl: Tensor  # [N, D+2] with location
    keys: SegmentKeys


@dataclass(frozen=True)
class _ClusteredPass:
    """One pass of the gathered batch with its segments and their prototypes ``normalise(Σ z)``."""

    z: Tensor  # [N, D]
    zl: Tensor  # [N, D+2]
    segments: Segments
    prototypes: Tensor  # [S, D]


@dataclass(frozen=True)
class _PixelBatch:
    """Both passes of the gathered batch and its per-pixel labels at embedding resolution."""

    plain: _PixelPass
    aug: _PixelPass
    semantic_label: Tensor  # [N]
    instance_label: Tensor  # [N]
    num_images: int


@dataclass(frozen=True)
class _StepSizes:
    """The data-dependent sizes of one step, read from the device in one transfer.

    ``segments`` and ``max_segments_per_image`` per pass (plain, aug); ``scribbled_pixels`` of
    one pass; ``scribbled_prototypes`` over both passes and the memory bank.
    """

    segments: tuple[int, int]
    max_segments_per_image: tuple[int, int]
    scribbled_pixels: int
    scribbled_prototypes: int

    @classmethod
    def read(cls, batch: _PixelBatch, stored_labels: Tensor | None, num_classes: int) -> _StepSizes:
        """The step's only host read: one ``tolist()`` of the stacked sizes (and the label range check)."""
        passes = (batch.plain.keys, batch.aug.keys)
        scribbled_prototype_counts = [keys.num_scribbled_segments(num_classes) for keys in passes]
        if stored_labels is not None:
            scribbled_prototype_counts.append((stored_labels < num_classes).sum())
        sizes = torch.stack([
            *(keys.num_segments() for keys in passes),
            *(keys.max_segments_per_image() for keys in passes),
            (batch.semantic_label < num_classes).sum(),
            torch.stack(scribbled_prototype_counts).sum(),
            labels_in_key_range(batch.semantic_label, batch.instance_label).long(),
        ]).tolist()
        segments_plain, segments_aug, max_plain, max_aug, scribbled_pixels, scribbled_prototypes, labels_in_range = sizes
        if not labels_in_range:
            raise ValueError(
                f"semantic labels must lie in 0..{SEMANTIC_RANGE - 1} and instance labels in 0..{INSTANCE_RANGE - 1} "
                "(docs/method.md §3.2)"
            )
        return cls((segments_plain, segments_aug), (max_plain, max_aug), scribbled_pixels, scribbled_prototypes)


def saliency_losses(outputs: dict[str, Tensor], labels: dict[str, Tensor], image: Tensor, weights: LossConfig) -> dict[str, Tensor]:
    """The weighted terms on the saliency outputs: partedCE (§2.1), ssc (§2.2), smo (§2.3), contour (§2.4)."""
    contour = outputs["contour_div1"]
    return {
        "partedCE_loss": weights.parted_ce_loss_weight * parted_cross_entropy(outputs, labels["semantic_label"]),
        "ssc_loss": weights.ssc_loss_weight * structure_consistency(outputs["div1_aug"], outputs["div1"]),
        "smo_loss": smoothness(outputs["div1"], image),
        "contour_loss": F.binary_cross_entropy(contour, labels["contour_sum_label"].unsqueeze(1).to(contour.dtype)),
    }


class DHFRObjective(nn.Module):
    """``objective(outputs, labels, image, memory=None)`` -> the weighted losses of docs/method.md §2.

    ``outputs``: the network's training outputs (``div1, div2, div4, div8, div16,
    before_fuse_div16, contour_div1, embedding, div1_aug, embedding_aug``). ``labels``:
    ``semantic_label`` ``[B, H, W]`` int64 (0 bg, 1 fg, 2 unknown), ``instance_label`` int64
    (0..256), ``contour_sum_label`` float. ``image``: the normalised RGB input ``[B, 3, H, W]``.
    ``memory``: a :class:`MemoryBank` whose prototypes join ``sem_ann``.

    Returns ``sem_ann_loss, img_sim_loss, partedCE_loss, ssc_loss, smo_loss, contour_loss``
    (weighted 0-d tensors), ``loss`` (their sum), ``accuracy`` (float32 0-d tensor) and
    ``memory_state`` (detached prototypes and labels of this step plus the global
    ``batch_size``, a Python int; pass it to ``memory.push`` after the optimiser step).

    One call reads the device once: the data-dependent sizes (segment counts, scribbled pixels
    and prototypes) in one transfer (:class:`_StepSizes`); everything else stays on the device.

    ``gather(tensor)`` concatenates a tensor along dim 0 over processes in rank order. The
    per-pixel embeddings, k-means labels and scribble/instance labels are gathered before the
    segments are formed, as the release gathers them across GPUs; the segment ids are formed
    from the gathered (global) image index, so they are unique across processes.
    """

    def __init__(self, config: Config | None = None, gather: Gather | None = None) -> None:
        super().__init__()
        config = config or default_config()
        self.loss_config = config.loss
        self.network_config = config.network
        self.num_classes = config.dataset.num_classes
        self.gather = gather or _no_gather

    def forward(self, outputs: dict[str, Tensor], labels: dict[str, Tensor], image: Tensor, memory: MemoryBank | None = None) -> dict:
        weights = self.loss_config
        batch = self._cluster(outputs["embedding"], outputs["embedding_aug"], labels)
        stored = memory.semantic_prototypes() if memory is not None else None
        sizes = _StepSizes.read(batch, None if stored is None else stored[1], self.num_classes)
        plain, aug = (
            _segment_pass(pixel_pass, count, max_per_image)
            for pixel_pass, count, max_per_image in zip((batch.plain, batch.aug), sizes.segments, sizes.max_segments_per_image)
        )
        num_images = batch.num_images

        sem_ann_prototypes = [plain.prototypes, aug.prototypes]
        sem_ann_labels = [plain.segments.semantic_label, aug.segments.semantic_label]
        if stored is not None:
            sem_ann_prototypes.append(stored[0].to(plain.prototypes.dtype))
            sem_ann_labels.append(stored[1])
        all_prototypes, all_labels = torch.cat(sem_ann_prototypes), torch.cat(sem_ann_labels)

        sem_ann = semantic_annotation_loss(
            torch.cat((plain.z, aug.z)),
            torch.cat((batch.semantic_label, batch.semantic_label)),
            torch.cat((plain.segments.index, aug.segments.index + plain.segments.count)),
            all_prototypes,
            all_labels,
            self.num_classes,
            weights.sem_ann_concentration,
            weights.margin,
            num_kept_pixels=2 * sizes.scribbled_pixels,
            num_kept_prototypes=sizes.scribbled_prototypes,
        )
        img_sim = sum(
            image_similarity_loss(
                clustered.zl.reshape(num_images, -1, clustered.zl.shape[-1]),
                batch.instance_label.reshape(num_images, -1),
                clustered.segments,
                weights.img_sim_concentration,
                weights.margin,
            )
            for clustered in (plain, aug)
        )
        losses = {
            "sem_ann_loss": weights.sem_ann_loss_weight * sem_ann,
            "img_sim_loss": weights.img_sim_loss_weight * img_sim,
            **saliency_losses(outputs, labels, image, weights),
        }
        return {
            **losses,
            "loss": sum(losses.values()),
            "accuracy": prototype_accuracy(all_prototypes.detach(), all_labels),
            "memory_state": self._memory_state(plain, aug, num_images),
        }

    def _cluster(self, embedding: Tensor, embedding_aug: Tensor, labels: dict[str, Tensor]) -> _PixelBatch:
        """k-means both passes locally, gather pixels and labels, key every pixel by its segment.

        The augmented pass uses the plain pass's labels (docs/method.md §2.5 step 4).
        """
        height, width = embedding.shape[-2:]
        grid = tuple(self.network_config.kmeans_num_clusters)
        num_clusters = grid_num_clusters(height, width, grid)
        initial = grid_initial_labels(height, width, grid, device=embedding.device)
        pass_features, cluster_labels = [], []
        for pass_embedding in (embedding, embedding_aug):
            z, zl = pixel_features(pass_embedding)
            cluster_labels.append(spherical_kmeans(zl.detach(), initial, num_clusters, self.network_config.kmeans_iterations))
            pass_features.append((self.gather(z.flatten(0, 1)), self.gather(zl.flatten(0, 1))))
        label_maps = [resize_labels(labels[key], (height, width)) for key in ("semantic_label", "instance_label")]
        integer_columns = torch.stack([t.reshape(-1) for t in (*cluster_labels, *label_maps)], dim=1)
        cluster_plain, cluster_aug, semantic, instance = self.gather(integer_columns).unbind(dim=1)
        num_images = semantic.shape[0] // (height * width)
        batch_index = torch.arange(semantic.shape[0], device=embedding.device) // (height * width)
        pixel_passes = [
            _PixelPass(z, zl, segment_keys(batch_index, pass_clusters, semantic, instance, num_images, num_clusters))
            for (z, zl), pass_clusters in zip(pass_features, (cluster_plain, cluster_aug))
        ]
        return _PixelBatch(*pixel_passes, semantic, instance, num_images)

    @staticmethod
    def _memory_state(plain: _ClusteredPass, aug: _ClusteredPass, num_images: int) -> dict:
        """This step's detached prototypes and labels, keyed as the release's memory bank keys them."""
        state: dict = {"batch_size": num_images}
        for suffix, clustered in (("", plain), ("_aug", aug)):
            state[f"prototype{suffix}"] = clustered.prototypes.detach()
            state[f"prototype_semantic_label{suffix}"] = clustered.segments.semantic_label
            state[f"prototype_instance_label{suffix}"] = clustered.segments.instance_label
            state[f"prototype_batch_index{suffix}"] = clustered.segments.batch_index
        return state


def _segment_pass(pixel_pass: _PixelPass, count: int, max_per_image: int) -> _ClusteredPass:
    """Segments of one pass (``count`` of them, at most ``max_per_image`` in an image) and their prototypes."""
    segments = build_segments(pixel_pass.keys, count, max_per_image)
    return _ClusteredPass(pixel_pass.z, pixel_pass.zl, segments, segment_prototypes(pixel_pass.z, segments.index, segments.count))
