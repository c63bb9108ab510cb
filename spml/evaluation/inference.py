"""Running a trained DHFR network for evaluation (docs/method.md §1.6, §3.3, §5).

The network sees 224×224 inputs; :func:`eval_network` is how evaluation runs it (on a GPU
replayed from CUDA graphs unless ``--eager``, in exact float32 unless ``--precision`` says
otherwise); :func:`predict` returns its final map ``div1`` and the embedding (``dec4``) of a
batch; :func:`saliency_to_uint8` brings one map back to any image size (bilinear,
align_corners=False) as the 8-bit map that is saved and scored.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib.precisions import check_precision_device
from network import build_model, load_checkpoint
from network.cuda_graphs import GraphedEval
from network.precision import autocast, check_precision, set_float32_precision

Forward = Callable[[Tensor, Tensor], dict[str, Tensor]]


def resolve_device(name: str | None) -> torch.device:
    """``name`` (cpu, cuda, cuda:N) as a device (default: CUDA when present, else CPU); a
    malformed name or a CUDA device that is not there raises ValueError naming ``--device``."""
    try:
        device = torch.device(name if name else ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_model(checkpoint: str | os.PathLike, device: torch.device) -> nn.Module:
    """The network with ``checkpoint`` loaded strictly (release layout), in eval mode on ``device``.

    Raises ``network.CheckpointError`` (one line naming the file and what is wrong with it)
    for a checkpoint that is missing, corrupt or of another model.
    """
    model = build_model()
    load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def eval_network(model: nn.Module, eager: bool = False, precision: str = "fp32") -> Forward:
    """``model``'s eval forward as evaluation runs it.

    On a GPU: replayed from CUDA graphs (:class:`network.cuda_graphs.GraphedEval`) unless
    ``eager``, in ``precision`` (:mod:`network.precision`; ``fp32``, the default, is exact).
    On the CPU: the model itself; only ``fp32`` is accepted there.
    """
    device = next(model.parameters()).device
    check_precision(precision)
    check_precision_device(precision, device.type, f"--precision {precision}")
    if device.type != "cuda":
        return model
    set_float32_precision(precision)
    if not eager:
        return GraphedEval(model, precision)

    def forward(image: Tensor, depth: Tensor) -> dict[str, Tensor]:
        with autocast(precision, device):
            return {name: output.float() for name, output in model(image, depth).items()}

    return forward


@torch.no_grad()
def predict(network: Forward, image: Tensor, depth: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Saliency ``div1`` [B,1,224,224] and embedding [B,64,56,56] of a batch, computed on ``device``."""
    outputs = network(image.to(device, non_blocking=True), depth.to(device, non_blocking=True))
    return outputs["div1"], outputs["embedding"]


def saliency_to_uint8(saliency: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One map [1,h,w] in [0,1] resized bilinearly to ``size`` (H, W) as an HxW uint8 image."""
    resized = F.interpolate(saliency[None].float(), size=size, mode="bilinear", align_corners=False)
    return (resized[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
