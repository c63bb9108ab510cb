"""DHFR embedding network (docs/method.md §1): LocalViT-Swin RGB-D encoders, cross-padding fusion and decoder."""
from network.checkpoint import (
    CheckpointError,
    imagenet_source_key,
    init_from_imagenet,
    load_checkpoint,
    save_checkpoint,
)
from network.model import EmbeddingModel, build_model

__all__ = [
    "CheckpointError",
    "EmbeddingModel",
    "build_model",
    "imagenet_source_key",
    "init_from_imagenet",
    "load_checkpoint",
    "save_checkpoint",
]
