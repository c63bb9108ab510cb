"""Speed benchmarks. Subcommands:

``objective``  forward+backward of :class:`spml.losses.DHFRObjective` (docs/method.md §2) on synthetic
               224×224 batches, against a straightforward formulation that clusters and scores
               each image in its own Python iteration (kept here only for the comparison).

``network``    the network (docs/method.md §1): one eval-mode forward, and one training step (train-mode
               forward with the augmented pass, the objective, backward, gradient clamp, Adam).

Examples: ``python pyscripts/benchmark/speed.py objective --batch-sizes 4 16 --repeats 3``,
``python pyscripts/benchmark/speed.py network --batch-sizes 1 4``
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import json
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lib.io import atomic_write_text
from network import build_model
from spml.clustering import grid_initial_labels, grid_num_clusters, pixel_features, resize_labels, segment_prototypes, spherical_kmeans
from spml.config import default_config
from spml.losses import DHFRObjective
from spml.losses.hypersphere import semantic_annotation_loss
from spml.losses.objective import saliency_losses
from spml.losses.parted_ce import SIDE_WEIGHTS
from spml.losses.prototype_accuracy import prototype_accuracy
from spml.losses.segsort import segsort_loss

INPUT_SIZE, EMBEDDING_SIZE, EMBEDDING_DIM = 224, 56, 64


def _smooth_field(generator: torch.Generator, batch_size: int, channels: int, size: int) -> torch.Tensor:
    """Uniform noise on a 14×14 grid, bilinearly upsampled to ``size``: ``[B, C, size, size]`` in [0, 1]."""
    coarse = torch.rand(batch_size, channels, 14, 14, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def synthetic_objective_inputs(batch_size: int, device: torch.device, seed: int = 0) -> tuple[dict, dict, torch.Tensor]:
    """Network outputs (leaf tensors requiring grad), labels and the image, shaped like a training batch.

    Embeddings and instance labels are smooth random fields (instance: mostly low values, like
    an edge map, quantised to 2..200),
    giving several hundred segments per image as real training batches do; scribbles are a
    background band and a foreground band, the rest unknown.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 1, INPUT_SIZE, INPUT_SIZE)
    outputs = {name: torch.rand(shape, generator=generator) for name in (*SIDE_WEIGHTS, "contour_div1", "div1_aug")}
    for name in ("embedding", "embedding_aug"):
        outputs[name] = _smooth_field(generator, batch_size, EMBEDDING_DIM, EMBEDDING_SIZE) + 0.1 * torch.randn(
            batch_size, EMBEDDING_DIM, EMBEDDING_SIZE, EMBEDDING_SIZE, generator=generator
        )
    outputs = {name: tensor.to(device).requires_grad_() for name, tensor in outputs.items()}
    field = _smooth_field(generator, batch_size, 1, INPUT_SIZE)
    semantic = torch.full((batch_size, INPUT_SIZE, INPUT_SIZE), 2, dtype=torch.long)
    semantic[:, 8:24] = 0
    semantic[:, 100:116, 60:160] = 1
    labels = {
        "semantic_label": semantic,
        "instance_label": (2 + 4 * (49 * field.squeeze(1) ** 4).round()).long(),
        "contour_sum_label": torch.rand(batch_size, INPUT_SIZE, INPUT_SIZE, generator=generator),
    }
    image = torch.randn(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
    return outputs, {name: tensor.to(device) for name, tensor in labels.items()}, image.to(device)


def looped_objective(outputs: dict, labels: dict, image: torch.Tensor) -> dict:
    """The straightforward formulation, for timing only: k-means, segments and img_sim image by image,
    with the autograd-differentiated reference :func:`~spml.losses.segsort.segsort_loss`.

    Release defaults, single process, empty memory bank; the same numbers as
    :class:`DHFRObjective` (checked by :func:`time_objective`).
    """
    config = default_config()
    net, weights = config.network, config.loss
    embedding = outputs["embedding"]
    num_images, _, height, width = embedding.shape
    grid = tuple(net.kmeans_num_clusters)
    initial = grid_initial_labels(height, width, grid, device=embedding.device)
    semantic, instance = (resize_labels(labels[key], (height, width)) for key in ("semantic_label", "instance_label"))
    pixels, own, prototypes, prototype_labels, img_sim = [], [], [], [], 0.0
    for pass_embedding in (embedding, outputs["embedding_aug"]):
        for position in range(num_images):
            z, zl = (t.squeeze(0) for t in pixel_features(pass_embedding[position : position + 1]))
            clusters = spherical_kmeans(zl.detach().unsqueeze(0), initial, grid_num_clusters(height, width, grid), net.kmeans_iterations).squeeze(0)
            combined = semantic[position].reshape(-1) * net.label_divisor + instance[position].reshape(-1)
            combined_range = int(combined.max()) + 1
            keys, index = torch.unique(clusters * combined_range + combined, return_inverse=True)
            segment_label = keys % combined_range
            own.append(index + sum(len(p) for p in prototypes))
            pixels.append(z)
            prototypes.append(segment_prototypes(z, index, len(keys)))
            prototype_labels.append(segment_label // net.label_divisor)
            per_pixel = segsort_loss(
                zl.unsqueeze(0),
                instance[position].reshape(1, -1),
                index.unsqueeze(0),
                segment_prototypes(zl, index, len(keys)).unsqueeze(0),
                (segment_label % net.label_divisor).unsqueeze(0),
                torch.ones(1, len(keys), dtype=torch.bool, device=embedding.device),
                weights.img_sim_concentration,
                weights.margin,
            )
            img_sim = img_sim + per_pixel.mean() / num_images
    all_prototypes, all_labels = torch.cat(prototypes), torch.cat(prototype_labels)
    num_classes = config.dataset.num_classes
    sem_ann = semantic_annotation_loss(
        torch.cat(pixels), semantic.reshape(-1).repeat(2), torch.cat(own), all_prototypes, all_labels,
        num_classes, weights.sem_ann_concentration, weights.margin, segsort=segsort_loss,
        num_kept_pixels=2 * int((semantic < num_classes).sum()), num_kept_prototypes=int((all_labels < num_classes).sum()),
    )
    losses = {
        "sem_ann_loss": weights.sem_ann_loss_weight * sem_ann,
        "img_sim_loss": weights.img_sim_loss_weight * img_sim,
        **saliency_losses(outputs, labels, image, weights),
    }
    return {**losses, "loss": sum(losses.values()), "accuracy": prototype_accuracy(all_prototypes.detach(), all_labels)}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_forward_backward(objective: Callable[[dict, dict, torch.Tensor], dict], outputs: dict, labels: dict, image: torch.Tensor,
                           repeats: int) -> tuple[float, float]:
    """Median seconds of ``objective(...)["loss"].backward()`` over ``repeats`` runs (after one warm-up), and the loss."""
    losses = []

    def step() -> None:
        for tensor in outputs.values():
            tensor.grad = None
        total = objective(outputs, labels, image)["loss"]
        total.backward()
        losses.append(float(total.detach()))

    return _median_seconds(step, outputs["embedding"].device, repeats), losses[-1]


def time_objective(devices: list[str], batch_sizes: list[int], repeats: int) -> list[dict]:
    """Time the batched and the looped objective for every device and batch size."""
    rows = []
    cases = [(device, batch_size) for device in devices for batch_size in batch_sizes]
    for device_name, batch_size in tqdm(cases, desc="objective", unit="case"):
        device = torch.device(device_name)
        outputs, labels, image = synthetic_objective_inputs(batch_size, device)
        batched_seconds, batched_loss = _time_forward_backward(DHFRObjective().to(device), outputs, labels, image, repeats)
        looped_seconds, looped_loss = _time_forward_backward(looped_objective, outputs, labels, image, repeats)
        if abs(batched_loss - looped_loss) > 1e-4 * abs(looped_loss):
            raise RuntimeError(f"batched and looped objective disagree on {device_name}, batch {batch_size}: {batched_loss} vs {looped_loss}")
        rows.append(
            {"device": device_name, "batch_size": batch_size, "batched_s": batched_seconds, "looped_s": looped_seconds, "loss": batched_loss}
        )
    return rows


def _median_seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of ``step()`` over ``repeats`` runs, after one warm-up run."""
    seconds = []
    for run in range(repeats + 1):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        if run:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def time_network(devices: list[str], batch_sizes: list[int], repeats: int) -> list[dict]:
    """Eval forward and full training step of the network for every device and batch size."""
    rows = []
    cases = [(device, batch_size) for device in devices for batch_size in batch_sizes]
    for device_name, batch_size in tqdm(cases, desc="network", unit="case"):
        device = torch.device(device_name)
        torch.manual_seed(0)
        model, objective = build_model().to(device), DHFRObjective().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        _, labels, image = synthetic_objective_inputs(batch_size, device)
        depth = torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE, device=device)

        def eval_forward() -> None:
            with torch.no_grad():
                model.eval()(image, depth)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            objective(model.train()(image, depth), labels, image)["loss"].backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
            optimizer.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        row = {
            "device": device_name,
            "batch_size": batch_size,
            "eval_forward_s": _median_seconds(eval_forward, device, repeats),
            "train_step_s": _median_seconds(train_step, device, repeats),
        }
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(row)
    return rows


def run_network(args: argparse.Namespace) -> None:
    rows = time_network(args.devices, args.batch_sizes, args.repeats)
    print(f"{'device':<8}{'batch':>6}{'eval fwd s':>12}{'train step s':>14}")
    for row in rows:
        print(f"{row['device']:<8}{row['batch_size']:>6}{row['eval_forward_s']:>12.3f}{row['train_step_s']:>14.3f}")
    if args.json:
        atomic_write_text(json.dumps(rows, indent=2) + "\n", args.json)


def _default_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run_objective(args: argparse.Namespace) -> None:
    rows = time_objective(args.devices, args.batch_sizes, args.repeats)
    print(f"{'device':<8}{'batch':>6}{'batched s':>12}{'looped s':>12}{'speed-up':>10}")
    for row in rows:
        speed_up = row["looped_s"] / row["batched_s"]
        print(f"{row['device']:<8}{row['batch_size']:>6}{row['batched_s']:>12.3f}{row['looped_s']:>12.3f}{speed_up:>9.2f}x")
    if args.json:
        atomic_write_text(json.dumps(rows, indent=2) + "\n", args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subcommands = parser.add_subparsers(dest="command", required=True)
    objective = subcommands.add_parser("objective", help="forward+backward of DHFRObjective, batched vs per-image loop")
    objective.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    objective.add_argument("--devices", nargs="+", default=_default_devices(), help="default: cpu, and cuda when present")
    objective.add_argument("--repeats", type=int, default=3, help="timed runs per case (after one warm-up)")
    objective.add_argument("--json", default="", help="also write the results to this JSON file")
    objective.set_defaults(run=run_objective)
    network = subcommands.add_parser("network", help="eval forward and one training step of the network")
    network.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    network.add_argument("--devices", nargs="+", default=_default_devices(), help="default: cpu, and cuda when present")
    network.add_argument("--repeats", type=int, default=2, help="timed runs per case (after one warm-up)")
    network.add_argument("--json", default="", help="also write the results to this JSON file")
    network.set_defaults(run=run_network)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
