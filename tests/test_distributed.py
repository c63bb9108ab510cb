"""lib.distributed: the variable-length all-gather and the objective's prototypes across processes.

Two CPU processes (gloo) each hold half of a batch; what they gather must equal one
process holding the whole batch (docs/method.md §2.5 step 8: prototypes are gathered across GPUs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lib.distributed import DeviceUnavailableError, all_gather_cat, mean_over_processes, setup_process_group
from spml.losses import DHFRObjective

WORLD_SIZE = 2
# Objective output name -> name in reference/losses.npz.
FIXTURE_OUTPUTS = {
    "div1": "div1", "div2": "div2", "div4": "div4", "div8": "div8", "div16": "div16",
    "before_fuse_div16": "bef_div16", "contour_div1": "contour_div1", "embedding": "embedding",
    "div1_aug": "div1_aug", "embedding_aug": "embedding_aug",
}
FIXTURE_LABELS = ("semantic_label", "instance_label", "contour_sum_label")
GATHERED_LOSSES = ("sem_ann_loss", "img_sim_loss", "accuracy")


def run_in_processes(worker, tmp_path: Path, *args) -> list[dict]:
    """Run ``worker(rank, *args)`` in WORLD_SIZE gloo processes; return what each rank returned."""
    mp.spawn(_join_and_run, args=(worker, tmp_path, *args), nprocs=WORLD_SIZE, join=True)
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def _join_and_run(rank: int, worker, tmp_path: Path, *args) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.save(worker(rank, *args), tmp_path / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def rank_rows(rank: int) -> torch.Tensor:
    """Rank r holds 2r+1 rows of 3 values, all equal to r + 1."""
    return torch.full((2 * rank + 1, 3), float(rank + 1), dtype=torch.float64)


def _gather_rows_worker(rank: int) -> dict:
    rows = rank_rows(rank).requires_grad_()
    gathered = all_gather_cat(rows)
    # Each rank weighs the gathered rows by its own factor; rank r's rows receive the sum.
    (gathered * (rank + 1)).sum().backward()
    return {
        "gathered": gathered.detach(),
        "grad": rows.grad,
        "labels": all_gather_cat(torch.arange(rank + 2)),
        "mean": mean_over_processes(torch.tensor([float(rank), float("nan") if rank else 1.0])),
    }


def test_a_process_on_a_gpu_torch_does_not_see_stops_with_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(DeviceUnavailableError, match=r"^--device cuda: torch sees 1 CUDA GPU of the 2 needed on this machine .*--device cpu runs on the CPU\)$"):
        setup_process_group("cuda")


def test_all_gather_cat_is_the_identity_in_one_process():
    rows = rank_rows(1)
    assert all_gather_cat(rows) is rows


@pytest.mark.slow
def test_all_gather_cat_joins_uneven_rows_in_rank_order_and_sums_their_gradients(tmp_path):
    results = run_in_processes(_gather_rows_worker, tmp_path)
    expected = torch.cat([rank_rows(rank) for rank in range(WORLD_SIZE)])
    weight_sum = sum(rank + 1 for rank in range(WORLD_SIZE))
    for rank, result in enumerate(results):
        assert torch.equal(result["gathered"], expected)
        assert torch.equal(result["grad"], torch.full_like(rank_rows(rank), float(weight_sum)))
        assert torch.equal(result["labels"], torch.cat([torch.arange(r + 2) for r in range(WORLD_SIZE)]))
        assert result["mean"][0] == pytest.approx(0.5)
        assert torch.isnan(result["mean"][1]), "a non-finite value on one rank must reach every rank"


def fixture_step2(reference_dir: Path, images: slice) -> tuple[dict, dict, torch.Tensor]:
    """Step 2 of reference/losses.npz (batch 2) restricted to ``images``, in float64: outputs, labels, image."""
    arrays = np.load(reference_dir / "losses.npz")
    outputs = {key: torch.from_numpy(arrays[f"step2_{name}"][images]).double() for key, name in FIXTURE_OUTPUTS.items()}
    labels = {key: torch.from_numpy(arrays[f"step2_{key}"][images]) for key in FIXTURE_LABELS}
    return outputs, labels, torch.from_numpy(arrays["step2_image"][images])


def objective_step(outputs: dict, labels: dict, image: torch.Tensor, gather) -> dict:
    """One objective call; returns the gathered losses, the memory state and d(sem_ann)/d(embedding)."""
    outputs["embedding"].requires_grad_()
    result = DHFRObjective(gather=gather)(outputs, labels, image)
    result["sem_ann_loss"].backward()
    return {
        "losses": {key: result[key].detach() for key in GATHERED_LOSSES},
        "memory_state": result["memory_state"],
        "embedding_grad": outputs["embedding"].grad,
    }


def _objective_worker(rank: int, reference_dir: Path) -> dict:
    return objective_step(*fixture_step2(reference_dir, slice(rank, rank + 1)), gather=all_gather_cat)


@pytest.mark.slow
def test_two_processes_gather_the_prototypes_of_one_process_on_the_whole_batch(tmp_path, reference_dir):
    whole = objective_step(*fixture_step2(reference_dir, slice(0, WORLD_SIZE)), gather=None)
    results = run_in_processes(_objective_worker, tmp_path, reference_dir)
    for rank, result in enumerate(results):
        assert result["memory_state"]["batch_size"] == whole["memory_state"]["batch_size"] == WORLD_SIZE
        for key, value in whole["memory_state"].items():
            if isinstance(value, torch.Tensor):
                assert result["memory_state"][key].shape == value.shape, key
                torch.testing.assert_close(result["memory_state"][key], value, rtol=0, atol=1e-12, msg=key)
        for key, value in whole["losses"].items():
            torch.testing.assert_close(result["losses"][key], value, rtol=0, atol=1e-12, msg=key)
        # Every process computes the same gathered loss, so each image's embedding receives the
        # world-size sum of one gradient (DDP's average over processes then divides it out).
        torch.testing.assert_close(result["embedding_grad"], WORLD_SIZE * whole["embedding_grad"][rank : rank + 1],
                                   rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_two_cpu_processes_train_one_step_through_the_launcher(repo_root, tmp_path):
    """NPROC=2 with GPU_ID=cpu: torchrun, DDP over gloo, global batch 2 split in two; both passes
    in one batch (``JOINT_PASSES=1``), as runs on several GPUs take them by default."""
    from training_runs import launch, make_dataset

    dataset = make_dataset(repo_root, tmp_path / "data")
    run = launch(repo_root, "cpu", NPROC="2", BATCH_SIZE="2", MAX_ITERATION="1", DATAROOT=str(dataset),
                 SNAPSHOT_DIR=str(tmp_path / "snapshot"), JOINT_PASSES="1")
    assert run.returncode == 0, run.stderr
    assert "batches of 1 per epoch and process, 2 process(es)" in run.stderr
    assert "JOINT_PASSES=1: the plain and the augmented pass run as one batch of 2" in run.stderr
    state = torch.load(tmp_path / "snapshot" / "stage1" / "model-0.state.pth", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["memory_bank"]["entries"][0]["prototype_batch_index"].max() == 2 + 1, "both images' prototypes, shifted by 2"
