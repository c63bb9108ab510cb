#!/usr/bin/env bash
# Saliency maps for one's own RGB-D images (see pyscripts/inference/predict.py).
#   bashscripts/predict.sh RGB DEPTH OUT [--featvis] [--device cpu|cuda]
# RGB/DEPTH: two image files or two folders paired by file stem.
# CHECKPOINT: default the released model, <release snapshot dir>/stage1/model-109249.pth.
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 RGB DEPTH OUT [--featvis] [--device cpu|cuda]   (CHECKPOINT=... to choose the model)" >&2
  exit 2
fi
rgb=$(realpath -m -- "$1"); depth=$(realpath -m -- "$2"); out=$(realpath -m -- "$3")
if [ -n "${CHECKPOINT:-}" ]; then CHECKPOINT=$(realpath -m -- "$CHECKPOINT"); fi
shift 3
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pyscripts.tools.fill_config spelling || exit 2   # CHECKPOINTS=... would use the released model
if [ -z "${CHECKPOINT:-}" ]; then
  CHECKPOINT=$("$PYTHON" -m spml.training.layout release-checkpoint)
  if [ ! -e "$CHECKPOINT" ]; then
    echo "$0: error: the released model is not downloaded ($CHECKPOINT); bash bashscripts/download_snapshots.sh model fetches it, CHECKPOINT=path/to/model-<iter>.pth takes another" >&2
    exit 2
  fi
fi
exec "$PYTHON" pyscripts/inference/predict.py --rgb "$rgb" --depth "$depth" --out "$out" \
  --checkpoint "$CHECKPOINT" "$@"
