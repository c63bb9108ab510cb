#!/usr/bin/env bash
# Test score of a DHFR model (docs/method.md §5): maps, feature visualisations, scores, tables, curves.
#   bashscripts/sod/train_sfnet_rgbd_scribble_sod_testscore.sh GPU_ID     GPU_ID: 0 | cpu
# The run is SNAPSHOT_DIR (default: the folder the training launcher names after the same
# settings); its config_sod_emb.yaml is read, never written. Environment:
#   CHECKPOINT  checkpoint in the release layout (default: the run's newest stage1/model-<iter>.pth)
#   SAVE_DIR    output folder (default: results/<run folder name>/<checkpoint name>_<protocol>)
#   PROTOCOL    field (scores at the ground truth's resolution) | release (224x224); default: the config's
#   DATAROOT, TEST_BATCH_SIZE, TEST_NUM_WORKERS (default: the config's)
#   EAGER=1     on a GPU, run the network eagerly instead of replaying it as a CUDA graph
#   PRECISION   fp32 (default, exact) | tf32 | bf16 | fp16 (GPU only; see README "GPU fast paths")
set -euo pipefail
source "$(dirname "$0")/common.sh" "$@"
cd "$REPO_ROOT"

settings=$("$PYTHON" pyscripts/tools/fill_config.py test-score --device "$DEVICE") || exit $?
eval "$settings"
echo "checkpoint: $(realpath -m -- "$CHECKPOINT")"
echo "results: $(realpath -m -- "$SAVE_DIR")"

score_args=(--checkpoint "$CHECKPOINT" --save-dir "$SAVE_DIR" --protocol "$PROTOCOL" --device "$DEVICE")
if [ -n "$CONFIG" ]; then score_args+=(--config "$CONFIG"); fi
if [ -n "${DATAROOT:-}" ]; then score_args+=(--data-root "$DATAROOT"); fi
if [ -n "${TEST_BATCH_SIZE:-}" ]; then score_args+=(--batch-size "$TEST_BATCH_SIZE"); fi
if [ -n "${TEST_NUM_WORKERS:-}" ]; then score_args+=(--num-workers "$TEST_NUM_WORKERS"); fi
if [ -n "${PRECISION:-}" ]; then score_args+=(--precision "$PRECISION"); fi
case "${EAGER:-0}" in
  0) ;;
  1) score_args+=(--eager) ;;
  *) echo "$0: error: EAGER=$EAGER: must be 0 or 1" >&2; exit 2 ;;
esac
exec "$PYTHON" pyscripts/benchmark/score_model.py "${score_args[@]}"
