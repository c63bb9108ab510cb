#!/usr/bin/env bash
# Shared part of the DHFR launchers (train and test score); source it from the repository
# root with the launcher's arguments:  source bashscripts/sod/common.sh "$@"
#
# Checks the single GPU_ID argument (0 | 0,1 | cpu), selects the device, sets the release's
# hyper-parameters (each can be overridden by an environment variable of the same name),
# writes the filled config into the snapshot directory and leaves defined:
#   DEVICE (cpu|cuda), NUM_GPUS, NPROC (processes to start), SNAPSHOT_DIR, CONFIG, RESUME.

# ---- hyper-parameters (release defaults, docs/method.md §4) --------------------------------------
DATAROOT=${DATAROOT:-dataroot}
MAX_ITERATION=${MAX_ITERATION:-109250}
BATCH_SIZE=${BATCH_SIZE:-4}                 # global batch per step, split over the processes
SNAPSHOT_STEP=${SNAPSHOT_STEP:-21850}
TENSORBOARD_STEP=${TENSORBOARD_STEP:-100}
LR=${LR:-1e-4}
CROP_SIZE=${CROP_SIZE:-224}
EMBEDDING_DIM=${EMBEDDING_DIM:-64}
NUM_CLUSTERS=${NUM_CLUSTERS:-6}
KMEANS_ITERATIONS=${KMEANS_ITERATIONS:-10}
SEM_ANN_CONCENTRATION=${SEM_ANN_CONCENTRATION:-6}
IMG_SIM_CONCENTRATION=${IMG_SIM_CONCENTRATION:-16}
SEM_ANN_LOSS_WEIGHT=${SEM_ANN_LOSS_WEIGHT:-1.0}
IMG_SIM_LOSS_WEIGHT=${IMG_SIM_LOSS_WEIGHT:-0.1}
PARTED_CE_LOSS_WEIGHT=${PARTED_CE_LOSS_WEIGHT:-1.0}
SSC_LOSS_WEIGHT=${SSC_LOSS_WEIGHT:-1.0}
NUM_WORKERS=${NUM_WORKERS:-4}
SEED=${SEED:-0}
MIXED_PRECISION=${MIXED_PRECISION:-0}       # 1: autocast (float16 + GradScaler on CUDA, bfloat16 on CPU)
PRETRAINED=${PRETRAINED:-snapshots/localvit/localvit_swin.pth}   # or 'none': train from scratch
RESUME=${RESUME:-0}                         # 1: continue from the newest complete checkpoint
PYTHON=${PYTHON:-python3}
# -----------------------------------------------------------------------------------------

usage="usage: $0 GPU_ID   (GPU_ID: a GPU index such as 0, a comma list such as 0,1, or cpu)"
if [ "$#" -ne 1 ]; then
  echo "$usage" >&2
  exit 2
fi
GPU_ID=$1
if [ "$GPU_ID" = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""
  DEVICE=cpu
  NUM_GPUS=0
  NPROC=${NPROC:-1}                         # NPROC>1: several CPU processes (gloo)
elif [[ "$GPU_ID" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  export CUDA_VISIBLE_DEVICES=$GPU_ID
  DEVICE=cuda
  NUM_GPUS=$(( $(tr -cd , <<<"$GPU_ID" | wc -c) + 1 ))
  NPROC=$NUM_GPUS
else
  echo "$0: bad GPU_ID '$GPU_ID'; $usage" >&2
  exit 2
fi
for flag in RESUME MIXED_PRECISION; do
  case ${!flag} in
    0|1) ;;
    *) echo "$0: $flag must be 0 or 1, got '${!flag}'" >&2; exit 2 ;;
  esac
done
if [ "$MIXED_PRECISION" = 1 ]; then MIXED_PRECISION_BOOL=true; else MIXED_PRECISION_BOOL=false; fi

config_overrides=(
  "dataset.data_dir=$DATAROOT"
  "dataset.crop_size=$CROP_SIZE"
  "network.embedding_dim=$EMBEDDING_DIM"
  "network.kmeans_num_clusters=[$NUM_CLUSTERS, $NUM_CLUSTERS]"
  "network.kmeans_iterations=$KMEANS_ITERATIONS"
  "loss.sem_ann_concentration=$SEM_ANN_CONCENTRATION"
  "loss.img_sim_concentration=$IMG_SIM_CONCENTRATION"
  "loss.sem_ann_loss_weight=$SEM_ANN_LOSS_WEIGHT"
  "loss.img_sim_loss_weight=$IMG_SIM_LOSS_WEIGHT"
  "loss.parted_ce_loss_weight=$PARTED_CE_LOSS_WEIGHT"
  "loss.ssc_loss_weight=$SSC_LOSS_WEIGHT"
  "train.base_lr=$LR"
  "train.batch_size=$BATCH_SIZE"
  "train.max_iteration=$MAX_ITERATION"
  "train.snapshot_step=$SNAPSHOT_STEP"
  "train.tensorboard_step=$TENSORBOARD_STEP"
  "train.num_workers=$NUM_WORKERS"
  "train.seed=$SEED"
  "train.mixed_precision=$MIXED_PRECISION_BOOL"
  "train.pretrained=$PRETRAINED"
)
snapshot_args=()
if [ -n "${SNAPSHOT_DIR:-}" ]; then snapshot_args=(--snapshot-dir "$SNAPSHOT_DIR"); fi
SNAPSHOT_DIR=$("$PYTHON" pyscripts/tools/fill_config.py ${snapshot_args[@]+"${snapshot_args[@]}"} "${config_overrides[@]}") || exit 2
CONFIG=$SNAPSHOT_DIR/config.yaml
echo "snapshot directory: $SNAPSHOT_DIR" >&2
