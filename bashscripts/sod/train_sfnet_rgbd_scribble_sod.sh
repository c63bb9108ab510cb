#!/usr/bin/env bash
# Train DHFR (SFNet RGB-D, scribble supervision) with the release's settings (docs/method.md §4).
#   bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh GPU_ID      GPU_ID: 0 | 0,1 | cpu
# Environment overrides: see bashscripts/sod/common.sh (DATAROOT, MAX_ITERATION, BATCH_SIZE,
# SNAPSHOT_STEP, PRETRAINED, RESUME=1, SNAPSHOT_DIR, NPROC with cpu, ...).
# Checkpoints go to $SNAPSHOT_DIR/stage1/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bashscripts/sod/common.sh "$@"

train_args=(--config "$CONFIG" --device "$DEVICE")
if [ "$RESUME" = 1 ]; then train_args+=(--resume); fi
if [ "$NPROC" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    pyscripts/train/train.py "${train_args[@]}"
fi
exec "$PYTHON" pyscripts/train/train.py "${train_args[@]}"
