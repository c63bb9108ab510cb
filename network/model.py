"""The embedding model: SFNet plus the training-time pass on the down/up-sampled input (docs/method.md §1.7)."""
from __future__ import annotations

import torch
from torch import nn

from network.per_pass_batch_norm import interleaved_passes
from network.sfnet import INPUT_SIZE, SFNet, resize


def augmented_input(x: torch.Tensor) -> torch.Tensor:
    """``up2(down2(x))``: bilinear to half size and back, align_corners=True (docs/method.md §1.7)."""
    return resize(resize(x, INPUT_SIZE // 2, align_corners=True), INPUT_SIZE, align_corners=True)


class EmbeddingModel(nn.Module):
    """``model(image, depth)`` -> dict of SFNet outputs; in training also ``div1_aug``, ``embedding_aug``.

    ``image`` is ImageNet-normalised RGB and ``depth`` grey depth in [0, 1] replicated to
    three channels, both ``[B, 3, 224, 224]``. State-dict keys start with ``sfnet.``.

    ``joint_passes``: in training, run the plain and the augmented pass as one batch of ``2B``
    (each image next to its augmented copy) instead of two calls of SFNet: 57 % of the ops
    (kernel launches) of a forward+backward, each on twice the data. BatchNorm still takes each pass's own statistics
    (:class:`network.per_pass_batch_norm.PerPassBatchNorm2d`), so the outputs, gradients and
    running statistics are those of the two calls up to rounding; only DropPath draws its
    random masks in another order (docs/method.md §1.7). Evaluation is the same either way.
    """

    def __init__(self, joint_passes: bool = False) -> None:
        super().__init__()
        self.sfnet = SFNet()
        self.joint_passes = joint_passes

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input_shapes(image, depth)
        if not self.training:
            return self.sfnet(image, depth)
        if self.joint_passes:
            return self._joint_forward(image, depth)
        outputs = self.sfnet(image, depth)
        augmented = self.sfnet(augmented_input(image), augmented_input(depth))
        outputs["div1_aug"] = augmented["div1"]
        outputs["embedding_aug"] = augmented["embedding"]
        return outputs

    def _joint_forward(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both passes in one SFNet call on ``[x_0, aug(x_0), x_1, aug(x_1), ...]``."""
        image, depth = (torch.stack((x, augmented_input(x)), dim=1).flatten(0, 1) for x in (image, depth))
        with interleaved_passes(2):
            joint = self.sfnet(image, depth)
        outputs = {name: output[0::2] for name, output in joint.items()}
        outputs["div1_aug"] = joint["div1"][1::2]
        outputs["embedding_aug"] = joint["embedding"][1::2]
        return outputs


def check_input_shapes(image: torch.Tensor, depth: torch.Tensor) -> None:
    """Raise ValueError unless ``image`` and ``depth`` are both ``[B, 3, 224, 224]`` with the same B."""
    expected = (3, INPUT_SIZE, INPUT_SIZE)
    if image.dim() != 4 or tuple(image.shape[1:]) != expected or image.shape != depth.shape:
        raise ValueError(
            f"the model needs image and depth of shape [B, 3, {INPUT_SIZE}, {INPUT_SIZE}] (224x224 inputs); "
            f"got image {list(image.shape)} and depth {list(depth.shape)}"
        )


def build_model(joint_passes: bool = False) -> EmbeddingModel:
    """The randomly initialised embedding model (Swin init for encoders and fusion block);
    ``joint_passes`` as in :class:`EmbeddingModel`."""
    return EmbeddingModel(joint_passes)
