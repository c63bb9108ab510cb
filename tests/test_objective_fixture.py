"""DHFRObjective and the clustering against ``reference/losses.npz`` (two steps, memory bank from step 1),
on the CPU and on CUDA when present."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spml.clustering import (
    build_segments,
    grid_initial_labels,
    pixel_features,
    resize_labels,
    segment_keys,
    segment_prototypes,
    spherical_kmeans,
)
from spml.losses import DHFRObjective, MemoryBank
from reference_tables import float32_loss_tolerance

LOSS_KEYS = ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss")
# Objective output name -> fixture name.
OUTPUT_KEYS = {
    "div1": "div1",
    "div2": "div2",
    "div4": "div4",
    "div8": "div8",
    "div16": "div16",
    "before_fuse_div16": "bef_div16",
    "contour_div1": "contour_div1",
    "embedding": "embedding",
    "div1_aug": "div1_aug",
    "embedding_aug": "embedding_aug",
}
LABEL_KEYS = ("semantic_label", "instance_label", "contour_sum_label")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(scope="module")
def fixture(reference_dir):
    arrays = np.load(reference_dir / "losses.npz")
    return {key: arrays[key] for key in arrays.files}


def step_inputs(fixture, step: int, dtype: torch.dtype) -> tuple[dict, dict, torch.Tensor]:
    """``(outputs, labels, image)`` of one fixture step."""
    outputs = {key: torch.from_numpy(fixture[f"step{step}_{name}"]).to(dtype) for key, name in OUTPUT_KEYS.items()}
    labels = {key: torch.from_numpy(fixture[f"step{step}_{key}"]) for key in LABEL_KEYS}
    return outputs, labels, torch.from_numpy(fixture[f"step{step}_image"])


def run_two_steps(fixture, dtype: torch.dtype, device: torch.device) -> list[dict]:
    """Both steps on ``device``; every tensor of the results brought back to the CPU."""
    objective, memory, results = DHFRObjective().to(device), MemoryBank(size=2), []
    for step in (1, 2):
        outputs, labels, image = step_inputs(fixture, step, dtype)
        result = objective({key: value.to(device) for key, value in outputs.items()},
                           {key: value.to(device) for key, value in labels.items()}, image.to(device), memory=memory)
        memory.push(result["memory_state"])
        results.append(on_cpu(result))
    return results


def on_cpu(tree: object) -> object:
    """``tree`` (tensors in dicts) with every tensor detached and on the CPU."""
    if isinstance(tree, dict):
        return {key: on_cpu(value) for key, value in tree.items()}
    return tree.detach().cpu() if torch.is_tensor(tree) else tree


@pytest.fixture(scope="module", params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="module")
def float64_results(fixture, device):
    return run_two_steps(fixture, torch.float64, device)


@pytest.fixture(scope="module")
def float32_results(fixture, device):
    return run_two_steps(fixture, torch.float32, device)


def assert_same_partition(ours: torch.Tensor, reference: torch.Tensor) -> None:
    pairs = torch.unique(torch.stack((ours, reference)), dim=1).shape[1]
    assert pairs == torch.unique(ours).numel() == torch.unique(reference).numel()


@pytest.mark.parametrize("step", [1, 2])
def test_losses_and_accuracy_equal_fixture_float64(fixture, float64_results, step):
    result = float64_results[step - 1]
    for key in (*LOSS_KEYS, "accuracy"):
        expected = float(fixture[f"step{step}_{key}"])
        assert float(result[key]) == pytest.approx(expected, rel=1e-6), key
    assert float(result["loss"]) == pytest.approx(float(fixture[f"step{step}_total_loss"]), rel=1e-6)


@pytest.mark.parametrize("step", [1, 2])
def test_prototypes_and_their_labels_equal_fixture(fixture, float64_results, step):
    state = float64_results[step - 1]["memory_state"]
    for suffix in ("", "_aug"):
        expected = torch.from_numpy(fixture[f"step{step}_prototype{suffix}"])
        assert state[f"prototype{suffix}"].shape == expected.shape
        torch.testing.assert_close(state[f"prototype{suffix}"], expected, rtol=0, atol=1e-12)
        for field in ("semantic_label", "instance_label", "batch_index"):
            key = f"prototype_{field}{suffix}"
            assert torch.equal(state[key], torch.from_numpy(fixture[f"step{step}_{key}"])), key
    assert not state["prototype"].requires_grad


def test_memory_bank_holds_step1_with_shifted_batch_index(fixture, float64_results):
    memory = MemoryBank(size=2)
    memory.push(float64_results[0]["memory_state"])
    (entry,) = memory.entries
    for suffix in ("", "_aug"):
        expected = torch.from_numpy(fixture[f"step2_memory_prototype_batch_index{suffix}"])
        assert torch.equal(entry[f"prototype_batch_index{suffix}"], expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("suffix", ["", "_aug"])
def test_segments_equal_fixture_partition(fixture, dtype, step, suffix):
    outputs, labels, _ = step_inputs(fixture, step, dtype)
    embedding = outputs[f"embedding{suffix}"]
    num_images, dim, height, width = embedding.shape
    z, zl = pixel_features(embedding)
    initial = grid_initial_labels(height, width, (6, 6), device=embedding.device)
    clusters = spherical_kmeans(zl, initial, num_clusters=36, iterations=10).reshape(-1)
    semantic, instance = (resize_labels(labels[key], (height, width)).reshape(-1) for key in ("semantic_label", "instance_label"))
    assert torch.equal(semantic, torch.from_numpy(fixture[f"step{step}_cluster_semantic_label"]))
    assert torch.equal(instance, torch.from_numpy(fixture[f"step{step}_cluster_instance_label"]))
    batch_index = torch.arange(num_images).repeat_interleave(height * width)
    keys = segment_keys(batch_index, clusters, semantic, instance, num_images, num_clusters=36)
    segments = build_segments(keys, int(keys.num_segments()), int(keys.max_segments_per_image()))
    reference = torch.from_numpy(fixture[f"step{step}_cluster_index{suffix}"])
    assert_same_partition(segments.index, reference)
    # Prototype j of the fixture is the segment holding the pixels with reference id j.
    ours_for_reference = torch.zeros(segments.count, dtype=torch.long).scatter_(0, reference, segments.index)
    prototypes = segment_prototypes(z.reshape(-1, dim), segments.index, segments.count)[ours_for_reference]
    expected = torch.from_numpy(fixture[f"step{step}_prototype{suffix}"]).to(dtype)
    torch.testing.assert_close(prototypes, expected, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize("step", [1, 2])
def test_float32_run_stays_within_the_reference_float32_tolerance(fixture, float32_results, reference_dir, step):
    """Within the release's own float32 deviation, read from ../shared/reference/README.md (1e-6)."""
    tolerance = float32_loss_tolerance(reference_dir / "README.md")
    result = float32_results[step - 1]
    for key in LOSS_KEYS:
        assert float(result[key]) == pytest.approx(float(fixture[f"step{step}_{key}"]), abs=tolerance), key
    assert float(result["accuracy"]) == float(fixture[f"step{step}_accuracy"])


def test_gathered_halves_give_the_full_batch_hypersphere_terms(fixture):
    """Two simulated processes holding one image each, gathering in rank order, see the whole batch."""
    outputs, labels, image = step_inputs(fixture, 1, torch.float64)
    rank_inputs = [
        (
            {key: value[rank : rank + 1] for key, value in outputs.items()},
            {key: value[rank : rank + 1] for key, value in labels.items()},
            image[rank : rank + 1],
        )
        for rank in (0, 1)
    ]
    rank1_tensors: list[torch.Tensor] = []

    def record(tensor: torch.Tensor) -> torch.Tensor:
        rank1_tensors.append(tensor)
        return tensor

    DHFRObjective(gather=record)(*rank_inputs[1])
    result = DHFRObjective(gather=lambda tensor: torch.cat((tensor, rank1_tensors.pop(0))))(*rank_inputs[0])
    for key in ("sem_ann_loss", "img_sim_loss", "accuracy"):
        assert float(result[key]) == pytest.approx(float(fixture[f"step1_{key}"]), rel=1e-6), key
    state = result["memory_state"]
    assert state["batch_size"] == 2
    assert torch.equal(state["prototype_batch_index"], torch.from_numpy(fixture["step1_prototype_batch_index"]))
