"""The embedding model: SFNet plus the training-time pass on the down/up-sampled input (docs/method.md §1.7)."""
from __future__ import annotations

import torch
from torch import nn

from network.sfnet import INPUT_SIZE, SFNet, resize


def augmented_input(x: torch.Tensor) -> torch.Tensor:
    """``up2(down2(x))``: bilinear to half size and back, align_corners=True (docs/method.md §1.7)."""
    return resize(resize(x, INPUT_SIZE // 2, align_corners=True), INPUT_SIZE, align_corners=True)


class EmbeddingModel(nn.Module):
    """``model(image, depth)`` -> dict of SFNet outputs; in training also ``div1_aug``, ``embedding_aug``.

    ``image`` is ImageNet-normalised RGB and ``depth`` grey depth in [0, 1] replicated to
    three channels, both ``[B, 3, 224, 224]``. State-dict keys start with ``sfnet.``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sfnet = SFNet()

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input_shapes(image, depth)
        outputs = self.sfnet(image, depth)
        if self.training:
            augmented = self.sfnet(augmented_input(image), augmented_input(depth))
            outputs["div1_aug"] = augmented["div1"]
            outputs["embedding_aug"] = augmented["embedding"]
        return outputs


def check_input_shapes(image: torch.Tensor, depth: torch.Tensor) -> None:
    """Raise ValueError unless ``image`` and ``depth`` are both ``[B, 3, 224, 224]`` with the same B."""
    expected = (3, INPUT_SIZE, INPUT_SIZE)
    if image.dim() != 4 or tuple(image.shape[1:]) != expected or image.shape != depth.shape:
        raise ValueError(
            f"the model needs image and depth of shape [B, 3, {INPUT_SIZE}, {INPUT_SIZE}] (224x224 inputs); "
            f"got image {list(image.shape)} and depth {list(depth.shape)}"
        )


def build_model() -> EmbeddingModel:
    """The randomly initialised embedding model (Swin init for encoders and fusion block)."""
    return EmbeddingModel()
