"""Launching short training runs from the tests: a generated dataset, the launcher, the
training script as a module. Shared by the training, resume and distributed tests."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

LAUNCHER = "bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh"
NUM_TRAIN = 3
# Cheapest run the launcher can make: one image per step, no workers, no ImageNet weights.
SMALL_RUN = {"PRETRAINED": "none", "BATCH_SIZE": "1", "NUM_WORKERS": "0", "TENSORBOARD_STEP": "1"}


def make_dataset(repo_root: Path, root: Path) -> Path:
    """A generated dataset in the release layout, without list files (the trainer builds them)."""
    subprocess.run([sys.executable, "pyscripts/tools/make_synthetic_data.py", "--root", str(root),
                    "--num-train", str(NUM_TRAIN), "--num-test", "1"], cwd=repo_root, check=True, capture_output=True)
    shutil.rmtree(root / "lists")
    return root


def load_train_script(repo_root: Path):
    """``pyscripts/train/train.py`` as a module (it is a script, not part of a package)."""
    if "train_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("train_script", repo_root / "pyscripts" / "train" / "train.py")
        sys.modules["train_script"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["train_script"]


def launch(repo_root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the training launcher with ``args`` and ``SMALL_RUN`` plus ``env`` as environment."""
    return subprocess.run(["bash", LAUNCHER, *args], cwd=repo_root, env={**os.environ, **SMALL_RUN, **env},
                          capture_output=True, text=True, timeout=1800)
