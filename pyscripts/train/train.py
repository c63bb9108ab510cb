"""Train DHFR on scribble-annotated RGB-D data with the release's procedure (docs/method.md §2, §4).

    python pyscripts/train/train.py --config <snapshot dir>/config.yaml [--device cpu|cuda] [--resume]
    torchrun --standalone --nproc_per_node=N pyscripts/train/train.py ...   (one process per GPU)

The config is the filled template that ``bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh``
writes. Checkpoints go to ``<train.snapshot_dir>/stage1/`` as ``model-<iter>.pth`` (release
layout, ``network.save_checkpoint``) with the optimiser state beside it in
``model-<iter>.state.pth``; TensorBoard events go to the same folder.

Resume: ``--resume`` continues after the newest complete checkpoint (the newest model file:
its state file is written first) with the optimiser state, the memory bank of prototypes,
the random generators and the data order, so a resumed run repeats the uninterrupted one.
The training augmentation is seeded per (epoch, sample), so it does not depend on the
number of DataLoader workers either.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import contextlib
import itertools
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib.distributed import (DeviceUnavailableError, ProcessGroup, all_gather_cat, barrier, gather_objects,
                             mean_over_processes, setup_process_group, teardown_process_group)
from lib.io import atomic_torch_save
from lib.logging import setup_logging
from lib.lr_schedule import step_lr
from network import CheckpointError, build_model, init_from_imagenet, load_checkpoint, save_checkpoint
from spml.config import Config, ConfigError, TrainConfig, load_config
from spml.data import DataError
from spml.data.datasets import ScribbleTrainDataset, seed_worker
from spml.data.lists import default_train_list, ensure_train_list, read_train_list
from spml.normalization import denormalize_rgb
from spml.evaluation.featvis import embedding_pca_rgb
from spml.losses import DHFRObjective, MemoryBank

logger = logging.getLogger("train")

# The objective's weighted losses, their sum and the prototype accuracy (docs/method.md §2).
LOGGED_KEYS = ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss", "loss",
               "accuracy")
LABEL_KEYS = ("semantic_label", "instance_label", "contour_sum_label")
STAGE_DIR = "stage1"
CHECKPOINT_NAME = re.compile(r"model-(\d+)\.pth")
DOWNLOAD_HINT = "bash bashscripts/download_snapshots.sh localvit"


class TrainingError(RuntimeError):
    """A run that cannot start or go on (missing weights, bad batch split, non-finite loss)."""


# ----------------------------------------------------------------------------- checkpoints

@dataclass
class TrainingState:
    """What a step changes and a checkpoint keeps: weights, optimiser, grad scaler, memory bank."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    memory: MemoryBank


def checkpoint_paths(stage_dir: Path, iteration: int) -> tuple[Path, Path]:
    """``(model-<iter>.pth, model-<iter>.state.pth)`` in ``stage_dir``."""
    return stage_dir / f"model-{iteration}.pth", stage_dir / f"model-{iteration}.state.pth"


def newest_complete_checkpoint(stage_dir: Path) -> int | None:
    """Iteration of the newest model file whose optimiser-state file exists, or None."""
    iterations = [
        int(match.group(1))
        for match in (CHECKPOINT_NAME.fullmatch(path.name) for path in stage_dir.glob("model-*.pth"))
        if match and checkpoint_paths(stage_dir, int(match.group(1)))[1].is_file()
    ]
    return max(iterations, default=None)


