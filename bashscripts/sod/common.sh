#!/usr/bin/env bash
# Shared part of the DHFR launchers: source it from the repository root with the launcher's
# arguments:  source bashscripts/sod/common.sh "$@"
#
# Checks the single GPU_ID argument (0 | 0,1 | cpu) and selects the device; leaves defined
# DEVICE (cpu|cuda), NPROC (processes to start) and PYTHON. Run settings are not handled
# here: pyscripts/tools/fill_config.py reads the variables the user set (BATCH_SIZE, LR, ...;
# see spml/training/settings.py) on top of the defaults of spml/config.py.
PYTHON=${PYTHON:-python3}

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
