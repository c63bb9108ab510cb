"""DHFR embedding network (docs/method.md §1): LocalViT-Swin RGB-D encoders, cross-padding fusion and decoder.

Importing the package sets exact float32 arithmetic on CUDA (no TF32 in cuDNN convolutions,
which PyTorch otherwise allows), so the released weights give the release's maps on a GPU
too; see :mod:`network.precision` for the faster settings.
"""
from network.checkpoint import (
    CheckpointError,
    imagenet_source_key,
    init_from_imagenet,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from network.model import EmbeddingModel, build_model
from network.precision import set_float32_precision
from network.sfnet import INPUT_SIZE

set_float32_precision("fp32")

__all__ = [
    "CheckpointError",
    "EmbeddingModel",
    "INPUT_SIZE",
    "build_model",
    "imagenet_source_key",
    "init_from_imagenet",
    "load_checkpoint",
    "read_torch_file",
    "save_checkpoint",
]
