"""DHFR embedding network (docs/method.md §1): LocalViT-Swin RGB-D encoders, cross-padding fusion and decoder."""
from network.checkpoint import (
    CheckpointError,
    imagenet_source_key,
    init_from_imagenet,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from network.model import EmbeddingModel, build_model
from network.sfnet import INPUT_SIZE

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
