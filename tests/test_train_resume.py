"""Resume (docs/method.md §4): a run killed after a checkpoint and resumed with RESUME=1 ends with the
same weights and bit-identical optimiser state as the uninterrupted run; the data order and
augmentations resume where they stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from spml.data.datasets import ScribbleTrainDataset, seed_worker
from spml.data.lists import ensure_train_list, read_train_list
from spml.training.sampling import EpochSeededSamples, ResumableEpochSampler, training_batches
from training_runs import LAUNCHER, launch, launcher_environment, make_dataset

# Checkpoints after iterations 1 and 3; with 3 training images of batch 1 the resumed run
# starts mid-epoch (iteration 2) and crosses into the next epoch (iteration 3).
RUN = {"MAX_ITERATION": "4", "SNAPSHOT_STEP": "2"}


@pytest.fixture(scope="module")
def dataset(repo_root, tmp_path_factory) -> Path:
    root = make_dataset(repo_root, tmp_path_factory.mktemp("resume") / "data")
    ensure_train_list(root)
    return root


def kill_after_first_checkpoint(repo_root: Path, env: dict[str, str], stage: Path) -> None:
    """Start the launcher and SIGKILL its process group once ``model-1.pth`` exists."""
    process = subprocess.Popen(["bash", LAUNCHER, "cpu"], cwd=repo_root, env=launcher_environment(**env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not (stage / "model-1.pth").exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_killed_and_resumed_run_equals_the_uninterrupted_run(repo_root, dataset, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    run = launch(repo_root, "cpu", DATAROOT=str(dataset), SNAPSHOT_DIR=str(straight), **RUN)
    assert run.returncode == 0, run.stderr

    env = {"DATAROOT": str(dataset), "SNAPSHOT_DIR": str(interrupted), **RUN}
    kill_after_first_checkpoint(repo_root, env, interrupted / "stage1")
    assert not (interrupted / "stage1" / "model-3.pth").exists()
    resumed = launch(repo_root, "cpu", RESUME="1", **env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after iteration 1" in resumed.stderr

    expected = torch.load(straight / "stage1" / "model-3.state.pth", weights_only=True)
    actual = torch.load(interrupted / "stage1" / "model-3.state.pth", weights_only=True)
    assert actual["iteration"] == expected["iteration"] == 3
    for index, state in expected["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(actual["optimizer"]["state"][index][key], value), (index, key)
    assert actual["optimizer"]["param_groups"] == expected["optimizer"]["param_groups"]
    for entry, expected_entry in zip(actual["memory_bank"]["entries"], expected["memory_bank"]["entries"], strict=True):
        assert all(torch.equal(entry[key], value) for key, value in expected_entry.items())
    weights = [torch.load(root / "stage1" / "model-3.pth", weights_only=True)["embedding_model"]
               for root in (straight, interrupted)]
    assert all(torch.equal(weights[1][key], value) for key, value in weights[0].items())

    again = launch(repo_root, "cpu", RESUME="1", **env)
    assert again.returncode == 0 and "nothing to do" in again.stderr


def batch_names(dataset: Path, first_iteration: int, count: int, num_workers: int) -> list:
    """Names and image sums of ``count`` batches of one sample from ``first_iteration`` on, as train.py draws them."""
    samples = read_train_list(dataset / "lists" / "train.txt", dataset)
    data = EpochSeededSamples(ScribbleTrainDataset(samples, 224, seed=0))
    sampler = ResumableEpochSampler(DistributedSampler(data, num_replicas=1, rank=0, seed=0, drop_last=True))
    loader = DataLoader(data, batch_size=1, sampler=sampler, num_workers=num_workers, worker_init_fn=seed_worker)
    batches = training_batches(loader, sampler, first_iteration, batches_per_epoch=len(samples))
    return [(batch["name"], float(batch["image"].sum())) for batch, _ in zip(batches, range(count))]


def test_data_order_and_augmentation_resume_where_they_stopped(dataset):
    uninterrupted = batch_names(dataset, 0, 7, num_workers=0)
    assert sorted(name for (name,), _ in uninterrupted[:3]) == sorted(name for (name,), _ in uninterrupted[3:6])
    assert uninterrupted[:3] != uninterrupted[3:6], "each epoch has its own order and augmentations"
    assert batch_names(dataset, 2, 5, num_workers=0) == uninterrupted[2:]
    assert batch_names(dataset, 4, 3, num_workers=2) == uninterrupted[4:]
