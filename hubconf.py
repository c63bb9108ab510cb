"""torch.hub entry points of DHFR (docs/method.md §1, §3.3).

    model = torch.hub.load("<repo or owner/name>", "dhfr", checkpoint="release")   # source="local" for a clone
    saliency = torch.hub.load(..., "predict", model, rgb, depth)                   # HxW float32 in [0, 1]

``dhfr`` returns the network in eval mode; ``dhfr_preprocess`` turns an RGB image and a depth
image of any size (PIL images or numpy arrays) into the network's two inputs; ``predict`` runs
both and returns the final saliency map ``div1``, at the input size or at the RGB image's size.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

# Callables imported under "_" names: torch.hub lists every other public callable as an entry point.
from network import build_model as _build_model, load_checkpoint as _load_checkpoint
from network.sfnet import INPUT_SIZE
from spml.training.layout import SNAPSHOT_ROOT, release_checkpoint as _release_checkpoint_path
from spml.data.image_io import depth_to_uint8 as _depth_to_uint8, scale_to_uint8 as _scale_to_uint8
from spml.data.transforms import eval_inputs as _eval_inputs

dependencies = ["torch", "timm", "numpy", "PIL", "cv2", "yaml"]

REPO_ROOT = pathlib.Path(__file__).resolve().parent
RELEASE = "release"
DOWNLOAD_COMMAND = "bash bashscripts/download_snapshots.sh model"
ImageLike = Image.Image | np.ndarray


def _release_checkpoint() -> pathlib.Path:
    """Where ``download_snapshots.sh model`` puts the released weights, in this repository."""
    return _release_checkpoint_path(REPO_ROOT / SNAPSHOT_ROOT)


def dhfr(checkpoint: str | os.PathLike | None = None, map_location: str | torch.device | None = None) -> nn.Module:
    """The DHFR network in eval mode: randomly initialised (``None``), with the released weights
    (``"release"``, downloaded beforehand) or with a checkpoint file in the release layout.

    ``map_location``: the device to put the network on (default: the CPU). Raises
    ``FileNotFoundError`` (with the download command) when the released weights are absent and
    ``network.CheckpointError`` for a checkpoint that does not fit.
    """
    model = _build_model()
    if checkpoint is not None:
        path = pathlib.Path(checkpoint)
        if str(checkpoint) == RELEASE:
            path = _release_checkpoint()
            if not path.is_file():
                raise FileNotFoundError(f"released weights not found at {path}; download them with: "
                                        f"cd {REPO_ROOT} && {DOWNLOAD_COMMAND}")
        _load_checkpoint(model, path)
    return model.to(map_location or "cpu").eval()


def _rgb_u8(rgb: ImageLike) -> np.ndarray:
    """HxWx3 uint8 RGB from a PIL image or an HxWx3 / HxW uint8 array."""
    if isinstance(rgb, Image.Image):
        return np.asarray(rgb.convert("RGB"))
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] not in (3, 4)):
        raise ValueError(f"rgb: expected an HxWx3 uint8 array or a PIL image, got {rgb.dtype}{list(rgb.shape)}")
    return np.asarray(Image.fromarray(rgb).convert("RGB"))


def _depth_u8(depth: ImageLike) -> np.ndarray:
    """HxW uint8 depth; wider than 8 bits (16-bit, integer or float) is min-max scaled to 0..255
    as the data pipeline does with 16-bit depth files (docs/method.md §3.1). NaN or infinite
    depth raises ValueError (fill it first)."""
    try:
        if isinstance(depth, Image.Image):
            return _depth_to_uint8(depth)
        depth = np.asarray(depth)
        if depth.ndim == 3 and depth.shape[2] in (3, 4) and depth.dtype == np.uint8:
            return np.asarray(Image.fromarray(depth).convert("L"))
        if depth.ndim != 2:
            raise ValueError(f"expected an HxW array (or HxWx3 uint8) or a PIL image, got {list(depth.shape)}")
        return depth if depth.dtype == np.uint8 else _scale_to_uint8(depth)
    except ValueError as error:
        raise ValueError(f"depth: {error}") from None


def dhfr_preprocess(rgb: ImageLike, depth: ImageLike) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB and depth images of any size -> the network's ``image, depth`` ``[1, 3, 224, 224]`` each
    (nearest resize to 224, ImageNet-normalised RGB, depth /255 on three channels; docs/method.md §3.3)."""
    rgb_u8, depth_u8 = _rgb_u8(rgb), _depth_u8(depth)
    image, depth_input = _eval_inputs(rgb_u8, depth_u8, INPUT_SIZE)
    return image[None], depth_input[None]


@torch.inference_mode()
def predict(model: nn.Module, rgb: ImageLike, depth: ImageLike, original_size: bool = False) -> np.ndarray:
    """The saliency map ``div1`` of one RGB-D pair as float32 in [0, 1]: 224x224, or with
    ``original_size`` resized bilinearly (align_corners=False) to the RGB image's H×W."""
    rgb_u8 = _rgb_u8(rgb)
    image, depth_input = dhfr_preprocess(rgb_u8, depth)
    parameter = next(model.parameters())
    saliency = model(image.to(parameter), depth_input.to(parameter))["div1"]
    if original_size:
        height, width = rgb_u8.shape[:2]
        saliency = F.interpolate(saliency, size=(height, width), mode="bilinear", align_corners=False)
    return saliency[0, 0].float().cpu().numpy()
