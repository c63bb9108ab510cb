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


NUM_PASSES = 2
"""The plain and the augmented pass (docs/method.md §1.7), clustered and segmented together."""


@dataclass(frozen=True)
class _PixelBatch:
    """Both passes of the gathered batch, clustered but not yet segmented (docs/method.md §2.5 steps 2-4).

    Pixels are pass-major: the plain pass's images, then the augmented pass's. Each (pass, image)
    pair is a *group* ``g = pass·B + image`` of the segment key space, so segment ids run over
    the plain segments, then the augmented ones, which is the order ``sem_ann`` lists them in.
    """

    z: Tensor  # [2·B·N, D] unit pixel embeddings
    zl: Tensor  # [2·B·N, D+2] with location
    keys: SegmentKeys  # over the 2·B groups
    semantic_label: Tensor  # [B·N], the same in both passes
    instance_label: Tensor  # [B·N]
    num_images: int


@dataclass(frozen=True)
class _StepSizes:
    """The data-dependent sizes of one step, read from the device in one transfer.

    ``segments`` per pass (plain, aug); ``max_segments_per_image`` over both passes;
    ``scribbled_pixels`` of one pass; ``scribbled_prototypes`` over both passes and the memory bank.
    """

    segments: tuple[int, int]
    max_segments_per_image: int
    scribbled_pixels: int
    scribbled_prototypes: int

    @classmethod
    def read(cls, batch: _PixelBatch, stored_labels: Tensor | None, num_classes: int) -> _StepSizes:
        """The step's only host read: one ``tolist()`` of the stacked sizes (and the label range check)."""
        keys = batch.keys
        segments_per_group = keys.segments_per_image()
        scribbled_prototypes = keys.num_scribbled_segments(num_classes)
        if stored_labels is not None:
            scribbled_prototypes = scribbled_prototypes + (stored_labels < num_classes).sum()
        sizes = torch.stack([
            *segments_per_group.reshape(NUM_PASSES, -1).sum(dim=1).unbind(),
            segments_per_group.max(),
            (batch.semantic_label < num_classes).sum(),
            scribbled_prototypes,
            labels_in_key_range(batch.semantic_label, batch.instance_label).long(),
        ]).tolist()
        segments_plain, segments_aug, max_per_image, scribbled_pixels, scribbled_prototypes, labels_in_range = sizes
        if not labels_in_range:
            raise ValueError(
                f"semantic labels must lie in 0..{SEMANTIC_RANGE - 1} and instance labels in 0..{INSTANCE_RANGE - 1} "
                "(docs/method.md §3.2)"
            )
        return cls((segments_plain, segments_aug), max_per_image, scribbled_pixels, scribbled_prototypes)


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
    """``objective(outputs, labels, image, memory=None, accuracy=True)`` -> the weighted losses of docs/method.md §2.

    ``outputs``: the network's training outputs (``div1, div2, div4, div8, div16,
    before_fuse_div16, contour_div1, embedding, div1_aug, embedding_aug``). ``labels``:
    ``semantic_label`` ``[B, H, W]`` int64 (0 bg, 1 fg, 2 unknown), ``instance_label`` int64
    (0..256), ``contour_sum_label`` float. ``image``: the normalised RGB input ``[B, 3, H, W]``.
    ``memory``: a :class:`MemoryBank` whose prototypes join ``sem_ann``.

    Returns ``sem_ann_loss, img_sim_loss, partedCE_loss, ssc_loss, smo_loss, contour_loss``
    (weighted 0-d tensors), ``loss`` (their sum), ``accuracy`` (float32 0-d tensor; left out
    with ``accuracy=False``: it is a logged diagnostic, and the training loop asks for it only
    on the iterations it logs) and ``memory_state`` (detached prototypes and labels of this step plus the global
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

    def forward(self, outputs: dict[str, Tensor], labels: dict[str, Tensor], image: Tensor, memory: MemoryBank | None = None,
                accuracy: bool = True) -> dict:
        weights = self.loss_config
        # Terms that need no size are issued before the step's one device read, so that on a GPU
        # their launches overlap the network's kernels instead of following the read.
        saliency = saliency_losses(outputs, labels, image, weights)
        batch = self._cluster(outputs["embedding"], outputs["embedding_aug"], labels)
        stored = memory.semantic_prototypes() if memory is not None else None
        sizes = _StepSizes.read(batch, None if stored is None else stored[1], self.num_classes)
        segments = build_segments(batch.keys, sum(sizes.segments), sizes.max_segments_per_image)
        prototypes = segment_prototypes(batch.z, segments.index, segments.count)  # plain, then aug
        num_images = batch.num_images

        sem_ann_prototypes, sem_ann_labels = [prototypes], [segments.semantic_label]
        if stored is not None:
            sem_ann_prototypes.append(stored[0].to(prototypes.dtype))
            sem_ann_labels.append(stored[1])
        all_prototypes, all_labels = torch.cat(sem_ann_prototypes), torch.cat(sem_ann_labels)

        sem_ann = semantic_annotation_loss(
            batch.z,
            batch.semantic_label.repeat(NUM_PASSES),
            segments.index,
            all_prototypes,
            all_labels,
            self.num_classes,
            weights.sem_ann_concentration,
            weights.margin,
            num_kept_pixels=NUM_PASSES * sizes.scribbled_pixels,
            num_kept_prototypes=sizes.scribbled_prototypes,
        )
        # plain + aug = NUM_PASSES × the mean over all (pass, image) groups (docs/method.md §2.5 step 7).
        img_sim = NUM_PASSES * image_similarity_loss(
            batch.zl.reshape(NUM_PASSES * num_images, -1, batch.zl.shape[-1]),
            batch.instance_label.reshape(num_images, -1).repeat(NUM_PASSES, 1),
            segments,
            weights.img_sim_concentration,
            weights.margin,
        )
        losses = {
            "sem_ann_loss": weights.sem_ann_loss_weight * sem_ann,
            "img_sim_loss": weights.img_sim_loss_weight * img_sim,
            **saliency,
        }
        return {
            **losses,
            "loss": sum(losses.values()),
            **({"accuracy": prototype_accuracy(all_prototypes.detach(), all_labels)} if accuracy else {}),
            "memory_state": _memory_state(prototypes, segments, sizes.segments, num_images),
        }

    def _cluster(self, embedding: Tensor, embedding_aug: Tensor, labels: dict[str, Tensor]) -> _PixelBatch:
        """k-means both passes at once, gather pixels and labels, key every pixel by its segment.

        The augmented pass uses the plain pass's labels (docs/method.md §2.5 step 4).
        """
        height, width = embedding.shape[-2:]
        num_pixels = height * width
        grid = tuple(self.network_config.kmeans_num_clusters)
        num_clusters = grid_num_clusters(height, width, grid)
        initial = grid_initial_labels(height, width, grid, device=embedding.device)
        z, zl = pixel_features(torch.cat((embedding, embedding_aug)))  # [2B, N, ·], pass-major
        clusters = spherical_kmeans(zl.detach(), initial, num_clusters, self.network_config.kmeans_iterations)
        label_maps = [resize_labels(labels[key], (height, width)).reshape(-1) for key in ("semantic_label", "instance_label")]
        integer_columns = torch.stack([*clusters.reshape(NUM_PASSES, -1), *label_maps], dim=1)  # [B·N, 4]
        integer_columns = self.gather(integer_columns)
        pass_clusters, semantic, instance = integer_columns.T[:NUM_PASSES], integer_columns[:, 2], integer_columns[:, 3]
        num_images = semantic.shape[0] // num_pixels
        num_groups = NUM_PASSES * num_images
        group = torch.arange(num_groups * num_pixels, device=embedding.device).reshape(NUM_PASSES, -1) // num_pixels
        keys = segment_keys(group, pass_clusters, semantic, instance, num_groups, num_clusters)
        return _PixelBatch(self._gather_passes(z), self._gather_passes(zl), keys, semantic, instance, num_images)

    def _gather_passes(self, features: Tensor) -> Tensor:
        """``[2B, N, D]`` pass-major features -> the gathered ``[2·B_global·N, D]``, still pass-major.

        The gather runs over images (dim 0 of the ``[B, 2, N, D]`` view), so each pass holds the
        images in rank order; without processes this is a view of ``features``.
        """
        per_image = features.unflatten(0, (NUM_PASSES, -1)).transpose(0, 1)
        return self.gather(per_image).transpose(0, 1).reshape(-1, features.shape[-1])


def _memory_state(prototypes: Tensor, segments: Segments, segments_per_pass: tuple[int, int], num_images: int) -> dict:
    """This step's detached prototypes and labels, keyed as the release's memory bank keys them.

    The segments of the pass-major groups split into the plain pass's and the augmented pass's;
    a group's batch index is its image, ``group mod B``.
    """
    fields = {
        "prototype": prototypes.detach(),
        "prototype_semantic_label": segments.semantic_label,
        "prototype_instance_label": segments.instance_label,
        "prototype_batch_index": segments.batch_index % num_images,
    }
    state: dict = {"batch_size": num_images}
    for name, values in fields.items():
        state[name], state[f"{name}_aug"] = values.split(segments_per_pass)
    return state
