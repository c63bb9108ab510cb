"""The training data order (docs/method.md §3.2, §4): epoch-seeded samples, a resumable sampler and
the batches, so that a resumed run draws what the uninterrupted one would have drawn,
whatever the number of DataLoader workers.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from lib.distributed import ProcessGroup
from network.sfnet import INPUT_SIZE
from lib.cpus import available_cpus, cap_workers
from spml.config import Config
from spml.data.datasets import ScribbleTrainDataset, seed_worker
from spml.data.lists import read_train_list
from spml.training.errors import InputError

logger = logging.getLogger("train")


class EpochSeededSamples(Dataset):
    """Items keyed ``(epoch, index)``: the training sample ``index`` with its augmentation
    stream restarted from ``(epoch, index)``, so augmentations depend on neither the worker
    count nor where a run was resumed."""

    def __init__(self, dataset: ScribbleTrainDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.reseed(epoch * len(self.dataset) + index)
        return self.dataset[index]


class ResumableEpochSampler(Sampler):
    """This process's share of an epoch in the seeded ``DistributedSampler`` order, as
    ``(epoch, index)`` keys, starting ``skip`` samples into the epoch."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0
        self.skip = 0

    def start(self, epoch: int, skip: int) -> None:
        self.sampler.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in itertools.islice(iter(self.sampler), self.skip, None))

    def __len__(self) -> int:
        return len(self.sampler) - self.skip


def training_batches(loader: DataLoader, sampler: ResumableEpochSampler, first_iteration: int,
                     batches_per_epoch: int) -> Iterator[dict]:
    """Batches from ``first_iteration`` on, restarting the loader at every epoch (as the release)."""
    epoch, position = divmod(first_iteration, batches_per_epoch)
    while True:
        sampler.start(epoch, position * loader.batch_size)
        yield from loader
        epoch, position = epoch + 1, 0


def loader_workers(requested: int) -> int:
    """``requested`` DataLoader workers, at most one per available core."""
    cores = available_cpus()
    if requested > cores:
        logger.info("train.num_workers %d > %d cores: using %d data-loading processes", requested, cores, cores)
    return cap_workers(requested)


def make_loader(config: Config, group: ProcessGroup, list_path: Path) -> tuple[DataLoader, ResumableEpochSampler, int]:
    """The training DataLoader, its resumable sampler and the number of batches per epoch."""
    train_config = config.train
    if train_config.batch_size % group.world_size:
        raise InputError(f"train.batch_size {train_config.batch_size} is not divisible by the "
                         f"{group.world_size} processes")
    local_batch = train_config.batch_size // group.world_size
    samples = read_train_list(list_path, config.dataset.data_dir)
    dataset = EpochSeededSamples(ScribbleTrainDataset(samples, INPUT_SIZE, train_config.seed))
    epoch_order = DistributedSampler(dataset, num_replicas=group.world_size, rank=group.rank, shuffle=True,
                                     seed=train_config.seed, drop_last=True)
    batches_per_epoch = len(epoch_order) // local_batch
    if batches_per_epoch == 0:
        raise InputError(f"{len(samples)} training samples make no batch of {local_batch} per process")
    sampler = ResumableEpochSampler(epoch_order)
    workers = loader_workers(train_config.num_workers)
    # The loader's own generator: drawing worker seeds must not consume the global torch
    # stream (DropPath), or a resumed run would draw different masks. Persistent workers: the
    # loader restarts every epoch, and forking a process that holds the network's gigabytes at
    # each restart costs more than an iteration on a small dataset; the (epoch, index) keys
    # carry the epoch to the workers.
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=workers,
                        drop_last=True, worker_init_fn=seed_worker, pin_memory=group.device.type == "cuda",
                        persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(train_config.seed + group.rank))
    return loader, sampler, batches_per_epoch
