"""Train DHFR on scribble-annotated RGB-D data with the release's procedure (docs/method.md §2, §4).

    python pyscripts/train/train.py --config <snapshot dir>/config_sod_emb.yaml [--device cpu|cuda] [--resume] [--eager]
        [--compile]
    torchrun --standalone --nproc_per_node=N pyscripts/train/train.py ...   (one process per GPU)

The config is the one ``bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh`` writes. Checkpoints
and TensorBoard events go to ``<train.snapshot_dir>/stage1/`` (``spml.training.layout``).
On one GPU the network's forward and backward are replayed as CUDA graphs
(``network.cuda_graphs``); ``--eager`` runs them eagerly. ``--compile`` compiles SFNet with
``torch.compile`` first (``network.compilation``; opt-in, not yet timed on a GPU).
``--resume`` continues after the newest complete checkpoint and repeats the uninterrupted run
(``spml.training.checkpoint``, ``spml.training.sampling``). Exit status 2: bad input, found
before the first step; 1: the run failed on the way.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import logging
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from lib.distributed import DeviceUnavailableError, ProcessGroup, all_gather_cat, barrier, setup_process_group, \
    teardown_process_group
from lib.interrupts import INTERRUPTED
from lib.io import WriteError, remove_stale_temporaries
from lib.precisions import check_precision_device
from lib.logging import setup_logging
from lib.lr_schedule import step_lr
from network import CheckpointError, build_model, init_from_imagenet
from network.compilation import CompileUnavailableError, check_compile_support, compile_failure, compile_network
from network.cuda_graphs import graphed_training_forward
from network.precision import set_float32_precision
from network.sfnet import INPUT_SIZE
from spml.config import Config, ConfigError, load_config
from spml.data import DataError
from spml.data.lists import ensure_train_list, read_train_list
from spml.data.validation import validate_training_samples
from spml.losses import DHFRObjective
from spml.training.checkpoint import restore_training_checkpoint, save_training_checkpoint, seed_everything
from spml.training.errors import InputError, TrainingError
from spml.training.layout import STAGE_DIR, checkpoint_paths, newest_complete_checkpoint, orphaned_state_files
from spml.training.sampling import make_loader, training_batches
from spml.training.settings import check_run_inputs, run_train_list
from spml.training.step import Forward, make_training_state, training_step
from spml.training.reporting import StepReporter

logger = logging.getLogger("train")
INPUT_ERRORS = (InputError, ConfigError, DataError, CheckpointError, DeviceUnavailableError)


def resolve_train_list(config: Config, group: ProcessGroup) -> Path:
    """The training list (:func:`spml.training.settings.run_train_list`), built by scanning if absent
    (the launcher has built it already). Rank 0 builds it."""
    list_path = run_train_list(config)
    if group.is_main and not config.dataset.train_list:
        ensure_train_list(config.dataset.data_dir, list_path)
    barrier()
    return list_path


def starting_point(config: Config, stage_dir: Path, resume: bool) -> int | None:
    """The checkpoint to resume after (None: start from 0); checks the data root and the ImageNet weights
    of a start (:func:`spml.training.settings.check_run_inputs`)."""
    resume_iteration = newest_complete_checkpoint(stage_dir) if resume else None
    if resume and resume_iteration is None:
        raise InputError(f"--resume: no complete checkpoint (model-<iter>.pth with its .state.pth) in {stage_dir}")
    check_run_inputs(config, starting=resume_iteration is None)
    return resume_iteration


def uses_cuda_graphs(group: ProcessGroup, eager: bool) -> bool:
    """Whether the network is replayed as CUDA graphs: on one CUDA process unless ``eager``.

    Several processes run eagerly (DDP's gradient hooks are not captured), saying so.
    """
    if group.device.type != "cuda" or eager:
        return False
    if group.is_distributed:
        logger.info("%d processes: the network runs eagerly (CUDA graphs are used on one GPU only)", group.world_size)
        return False
    return True


def training_network(model: torch.nn.Module, group: ProcessGroup, batch_size: int, graphs: bool,
                     precision: str) -> Forward:
    """What the steps call: DDP with several processes, the CUDA-graph replay when ``graphs``, else the model."""
    if group.is_distributed:
        return DistributedDataParallel(model, device_ids=[group.device.index] if group.device.type == "cuda" else None)
    if graphs:
        logger.info("replaying the network as CUDA graphs (batch %d); EAGER=1 runs it eagerly", batch_size)
        return graphed_training_forward(model, batch_size, precision)
    return model


def check_training_data(config: Config, list_path: Path, stage_dir: Path, group: ProcessGroup) -> None:
    """Every file of the training list readable and valid, checked by rank 0 before the first step
    (all problems in ``stage1/data_problems.txt``); ``VALIDATE=0`` skips it."""
    if group.is_main:
        validate_training_samples(read_train_list(list_path, config.dataset.data_dir),
                                  report_path=stage_dir / "data_problems.txt")
    barrier()


def train(config: Config, group: ProcessGroup, resume: bool, eager: bool = False, validate: bool = True,
          compiled: bool = False) -> None:
    """The release's training loop (docs/method.md §4) from iteration 0 or after the newest checkpoint;
    SFNet compiled with ``torch.compile`` when ``compiled``."""
    train_config = config.train
    snapshot_dir = Path(train_config.snapshot_dir)
    stage_dir = snapshot_dir / STAGE_DIR
    device = group.device
    seed_everything(train_config.seed + group.rank)
    # Start-up checks, all before the network is built.
    resume_iteration = starting_point(config, stage_dir, resume)
    try:
        check_precision_device(train_config.precision, device.type, f"PRECISION={train_config.precision}")
    except ValueError as error:
        raise InputError(str(error)) from None
    if compiled:
        try:
            check_compile_support(device.type)
        except CompileUnavailableError as error:
            raise InputError(f"COMPILE=1: {error}; train without COMPILE=1") from None
    graphs = uses_cuda_graphs(group, eager)
    if group.is_main and stage_dir.is_dir():
        for path in remove_stale_temporaries(stage_dir):
            logger.info("removed %s, left by an interrupted write", path)
        for path in orphaned_state_files(stage_dir):
            path.unlink()
            logger.info("removed %s: its model file was never written (the run was killed mid-checkpoint)", path)
    if resume_iteration is not None and resume_iteration + 1 >= train_config.max_iteration:
        logger.info("%s already holds the last checkpoint (iteration %d): nothing to do", stage_dir, resume_iteration)
        return
    list_path = resolve_train_list(config, group)
    if validate:
        check_training_data(config, list_path, stage_dir, group)
    loader, sampler, batches_per_epoch = make_loader(config, group, list_path)

    set_float32_precision(train_config.precision)
    model = build_model(train_config.joint_passes).to(device)
    if train_config.joint_passes:
        logger.info("JOINT_PASSES=1: the plain and the augmented pass run as one batch of %d", 2 * loader.batch_size)
    else:
        logger.info("JOINT_PASSES=0: the plain and the augmented pass run as two calls of batch %d", loader.batch_size)
    state = make_training_state(model, train_config.base_lr, config.loss.memory_bank_size, train_config.precision,
                                device)
    if resume_iteration is None:
        first_iteration = 0
        if train_config.pretrained == "none":
            logger.info("train.pretrained is 'none': training from scratch")
        else:
            copied = init_from_imagenet(model, train_config.pretrained)
            logger.info("initialised %d entries from %s", len(copied), train_config.pretrained)
    else:
        restore_training_checkpoint(stage_dir, resume_iteration, state, group)
        first_iteration = resume_iteration + 1
    model.train()
    if compiled:
        logger.info("COMPILE=1: SFNet is compiled with torch.compile (Inductor); the first step waits for it (minutes)")
        compile_network(model)
    network = training_network(model, group, loader.batch_size, graphs, train_config.precision)
    objective = DHFRObjective(config, gather=all_gather_cat if group.is_distributed else None).to(device)
    logger.info("training iterations %d..%d, %d batches of %d per epoch and process, %d process(es), on %s, %s",
                first_iteration, train_config.max_iteration - 1, batches_per_epoch, loader.batch_size,
                group.world_size, device, train_config.precision)

    def lr_at(iteration: int) -> float:
        return step_lr(train_config.base_lr, iteration, batches_per_epoch, train_config.lr_decay_epochs,
                       train_config.lr_decay_factor)

    reporter = StepReporter(first_iteration, train_config.max_iteration, train_config.tensorboard_step, lr_at,
                            stage_dir if group.is_main else None, INPUT_SIZE)
    batches = training_batches(loader, sampler, first_iteration, batches_per_epoch)
    try:
        for iteration, batch in zip(reporter.iterations(), batches):
            step = training_step(network, objective, state, batch, lr_at(iteration), train_config.grad_clamp,
                                 train_config.precision, iteration, accuracy=reporter.logs_scalars_at(iteration))
            reporter.step(step.logged, batch, step.outputs)
            if (iteration + 1) % train_config.snapshot_step == 0 or iteration + 1 == train_config.max_iteration:
                reporter.flush()
                save_training_checkpoint(stage_dir, iteration, state, group)
    except BaseException:  # an error or Ctrl-C: the bar ends its line before the one-line message
        reporter.close(report_pending=False)
        raise
    reporter.close()


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; errors re-raised from a DataLoader worker carry the
    worker's traceback, whose last line is the original error."""
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def resume_hint(config: Config) -> str:
    """Where an interrupted run can go on from: its newest complete checkpoint, if any."""
    stage_dir = Path(config.train.snapshot_dir) / STAGE_DIR
    newest = newest_complete_checkpoint(stage_dir)
    if newest is None:
        return f"no checkpoint in {stage_dir} yet"
    return f"RESUME=1 continues after iteration {newest} ({checkpoint_paths(stage_dir, newest)[0]})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the run's config (<snapshot dir>/config_sod_emb.yaml)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="continue after the newest complete checkpoint")
    parser.add_argument("--eager", action="store_true", help="on a GPU, run the network eagerly instead of as CUDA graphs")
    parser.add_argument("--compile", action="store_true",
                        help="compile SFNet with torch.compile (fused kernels; the first step compiles for minutes)")
    parser.add_argument("--no-validate", action="store_true", help="skip the check of every training file")
    args = parser.parse_args(argv)
    config = None
    try:
        group = setup_process_group(args.device)
        setup_logging(group.rank)
        config = load_config(args.config)
        if not config.train.snapshot_dir:
            raise ConfigError(f"{args.config}: train.snapshot_dir is empty (write the config with the launcher)")
        train(config, group, args.resume, args.eager, validate=not args.no_validate, compiled=args.compile)
    except KeyboardInterrupt:
        print(f"train.py: interrupted{'' if config is None else '; ' + resume_hint(config)}", file=sys.stderr)
        return INTERRUPTED
    except (*INPUT_ERRORS, TrainingError, WriteError) as error:
        print(f"train.py: error: {one_line(error)}", file=sys.stderr)
        return 2 if isinstance(error, INPUT_ERRORS) else 1
    except Exception as error:
        failure = compile_failure(error) if args.compile else None
        if failure is None:
            raise
        print(f"train.py: error: COMPILE=1: torch.compile failed: {failure}; train without COMPILE=1",
              file=sys.stderr)
        return 1
    finally:
        teardown_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
