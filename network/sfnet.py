"""SFNet: two encoders, the fusion block and the cross-padding decoder with its side outputs (docs/method.md §1.6)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from network.cross_padding import CrossPaddingAttentionBlock
from network.fusion import FusionBlock
from network.localvit_swin import LocalViTSwinEncoder
from network.per_pass_batch_norm import PerPassBatchNorm2d

INPUT_SIZE = 224
EMBEDDING_DIM = 64  # channels of the embedding dec4 (docs/method.md §1.6 step 6)
DECODER_HEADS = 8
DECODER_DEPTH = 4
OUTPUT_NAMES = ("before_fuse_div16", "div16", "div8", "div4", "div2", "div1", "embedding", "contour_div1")
"""Keys of :meth:`SFNet.forward`'s result, in the release's return order."""


def resize(x: torch.Tensor, size: int, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``[B, C, h, w]`` to ``[B, C, size, size]``."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=align_corners)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


def conv3x3_bn(in_channels: int, out_channels: int) -> tuple[nn.Conv2d, PerPassBatchNorm2d]:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), PerPassBatchNorm2d(out_channels)


class UpsampleHead(nn.Module):
    """``[B, a, h, w]`` -> ``[B, b, 2h, 2w]``.

    ``y = ReLU(BN(Conv3x3(x))) + x``; bilinear x2 (align_corners=True); ``ReLU(BN(Conv3x3(y)))``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3_bn(in_channels, in_channels)
        self.conv2, self.bn2 = conv3x3_bn(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x))) + x
        y = resize(y, 2 * y.shape[-1], align_corners=True)
        return F.relu(self.bn2(self.conv2(y)))


class SFNet(nn.Module):
    """``image, depth`` ``[B, 3, 224, 224]`` -> dict of :data:`OUTPUT_NAMES`.

    Saliency outputs are ``[B, 1, 224, 224]`` probabilities, ``embedding`` is the
    ``[B, EMBEDDING_DIM, 56, 56]`` decoder feature ``dec4``.
    """

    def __init__(self) -> None:
        super().__init__()
        grid = INPUT_SIZE // 4
        self.rgb_swin = LocalViTSwinEncoder(INPUT_SIZE)
        self.depth_swin = LocalViTSwinEncoder(INPUT_SIZE)
        self.fuse_swin = FusionBlock()
        self.enc_div16_trans = conv1x1(768, 256)
        self.enc_div8_trans = conv1x1(384, 128)
        self.enc_div4_trans = conv1x1(192, EMBEDDING_DIM)
        self.div16_trans = conv1x1(384, 256)
        self.dec_div8_merging = CrossPaddingAttentionBlock(128, grid // 2, DECODER_DEPTH, DECODER_HEADS)
        self.dec_div4_merging = CrossPaddingAttentionBlock(EMBEDDING_DIM, grid, DECODER_DEPTH, DECODER_HEADS)
        self.dec_div2_merging = CrossPaddingAttentionBlock(32, grid * 2, 0, DECODER_HEADS)
        self.upsample_head = UpsampleHead(32, 32)
        self.contour_upsample_head1 = UpsampleHead(EMBEDDING_DIM, 32)
        self.contour_upsample_head2 = UpsampleHead(32, 32)
        self.classifier_before_fuse_div16 = conv1x1(256, 1)
        self.classifier_contour_div1 = conv1x1(32, 1)
        self.classifier_div16 = conv1x1(256, 1)
        self.classifier_div8 = conv1x1(128, 1)
        self.classifier_div4 = conv1x1(EMBEDDING_DIM, 1)
        self.classifier_div2 = conv1x1(32, 1)
        self.classifier_div1 = conv1x1(32, 1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        r4, r8, r16 = self.rgb_swin(image)
        d4, d8, d16 = self.depth_swin(depth)
        e16 = self.enc_div16_trans(torch.cat((r16, d16), dim=1))
        e8 = self.enc_div8_trans(torch.cat((r8, d8), dim=1))
        e4 = self.enc_div4_trans(torch.cat((r4, d4), dim=1))

        before_fuse_div16 = side_output(self.classifier_before_fuse_div16, e16)
        fused = self.fuse_swin(r16, d16, resize(before_fuse_div16, r16.shape[-1] * 2))
        dec16 = self.div16_trans(fused)
        div16 = side_output(self.classifier_div16, dec16)
        dec8 = self.dec_div8_merging(e16, dec16, resize(div16, dec16.shape[-1] * 2))
        div8 = side_output(self.classifier_div8, dec8)
        dec4 = self.dec_div4_merging(e8, dec8, resize(div8, dec8.shape[-1] * 2))
        div4 = side_output(self.classifier_div4, dec4)
        dec2 = self.dec_div2_merging(e4, dec4)
        div2 = side_output(self.classifier_div2, dec2)
        div1 = side_output(self.classifier_div1, self.upsample_head(dec2))

        contour = self.contour_upsample_head2(self.contour_upsample_head1(dec4))
        contour_div1 = side_output(self.classifier_contour_div1, contour)
        outputs = (before_fuse_div16, div16, div8, div4, div2, div1, dec4, contour_div1)
        return dict(zip(OUTPUT_NAMES, outputs))


def side_output(classifier: nn.Conv2d, feature: torch.Tensor) -> torch.Tensor:
    """Saliency probability ``sigmoid(up224(classifier(feature)))``, ``[B, 1, 224, 224]``."""
    return torch.sigmoid(resize(classifier(feature), INPUT_SIZE))
