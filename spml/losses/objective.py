"""The complete DHFR training objective (docs/method.md §2): scribble CE, SSC, smoothness, contour and vMF terms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spml.clustering import (
    Segments,
    build_segments,
    grid_initial_labels,
    pixel_features,
    resize_labels,
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
class _ClusteredPass:
    """One pass (plain or augmented) of the gathered batch after clustering (docs/method.md §2.5 steps 2-4)."""

    z: Tensor  # [N, D] unit pixel embeddings
    zl: Tensor  # [N, D+2] with location
    segments: Segments
    prototypes: Tensor  # [S, D] normalise(Σ z) per segment


@dataclass(frozen=True)
class _ClusteredBatch:
    """Both passes of the gathered batch and its per-pixel labels at embedding resolution."""

    plain: _ClusteredPass
    aug: _ClusteredPass
    semantic_label: Tensor  # [N]
    instance_label: Tensor  # [N]
    num_images: int


def saliency_losses(outputs: dict[str, Tensor], labels: dict[str, Tensor], weights: LossConfig) -> dict[str, Tensor]:
    """The weighted terms on the saliency outputs: partedCE (§2.1), ssc (§2.2), smo (§2.3), contour (§2.4)."""
    contour = outputs["contour_div1"]
    return {
        "partedCE_loss": weights.parted_ce_loss_weight * parted_cross_entropy(outputs, labels["semantic_label"]),
        "ssc_loss": weights.ssc_loss_weight * structure_consistency(outputs["div1_aug"], outputs["div1"]),
        "smo_loss": smoothness(outputs["div1"], labels["image"]),
        "contour_loss": F.binary_cross_entropy(contour, labels["contour_sum_label"].unsqueeze(1).to(contour.dtype)),
    }


class DHFRObjective(nn.Module):
    """``objective(outputs, labels, memory=None)`` -> the weighted losses of docs/method.md §2.

    ``outputs``: the network's training outputs (``div1, div2, div4, div8, div16,
    before_fuse_div16, contour_div1, embedding, div1_aug, embedding_aug``). ``labels``:
    ``semantic_label`` ``[B, H, W]`` int64 (0 bg, 1 fg, 2 unknown), ``instance_label`` int64,
    ``contour_sum_label`` float, ``image`` (normalised RGB). ``memory``: a :class:`MemoryBank`
    whose prototypes join ``sem_ann``.

    Returns ``sem_ann_loss, img_sim_loss, partedCE_loss, ssc_loss, smo_loss, contour_loss``
    (weighted 0-d tensors), ``loss`` (their sum), ``accuracy`` (float32) and ``memory_state``
    (detached prototypes and labels of this step plus the global ``batch_size``; pass it to
    ``memory.push`` after the optimiser step).

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

    def forward(self, outputs: dict[str, Tensor], labels: dict[str, Tensor], image: Tensor | None = None,
                memory: MemoryBank | None = None) -> dict:
        # Placeholder for the objective branch's ``objective(outputs, labels, image, memory)``.
        if image is not None:
            labels = {**labels, "image": image}
        weights = self.loss_config
        batch = self._cluster(outputs["embedding"], outputs["embedding_aug"], labels)
        plain, aug, num_images = batch.plain, batch.aug, batch.num_images

        sem_ann_prototypes = [plain.prototypes, aug.prototypes]
        sem_ann_labels = [plain.segments.semantic_label, aug.segments.semantic_label]
        stored = memory.semantic_prototypes() if memory is not None else None
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
            **saliency_losses(outputs, labels, weights),
        }
        return {
            **losses,
            "loss": sum(losses.values()),
            "accuracy": prototype_accuracy(all_prototypes.detach(), all_labels),
            "memory_state": self._memory_state(plain, aug, num_images),
        }

    def _cluster(self, embedding: Tensor, embedding_aug: Tensor, labels: dict[str, Tensor]) -> _ClusteredBatch:
        """k-means both passes locally, gather pixels and labels, form segments and prototypes.

        The augmented pass uses the plain pass's labels (docs/method.md §2.5 step 4).
        """
        height, width = embedding.shape[-2:]
        initial = grid_initial_labels(height, width, tuple(self.network_config.kmeans_num_clusters), device=embedding.device)
        pass_features, cluster_labels = [], []
        for pass_embedding in (embedding, embedding_aug):
            z, zl = pixel_features(pass_embedding)
            cluster_labels.append(spherical_kmeans(zl.detach(), initial, self.network_config.kmeans_iterations))
            pass_features.append((self.gather(z.flatten(0, 1)), self.gather(zl.flatten(0, 1))))
        label_maps = [resize_labels(labels[key], (height, width)) for key in ("semantic_label", "instance_label")]
        integer_columns = torch.stack([t.reshape(-1) for t in (*cluster_labels, *label_maps)], dim=1)
        cluster_plain, cluster_aug, semantic, instance = self.gather(integer_columns).unbind(dim=1)
        num_images = semantic.shape[0] // (height * width)
        batch_index = torch.arange(num_images, device=embedding.device).repeat_interleave(height * width)

        passes = []
        for (z, zl), pass_clusters in zip(pass_features, (cluster_plain, cluster_aug)):
            segments = build_segments(batch_index, pass_clusters, semantic, instance, self.network_config.label_divisor)
            passes.append(_ClusteredPass(z, zl, segments, segment_prototypes(z, segments.index, segments.count)))
        return _ClusteredBatch(passes[0], passes[1], semantic, instance, num_images)

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
