#!/usr/bin/env bash
# Shared part of the DHFR launchers: source it with the launcher's arguments, before moving to
# the repository root:  source "$(dirname "$0")/common.sh" "$@"; cd "$REPO_ROOT"
#
# Checks the single GPU_ID argument (0 | 0,1 | cpu) and selects the device; makes the paths the
# user set (DATAROOT, SNAPSHOT_DIR, PRETRAINED, CHECKPOINT, SAVE_DIR) relative to the folder the
# launcher was started from (bashscripts/paths.sh); leaves defined DEVICE (cpu|cuda), NPROC
# (processes to start), PYTHON and REPO_ROOT. Run settings are not handled here:
# pyscripts/tools/fill_config.py reads the variables the user set (BATCH_SIZE, LR, ...; see
# spml/training/settings.py) on top of the defaults of spml/config.py.
PYTHON=${PYTHON:-python3}
source "$(dirname "${BASH_SOURCE[0]}")/../paths.sh"
absolute_paths DATAROOT SNAPSHOT_DIR PRETRAINED CHECKPOINT SAVE_DIR

usage="usage: $0 GPU_ID   (GPU_ID: a GPU index such as 0, a comma list such as 0,1, or cpu)"
if [ "$#" -ne 1 ]; then
  echo "$usage" >&2
  exit 2
fi
GPU_ID=$1
if [ "$GPU_ID" = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""
  DEVICE=cpu
  NPROC=${NPROC:-1}                         # NPROC>1: several CPU processes (gloo)
  if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: error: NPROC=$NPROC: must be an integer >= 1" >&2
    exit 2
  fi
elif [[ "$GPU_ID" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  export CUDA_VISIBLE_DEVICES=$GPU_ID
  DEVICE=cuda
  NPROC=$(( $(tr -cd , <<<"$GPU_ID" | wc -c) + 1 ))
else
  echo "$0: bad GPU_ID '$GPU_ID'; $usage" >&2
  exit 2
fi
