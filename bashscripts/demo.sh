#!/usr/bin/env bash
# End-to-end demo on generated data: synthetic dataset -> test score of the untrained network
# -> brief training from scratch -> test score of the trained network; prints both tables.
#   bashscripts/demo.sh            (GPU 0 when CUDA is present, else CPU)
# Environment: DEMO_DIR (default snapshots/demo/<date-time>), DEMO_GPU (0 | cpu),
#   DEMO_ITERATIONS, DEMO_BATCH_SIZE, DEMO_LR, DEMO_NUM_TRAIN, DEMO_NUM_TEST.
set -euo pipefail
source "$(dirname "$0")/paths.sh"
absolute_paths DEMO_DIR
cd "$REPO_ROOT"
PYTHON=${PYTHON:-python3}
export PYTHON
start=$SECONDS

if [ -z "${DEMO_GPU:-}" ]; then
  if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then DEMO_GPU=0; else DEMO_GPU=cpu; fi
fi
# The device is checked before anything is generated.
if [ "$DEMO_GPU" = cpu ]; then
  device=cpu
elif [[ "$DEMO_GPU" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  device=cuda
  export CUDA_VISIBLE_DEVICES=$DEMO_GPU
  "$PYTHON" - "$DEMO_GPU" "$0" <<'PY' || exit 2
import sys
from lib.distributed import DeviceUnavailableError, check_cuda_devices
try:
    check_cuda_devices(sys.argv[1].count(",") + 1, f"DEMO_GPU={sys.argv[1]}", "DEMO_GPU=cpu")
except DeviceUnavailableError as error:
    sys.exit(f"{sys.argv[2]}: error: {error}")
PY
else
  echo "$0: error: DEMO_GPU=$DEMO_GPU: expected a GPU index such as 0, or cpu" >&2
  exit 2
fi
DEMO_DIR=${DEMO_DIR:-snapshots/demo/$(date +%Y%m%d-%H%M%S)}
# A CPU training iteration (batch 2, two passes through the network) takes about 3.7 s on an
# idle 2-core machine: with 30 iterations the whole demo took 133 s there (12 iterations:
# 68 s); a GPU trains longer in less time.
if [ "$DEMO_GPU" = cpu ]; then default_iterations=30; else default_iterations=300; fi
DEMO_ITERATIONS=${DEMO_ITERATIONS:-$default_iterations}
DEMO_BATCH_SIZE=${DEMO_BATCH_SIZE:-2}
DEMO_LR=${DEMO_LR:-1e-3}
DEMO_NUM_TRAIN=${DEMO_NUM_TRAIN:-40}
DEMO_NUM_TEST=${DEMO_NUM_TEST:-4}
data=$DEMO_DIR/data
# The spelling of the variables the launchers read, and the numbers, are checked before anything is generated.
"$PYTHON" -m pyscripts.tools.fill_config spelling || exit 2
"$PYTHON" - "$0" "$DEMO_ITERATIONS" "$DEMO_BATCH_SIZE" "$DEMO_NUM_TRAIN" "$DEMO_NUM_TEST" "$DEMO_LR" <<'PY' || exit 2
import argparse, sys
from lib.cli import positive_float, positive_int
program, *values = sys.argv[1:]
names = ("DEMO_ITERATIONS", "DEMO_BATCH_SIZE", "DEMO_NUM_TRAIN", "DEMO_NUM_TEST", "DEMO_LR")
for name, value, parse in zip(names, values, (positive_int,) * 4 + (positive_float,)):
    try:
        parse(value)
    except argparse.ArgumentTypeError as error:
        sys.exit(f"{program}: error: {name}={value}: {error}")
PY

step() { printf '\n=== [%4ds] %s\n' $((SECONDS - start)) "$*"; }

step "1/5 synthetic dataset -> $data"
"$PYTHON" pyscripts/tools/make_synthetic_data.py --root "$data" --num-train "$DEMO_NUM_TRAIN" \
  --num-test "$DEMO_NUM_TEST" --seed 0

step "2/5 untrained network (random initialisation, seed 0)"
untrained_checkpoint=$("$PYTHON" - "$DEMO_DIR/untrained" <<'PY'
import sys
from pathlib import Path
import torch
from network import build_model, save_checkpoint
from spml.training.layout import model_file
torch.manual_seed(0)
path = Path(sys.argv[1]) / model_file(0)
save_checkpoint(build_model(), path)
print(path)
PY
)

step "3/5 test score of the untrained network"
"$PYTHON" pyscripts/benchmark/score_model.py --data-root "$data" --checkpoint "$untrained_checkpoint" \
  --save-dir "$DEMO_DIR/untrained" --device "$device" --num-workers 0

step "4/5 training from scratch: $DEMO_ITERATIONS iterations, batch $DEMO_BATCH_SIZE, lr $DEMO_LR ($DEMO_GPU)"
export DATAROOT=$data SNAPSHOT_DIR=$DEMO_DIR/train PRETRAINED=none MAX_ITERATION=$DEMO_ITERATIONS \
  BATCH_SIZE=$DEMO_BATCH_SIZE LR=$DEMO_LR SNAPSHOT_STEP=$DEMO_ITERATIONS TENSORBOARD_STEP=$DEMO_ITERATIONS \
  NUM_WORKERS=1
bash bashscripts/sod/train_sfnet_rgbd_scribble_sod.sh "$DEMO_GPU"

step "5/5 test score of the trained network"
SAVE_DIR=$DEMO_DIR/trained TEST_NUM_WORKERS=0 \
  bash bashscripts/sod/train_sfnet_rgbd_scribble_sod_testscore.sh "$DEMO_GPU"

step "done"
echo "untrained network:"; cat "$DEMO_DIR/untrained/scores.md"
echo; echo "trained network ($DEMO_ITERATIONS iterations):"; cat "$DEMO_DIR/trained/scores.md"
cat <<EOF_SUMMARY

saliency maps:           $DEMO_DIR/{untrained,trained}/results/<SET>/
feature visualisations:  $DEMO_DIR/{untrained,trained}/featvis/<SET>/
score tables:            $DEMO_DIR/{untrained,trained}/scores.{md,csv,json}
curves:                  $DEMO_DIR/{untrained,trained}/{pr_curves,f_threshold_curves}.png
trained checkpoint:      $("$PYTHON" -m spml.training.layout stage-dir "$DEMO_DIR/train")/
total time:              $((SECONDS - start)) s
EOF_SUMMARY
