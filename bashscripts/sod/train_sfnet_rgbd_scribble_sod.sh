#!/usr/bin/env bash
# Train DHFR (SFNet RGB-D, scribble supervision) with the release's settings (docs/method.md §4).
#   bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh GPU_ID      GPU_ID: 0 | 0,1 | cpu
# Settings: environment variables (DATAROOT, MAX_ITERATION, BATCH_SIZE, LR, SNAPSHOT_STEP,
# NUM_WORKERS, PRETRAINED, SNAPSHOT_DIR, ...: spml/training/settings.py), NPROC with cpu.
# Every training file is checked before the first step (VALIDATE=0 skips the check).
# EAGER=1 runs the network eagerly on a GPU instead of replaying it as a CUDA graph (for debugging).
# COMPILE=1 compiles SFNet with torch.compile first (opt-in; the first step compiles for minutes).
# PRECISION=fp32 (default, exact) | tf32 | bf16 | fp16: the arithmetic on a GPU (README "GPU fast paths").
# JOINT_PASSES=1 (default on a GPU) runs the plain and the augmented pass as one batch; 0 (default on
# the CPU) as two calls (README "GPU fast paths").
# RESUME=1 continues the run in SNAPSHOT_DIR with the settings it was started with
# (RESUME_ALLOW_CHANGES=1 to change them deliberately).
# Writes <snapshot dir>/config_sod_emb.yaml; checkpoints go to <snapshot dir>/stage1/.
set -euo pipefail
source "$(dirname "$0")/common.sh" "$@"
cd "$REPO_ROOT"

settings=$("$PYTHON" pyscripts/tools/fill_config.py train --processes "$NPROC" --device "$DEVICE") || exit $?
eval "$settings"

train_args=(--config "$CONFIG" --device "$DEVICE")
if [ "$RESUME" = 1 ]; then train_args+=(--resume); fi
if [ "$EAGER" = 1 ]; then train_args+=(--eager); fi
if [ "$COMPILE" = 1 ]; then train_args+=(--compile); fi
if [ "$VALIDATE" = 0 ]; then train_args+=(--no-validate); fi
if [ "$NPROC" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    pyscripts/train/train.py "${train_args[@]}"
fi
exec "$PYTHON" pyscripts/train/train.py "${train_args[@]}"