def rng_state() -> dict:
    """This process's random generators (python, numpy, torch CPU and, on a GPU, CUDA).

    numpy's uint32 key is stored as int64 (plain tensors load with ``weights_only``)."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_training_checkpoint(stage_dir: Path, iteration: int, state: TrainingState, group: ProcessGroup) -> None:
    """Write ``model-<iter>.state.pth`` then ``model-<iter>.pth`` (both atomic; collective call).

    The state holds the optimiser, the grad scaler, the memory bank (every process holds
    the same gathered prototypes) and every process's random generators.
    """
    rng_states = gather_objects(rng_state())
    if group.is_main:
        model_path, state_path = checkpoint_paths(stage_dir, iteration)
        atomic_torch_save({
            "iteration": iteration,
            "world_size": group.world_size,
            "optimizer": state.optimizer.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "memory_bank": state.memory.entries,
            "rng": rng_states,
        }, state_path)
        save_checkpoint(state.model, model_path)
        logger.info("saved %s", model_path)
    barrier()


def restore_training_checkpoint(stage_dir: Path, iteration: int, state: TrainingState, group: ProcessGroup) -> None:
    """Load what :func:`save_training_checkpoint` wrote for ``iteration`` into ``state``."""
    model_path, state_path = checkpoint_paths(stage_dir, iteration)
    load_checkpoint(state.model, model_path)
    # On the CPU: random-generator states must stay there; the optimiser moves its own state.
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    if saved["iteration"] != iteration:
        raise CheckpointError(f"{state_path}: holds iteration {saved['iteration']}, expected {iteration}")
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved["scaler"] is not None:
        state.scaler.load_state_dict(saved["scaler"])
    for entry in saved["memory_bank"]:
        # Entries are stored already shifted; a zero batch size re-stores them unchanged.
        state.memory.push({**{key: value.to(group.device) for key, value in entry.items()}, "batch_size": 0})
    if saved["world_size"] == group.world_size:
        set_rng_state(saved["rng"][group.rank])
    else:
        logger.warning("%s was written by %d processes, this run has %d: random streams restart from the seed",
                       state_path, saved["world_size"], group.world_size)
    logger.info("resuming after iteration %d from %s", iteration, model_path)


def initialise_from_imagenet(model: nn.Module, pretrained: str) -> None:
    """ImageNet initialisation (docs/method.md §1.8) unless ``pretrained`` is ``none``."""
    if pretrained == "none":
        logger.info("train.pretrained is 'none': training from scratch")
        return
    copied = init_from_imagenet(model, pretrained)
    logger.info("initialised %d entries from %s", len(copied), pretrained)


# ----------------------------------------------------------------------------- data

def resolve_train_list(config: Config, snapshot_dir: Path, group: ProcessGroup) -> Path:
    """The training list: ``dataset.train_list``, else ``<data>/lists/train.txt`` built by scanning
    if absent (into the snapshot dir when the data root is not writable). Rank 0 builds it."""
    data_root = Path(config.dataset.data_dir)
    if config.dataset.train_list:
        return Path(config.dataset.train_list)
    if not data_root.is_dir():
        raise DataError(f"data root not found: {data_root} (set DATAROOT)")
    list_path = default_train_list(data_root)
    list_folder = list_path.parent if list_path.parent.is_dir() else data_root
    if not list_path.is_file() and not os.access(list_folder, os.W_OK):
        list_path = snapshot_dir / "lists" / "train.txt"
    if group.is_main:
        list_path = ensure_train_list(data_root, list_path)
    barrier()
    return list_path


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


def per_process_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise TrainingError(f"train.batch_size {global_batch} is not divisible by the {world_size} processes")
    return global_batch // world_size


# ----------------------------------------------------------------------------- logging

def image_strip(batch: dict, outputs: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """docs/method.md §4's TensorBoard strip for the first sample, uint8 ``[3, size, 8·size]``: RGB, depth,
    contour label, scribble, instance map, prediction, contour prediction, embedding PCA."""
    rgb = denormalize_rgb(batch["image"][0]).clamp(0, 1)
    scribble_grey = torch.tensor([0.0, 1.0, 0.5])[batch["semantic_label"][0]]
    instance = batch["instance_label"][0].float()
    grey_maps = [
        batch["depth"][0, 0],
        batch["contour_sum_label"][0],
        scribble_grey,
        instance / instance.max().clamp(min=1),
        outputs["div1"][0, 0].detach().float().cpu(),
        outputs["contour_div1"][0, 0].detach().float().cpu(),
    ]
    pca = torch.from_numpy(embedding_pca_rgb(outputs["embedding"][:1].detach().float(), out_size=size)[0])
    panels = [rgb, *(grey.expand(3, -1, -1) for grey in grey_maps)]
    panels = [(panel * 255).round().to(torch.uint8) for panel in panels] + [pca.permute(2, 0, 1)]
    return torch.cat(panels, dim=2)


def stop_if_not_finite(values: dict[str, float], iteration: int) -> None:
    """Raise naming the iteration and the first non-finite loss."""
    for name, value in values.items():
        if not np.isfinite(value):
            raise TrainingError(f"iteration {iteration}: non-finite {name} = {value}; stopping")


# ----------------------------------------------------------------------------- training

def autocast_context(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision: float16 autocast on CUDA, bfloat16 on CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(config: Config, group: ProcessGroup, list_path: Path) -> tuple[DataLoader, ResumableEpochSampler, int]:
    """The training DataLoader, its resumable sampler and the number of batches per epoch."""
    train_config = config.train
    local_batch = per_process_batch(train_config.batch_size, group.world_size)
    samples = read_train_list(list_path, config.dataset.data_dir)
    dataset = EpochSeededSamples(ScribbleTrainDataset(samples, config.dataset.crop_size, train_config.seed))
    epoch_order = DistributedSampler(dataset, num_replicas=group.world_size, rank=group.rank, shuffle=True,
                                     seed=train_config.seed, drop_last=True)
    batches_per_epoch = len(epoch_order) // local_batch
    if batches_per_epoch == 0:
        raise TrainingError(f"{len(samples)} training samples make no batch of {local_batch} per process")
    sampler = ResumableEpochSampler(epoch_order)
    # The loader's own generator: drawing worker seeds must not consume the global torch
    # stream (DropPath), or a resumed run would draw different masks. Persistent workers: the
    # loader restarts every epoch, and forking a process that holds the network's gigabytes at
    # each restart costs more than an iteration on a small dataset; the (epoch, index) keys
    # carry the epoch to the workers.
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=train_config.num_workers,
                        drop_last=True, worker_init_fn=seed_worker, pin_memory=group.device.type == "cuda",
                        persistent_workers=train_config.num_workers > 0,
                        generator=torch.Generator().manual_seed(train_config.seed + group.rank))
    return loader, sampler, batches_per_epoch


def training_step(network: nn.Module, objective: DHFRObjective, state: TrainingState, batch: dict,
                  train_config: TrainConfig, device: torch.device, iteration: int) -> tuple[dict[str, float], dict]:
    """One optimiser step (docs/method.md §4, docs/method.md §6): forward on (image, depth) with the
    augmented pass, objective with the memory bank, backward, element-wise gradient clamp,
    Adam step, then the memory bank push. Returns the logged values (mean over processes)
    and the network outputs; raises before the update if a loss is not finite."""
    image = batch["image"].to(device, non_blocking=True)
    depth = batch["depth"].to(device, non_blocking=True)
    labels = {key: batch[key].to(device, non_blocking=True) for key in LABEL_KEYS}
    with autocast_context(train_config.mixed_precision, device):
        outputs = network(image, depth)
    outputs = {name: output.float() for name, output in outputs.items()}
    result = objective(outputs, labels, image, state.memory)

    logged = mean_over_processes(torch.stack([result[key].detach() for key in LOGGED_KEYS]))
    values = dict(zip(LOGGED_KEYS, logged.tolist()))
    stop_if_not_finite(values, iteration)

    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(result["loss"]).backward()
        state.scaler.unscale_(state.optimizer)
    else:
        result["loss"].backward()
    nn.utils.clip_grad_value_(state.model.parameters(), train_config.grad_clamp)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    state.memory.push(result["memory_state"])
    return values, outputs


def train(config: Config, group: ProcessGroup, resume: bool) -> None:
    """The release's training loop (docs/method.md §4) from iteration 0 or after the newest checkpoint."""
    train_config = config.train
    snapshot_dir = Path(train_config.snapshot_dir)
    stage_dir = snapshot_dir / STAGE_DIR
    device = group.device
    seed_everything(train_config.seed + group.rank)

    resume_iteration = newest_complete_checkpoint(stage_dir) if resume else None
    if resume and resume_iteration is None:
        logger.warning("--resume: no complete checkpoint in %s, starting from iteration 0", stage_dir)
    if resume_iteration is None and train_config.pretrained != "none" and not Path(train_config.pretrained).is_file():
        raise TrainingError(f"ImageNet weights not found: {train_config.pretrained}; download them with "
                            f"`{DOWNLOAD_HINT}`, or set PRETRAINED=none to train from scratch")
    if resume_iteration is not None and resume_iteration + 1 >= train_config.max_iteration:
        logger.info("%s already holds the last checkpoint (iteration %d): nothing to do", stage_dir, resume_iteration)
        return
    loader, sampler, batches_per_epoch = make_loader(config, group, resolve_train_list(config, snapshot_dir, group))

    model = build_model().to(device)
    state = TrainingState(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=train_config.base_lr, weight_decay=train_config.weight_decay),
        scaler=torch.amp.GradScaler("cuda") if train_config.mixed_precision and device.type == "cuda" else None,
        memory=MemoryBank(size=config.loss.memory_bank_size),
    )
    if resume_iteration is None:
        initialise_from_imagenet(model, train_config.pretrained)
        first_iteration = 0
    else:
        restore_training_checkpoint(stage_dir, resume_iteration, state, group)
        first_iteration = resume_iteration + 1
    model.train()
    network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if group.is_distributed else model
    objective = DHFRObjective(config, gather=all_gather_cat if group.is_distributed else None).to(device)
    writer = SummaryWriter(log_dir=str(stage_dir)) if group.is_main else None
    logger.info("training iterations %d..%d, %d batches of %d per epoch and process, %d process(es), on %s",
                first_iteration, train_config.max_iteration - 1, batches_per_epoch, loader.batch_size,
                group.world_size, device)

    progress = tqdm(range(first_iteration, train_config.max_iteration), initial=first_iteration,
                    total=train_config.max_iteration, disable=not group.is_main, dynamic_ncols=True)
    batches = training_batches(loader, sampler, first_iteration, batches_per_epoch)
    with logging_redirect_tqdm():
        for iteration, batch in zip(progress, batches):
            lr = step_lr(train_config.base_lr, iteration, batches_per_epoch,
                         train_config.lr_decay_epochs, train_config.lr_decay_factor)
            for param_group in state.optimizer.param_groups:
                param_group["lr"] = lr
            values, outputs = training_step(network, objective, state, batch, train_config, device, iteration)
            progress.set_postfix(loss=f"{values['loss']:.3f}", sem=f"{values['sem_ann_loss']:.3f}",
                                 pce=f"{values['partedCE_loss']:.3f}", lr=f"{lr:.1e}", refresh=False)
            if writer is not None and iteration % train_config.tensorboard_step == 0:
                for name, value in values.items():
                    writer.add_scalar(f"train/{name}", value, iteration)
                writer.add_scalar("train/lr", lr, iteration)
                writer.add_image("train/strip", image_strip(batch, outputs, config.dataset.crop_size), iteration)
            if (iteration + 1) % train_config.snapshot_step == 0 or iteration + 1 == train_config.max_iteration:
                save_training_checkpoint(stage_dir, iteration, state, group)
    if writer is not None:
        writer.close()


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; errors re-raised from a DataLoader worker carry the
    worker's traceback, whose last line is the original error."""
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="filled config (<snapshot dir>/config.yaml)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue after the newest complete checkpoint")
    args = parser.parse_args(argv)
    try:
        group = setup_process_group(args.device)
        setup_logging(group.rank)
        config = load_config(args.config)
        if not config.train.snapshot_dir:
            raise ConfigError(f"{args.config}: train.snapshot_dir is empty (fill the template with fill_config.py)")
        train(config, group, args.resume)
    except (ConfigError, DataError, CheckpointError, DeviceUnavailableError, TrainingError) as error:
        print(f"train.py: error: {one_line(error)}", file=sys.stderr)
        return 1
    finally:
        teardown_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
