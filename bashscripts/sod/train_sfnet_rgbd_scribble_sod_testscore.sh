#!/usr/bin/env bash
# Test score of a DHFR model (docs/method.md §5): maps, feature visualisations, scores, tables, curves.
#   bashscripts/sod/train_sfnet_rgbd_scribble_sod_testscore.sh GPU_ID     GPU_ID: 0 | cpu
# Environment (besides those of bashscripts/sod/common.sh, e.g. DATAROOT, SNAPSHOT_DIR):
#   CHECKPOINT  checkpoint in the release layout (default: newest $SNAPSHOT_DIR/stage1/model-*.pth)
#   SAVE_DIR    output folder (default: $SNAPSHOT_DIR/stage1/results/<checkpoint name>_<protocol>)
#   PROTOCOL    field (default: scores at the ground truth's resolution) | release (224x224)
#   TEST_BATCH_SIZE (default 8), TEST_NUM_WORKERS (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
source bashscripts/sod/common.sh "$@"

PROTOCOL=${PROTOCOL:-field}
if [ -z "${CHECKPOINT:-}" ]; then
  CHECKPOINT=$(ls "$SNAPSHOT_DIR"/stage1/model-*.pth 2>/dev/null | grep -v '\.state\.pth$' | sort -V | tail -n 1 || true)
  if [ -z "$CHECKPOINT" ]; then
    echo "$0: no checkpoint $SNAPSHOT_DIR/stage1/model-*.pth; set CHECKPOINT=..." >&2
    exit 2
  fi
fi
SAVE_DIR=${SAVE_DIR:-$SNAPSHOT_DIR/stage1/results/$(basename "$CHECKPOINT" .pth)_$PROTOCOL}
echo "checkpoint: $CHECKPOINT" >&2
echo "results: $SAVE_DIR" >&2

exec "$PYTHON" pyscripts/benchmark/score_model.py --config "$CONFIG" --data-root "$DATAROOT" \
  --checkpoint "$CHECKPOINT" --save-dir "$SAVE_DIR" --protocol "$PROTOCOL" --device "$DEVICE" \
  --batch-size "${TEST_BATCH_SIZE:-8}" --num-workers "${TEST_NUM_WORKERS:-2}"
