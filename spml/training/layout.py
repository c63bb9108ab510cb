"""Names of a run's files, defined once (docs/method.md §4); shell scripts ask this module.

A training run lives in a snapshot directory holding the filled config
``config_sod_emb.yaml`` and ``stage1/`` with the checkpoints ``model-<iter>.pth`` (release
layout) and ``model-<iter>.state.pth`` (optimiser state), as the release's launcher lays it out.

    python3 -m spml.training.layout release-checkpoint     # the released model's path
    python3 -m spml.training.layout stage-dir SNAPSHOT_DIR
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spml.config import Config

STAGE_DIR = "stage1"
CONFIG_NAME = "config_sod_emb.yaml"
IMAGENET_WEIGHTS = "snapshots/localvit/localvit_swin.pth"
SNAPSHOT_ROOT = "snapshots"
RESULTS_ROOT = "results"
"""Default home of test-score outputs: ``results/<run folder name>/<checkpoint>_<protocol>``."""
_MODEL_FILE = re.compile(r"model-(\d+)\.pth")
_STATE_FILE = re.compile(r"model-(\d+)\.state\.pth")

# Parts of the release's directory name for settings this project does not have
# (docs/method.md §4): no synchronised BatchNorm; the GPU list, which would make a run
# scored on another GPU miss its folder, is always written as the release's 0; the
# launcher's weight decay 5e-4 never reached the release's optimiser (Adam without weight
# decay); the terms sem_occ (segsort, κ 12), feat_aff (none, κ 0) and the CRF terms are off
# (weight 0.0) in the release's SOD run.
_RELEASE_ONLY = {"syncbn": "false", "gpu": "0", "wd": "5e-4", "sem_occ_type": "segsort", "feat_aff_type": "none",
                 "sem_occ_conc": 12, "feat_aff_conc": 0, "sem_occ_w": 0.0, "feat_aff_w": 0.0, "feat_crf_w": 0.0,
                 "l1_crf_w": 0.0}


def model_file(iteration: int) -> str:
    """``model-<iter>.pth``: the weights after 0-based ``iteration``."""
    return f"model-{iteration}.pth"


def checkpoint_paths(stage_dir: str | os.PathLike, iteration: int) -> tuple[Path, Path]:
    """``(model-<iter>.pth, model-<iter>.state.pth)`` in ``stage_dir``."""
    model = Path(stage_dir) / model_file(iteration)
    return model, model.with_suffix(".state.pth")


def _model_iterations(stage_dir: Path) -> list[int]:
    matches = (_MODEL_FILE.fullmatch(path.name) for path in stage_dir.glob("model-*.pth"))
    return [int(match.group(1)) for match in matches if match]


def newest_complete_checkpoint(stage_dir: str | os.PathLike) -> int | None:
    """Iteration of the newest model file whose optimiser-state file exists (written first), or None."""
    stage_dir = Path(stage_dir)
    return max((i for i in _model_iterations(stage_dir) if checkpoint_paths(stage_dir, i)[1].is_file()), default=None)


def orphaned_state_files(stage_dir: str | os.PathLike) -> list[Path]:
    """``model-<iter>.state.pth`` files whose model file is missing, sorted: what a run killed between
    the two writes of a checkpoint leaves (the state file is written first); never usable."""
    stage_dir = Path(stage_dir)
    matches = (_STATE_FILE.fullmatch(path.name) for path in stage_dir.glob("model-*.state.pth"))
    iterations = sorted(int(match.group(1)) for match in matches if match)
    return [state for model, state in (checkpoint_paths(stage_dir, i) for i in iterations) if not model.exists()]


def newest_model_file(stage_dir: str | os.PathLike) -> Path | None:
    """The newest ``model-<iter>.pth`` in ``stage_dir`` (with or without state file), or None."""
    iteration = max(_model_iterations(Path(stage_dir)), default=None)
    return None if iteration is None else checkpoint_paths(stage_dir, iteration)[0]


def _lr_text(lr: float) -> str:
    """1e-4 -> '1e-4', as the release's launcher writes learning rates."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def release_snapshot_dir(config: Config, root: str | os.PathLike = SNAPSHOT_ROOT) -> Path:
    """The snapshot directory named after the settings, as the release's launcher names it.

    ``<root>/sod_scribble/<backbone>_<prediction>/p<input size>_dim<embedding dim>_nc<k>_ki<iters>
    _lr<lr>_syncbn_false_bs<batch>_gpu0_it<iterations>_wd5e-4_memsize<bank>_losstype<sem_ann>
    _segsort_<img_sim>_none_lossconc<κ sem_ann>_12_<κ img_sim>_0_lossw<sem_ann>_0.0_<img_sim>
    _0.0_0.0_0.0_<partedCE>_<ssc>``; the fixed parts are the release's values of settings this
    project does not have (see ``_RELEASE_ONLY``).
    """
    from network.sfnet import EMBEDDING_DIM, INPUT_SIZE

    net, loss, train, fixed = config.network, config.loss, config.train, _RELEASE_ONLY
    conc = (loss.sem_ann_concentration, fixed["sem_occ_conc"], loss.img_sim_concentration, fixed["feat_aff_conc"])
    weights = (loss.sem_ann_loss_weight, fixed["sem_occ_w"], loss.img_sim_loss_weight, fixed["feat_aff_w"],
               fixed["feat_crf_w"], fixed["l1_crf_w"], loss.parted_ce_loss_weight, loss.ssc_loss_weight)
    name = (
        f"p{INPUT_SIZE}_dim{EMBEDDING_DIM}_nc{net.kmeans_num_clusters[0]}_ki{net.kmeans_iterations}"
        f"_lr{_lr_text(train.base_lr)}_syncbn_{fixed['syncbn']}_bs{train.batch_size}_gpu{fixed['gpu']}"
        f"_it{train.max_iteration}_wd{fixed['wd']}_memsize{loss.memory_bank_size}"
        f"_losstype{loss.sem_ann_loss_types}_{fixed['sem_occ_type']}_{loss.img_sim_loss_types}_{fixed['feat_aff_type']}"
        f"_lossconc{'_'.join(f'{value:g}' for value in conc)}"
        f"_lossw{'_'.join(str(float(value)) for value in weights)}"
    )
    return Path(root) / "sod_scribble" / f"{net.backbone_types}_{net.prediction_types}" / name


def release_checkpoint(root: str | os.PathLike = SNAPSHOT_ROOT) -> Path:
    """The released model: ``<release snapshot dir>/stage1/model-109249.pth`` (the last iteration)."""
    from spml.config import default_config

    config = default_config()
    return release_snapshot_dir(config, root) / STAGE_DIR / model_file(config.train.max_iteration - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = parser.add_subparsers(dest="name", required=True)
    names.add_parser("release-checkpoint", help="path of the released model")
    stage = names.add_parser("stage-dir", help="checkpoint folder of a snapshot directory")
    stage.add_argument("snapshot_dir", type=Path)
    args = parser.parse_args(argv)
    print(release_checkpoint() if args.name == "release-checkpoint" else args.snapshot_dir / STAGE_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
