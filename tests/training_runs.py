"""Launching short training runs from the tests: a generated dataset and the launcher, with
this interpreter (``PYTHON=sys.executable``). Shared by the training, resume and distributed tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

LAUNCHER = "bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh"
TEST_SCORE_LAUNCHER = "bashscripts/sod/train_sfnet_rgbd_scribble_sod_testscore.sh"
NUM_TRAIN = 3
# Cheapest run the launcher can make: one image per step, no workers, no ImageNet weights.
SMALL_RUN = {"PRETRAINED": "none", "BATCH_SIZE": "1", "NUM_WORKERS": "0", "TENSORBOARD_STEP": "1"}


def make_dataset(repo_root: Path, root: Path) -> Path:
    """A generated dataset in the release layout, without list files (the trainer builds them)."""
    subprocess.run([sys.executable, "pyscripts/tools/make_synthetic_data.py", "--root", str(root),
                    "--num-train", str(NUM_TRAIN), "--num-test", "1"], cwd=repo_root, check=True, capture_output=True)
    shutil.rmtree(root / "lists")
    return root


def list_unreadable_sample(data_root: Path) -> list[str]:
    """A training list of one sample whose five files exist but are empty (nothing can decode them),
    for checks that must stop a run before any file is read; returns the list's entries."""
    sample = [f"sod/{name}" for name in ("RGB_Train/a.jpg", "Depth_Train/a.bmp", "scribble_tip/a.png", "hed/a.jpg",
                                         "contours_sum/a.png")]
    for path in sample:
        (data_root / path).parent.mkdir(parents=True)
        (data_root / path).write_bytes(b"")
    (data_root / "lists").mkdir()
    (data_root / "lists" / "train.txt").write_text(" ".join(sample) + "\n")
    return sample


def launcher_environment(**env: str) -> dict[str, str]:
    """This environment with this interpreter as the launchers' ``PYTHON``, ``SMALL_RUN`` and ``env``."""
    return {**os.environ, "PYTHON": sys.executable, **SMALL_RUN, **env}


def launch(repo_root: Path, *args: str, launcher: str = LAUNCHER, **env: str) -> subprocess.CompletedProcess:
    """Run ``launcher`` with ``args`` and :func:`launcher_environment` (``env``)."""
    return subprocess.run(["bash", launcher, *args], cwd=repo_root, env=launcher_environment(**env),
                          capture_output=True, text=True, timeout=1800)
