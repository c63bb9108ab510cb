"""Saliency metrics of one test set under the field or the release protocol (docs/method.md §5).

Every number comes from the standard library's classes (``py_sod_metrics``): S-measure
(α = 0.5), F-measure (β² = 0.3: max / mean / adaptive), E-measure (max / mean / adaptive),
weighted F-measure (β² = 1) and MAE. :class:`SaliencyScores` keeps their ``step`` / results
protocol: one ``step(pred, gt)`` per image (only running accumulators are kept), then
``results()`` and ``curves()``.

Both protocols take the saved 8-bit saliency map and the ground truth as
``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` returns it:

- ``field`` (default): the map has the ground truth's size; pysodmetrics' own input
  preparation is used (ground truth ``> 128``, map ``/255`` then min-max normalised per
  image), so the numbers equal pysodmetrics run on the saved files.
- ``release``: the map is 224×224; the ground truth is resized to 224×224 with PIL's
  bilinear filter (what the release's torchvision ``Resize`` does to a PIL image), divided
  by 255 and binarised with ``> 0.5``; the map is divided by 255 and min-max normalised per
  image (a constant map stays as it is). The metric classes then run on these arrays
  without further preparation.

:meth:`SaliencyScores.step` refuses a field-protocol map whose size is not the ground truth's.
Maps made elsewhere (method comparison) are brought to it first with
:func:`resize_to_ground_truth`, and the caller reports every such resize.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import py_sod_metrics
from PIL import Image

from network.sfnet import INPUT_SIZE

FIELD = "field"
RELEASE = "release"
PROTOCOLS = (FIELD, RELEASE)
RELEASE_SIZE = INPUT_SIZE  # the release scores maps at the network's input size
SCORE_KEYS = ("S", "maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "wF", "MAE", "n")


@dataclass(frozen=True)
class ScoreCurves:
    """Set-level curves over the 256 binarisation thresholds 0..255, in ascending order.

    ``precision``/``recall``/``fmeasure`` are the per-image curves of pysodmetrics'
    ``Fmeasure`` averaged over the images (``fmeasure`` is the F-measure-vs-threshold curve,
    its max and mean are ``maxF`` and ``meanF``).
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    fmeasure: np.ndarray


def release_ground_truth(gt: np.ndarray, size: int = RELEASE_SIZE) -> np.ndarray:
    """Ground truth as the release scores it: PIL-bilinear resize to ``size``², /255, > 0.5."""
    resized = Image.fromarray(gt).resize((size, size), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255.0 > 0.5


def minmax_normalise(pred: np.ndarray) -> np.ndarray:
    """An 8-bit map as float64 in [0, 1], min-max normalised unless it is constant."""
    pred = pred.astype(np.float64) / 255.0
    low, high = pred.min(), pred.max()
    return (pred - low) / (high - low) if high > low else pred


def resize_to_ground_truth(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """An 8-bit map resized bilinearly (``cv2.INTER_LINEAR``) to the ground truth's H×W (field protocol)."""
    return cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)


def fmeasure() -> py_sod_metrics.Fmeasure:
    """pysodmetrics' ``Fmeasure`` (β² = 0.3), without the notice it prints at construction that
    ``FmeasureV2`` succeeds it: its numbers are the field's reference ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return py_sod_metrics.Fmeasure(beta=0.3)


class SaliencyScores:
    """Accumulates the field-standard saliency metrics of one test set, one image per step."""

    def __init__(self, protocol: str = FIELD) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown scoring protocol '{protocol}' (expected one of {PROTOCOLS})")
        self.protocol = protocol
        self._fmeasure = fmeasure()
        self._metrics = (
            self._fmeasure,
            py_sod_metrics.Smeasure(),
            py_sod_metrics.Emeasure(),
            py_sod_metrics.WeightedFmeasure(),
            py_sod_metrics.MAE(),
        )
        self.count = 0

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one image: ``pred`` the saved 8-bit map, ``gt`` the 8-bit ground truth (H×W)."""
        if pred.dtype != np.uint8 or gt.dtype != np.uint8 or pred.ndim != 2 or gt.ndim != 2:
            raise ValueError(
                f"expected two 8-bit grey maps, got {pred.dtype}{pred.shape} and {gt.dtype}{gt.shape}"
            )
        if self.protocol == FIELD:
            if pred.shape != gt.shape:
                raise ValueError(f"map size {pred.shape} differs from ground truth size {gt.shape}")
            for metric in self._metrics:
                metric.step(pred, gt)
        else:
            if pred.shape != (RELEASE_SIZE, RELEASE_SIZE):
                raise ValueError(f"release protocol expects {RELEASE_SIZE}x{RELEASE_SIZE} maps, got {pred.shape}")
            pred_01, gt_mask = minmax_normalise(pred), release_ground_truth(gt)
            for metric in self._metrics:
                metric.step(pred_01, gt_mask, normalize=False)
        self.count += 1

    def results(self) -> dict[str, float | int]:
        """The set's scores keyed as :data:`SCORE_KEYS` (``n`` = number of images)."""
        if self.count == 0:
            raise ValueError("no image was scored")
        fmeasure, smeasure, emeasure, weighted_f, mae = (m.get_results() for m in self._metrics)
        f_curve, e_curve = fmeasure["fm"]["curve"], emeasure["em"]["curve"]
        return {
            "S": float(smeasure["sm"]),
            "maxF": float(f_curve.max()),
            "meanF": float(f_curve.mean()),
            "adpF": float(fmeasure["fm"]["adp"]),
            "maxE": float(e_curve.max()),
            "meanE": float(e_curve.mean()),
            "adpE": float(emeasure["em"]["adp"]),
            "wF": float(weighted_f["wfm"]),
            "MAE": float(mae["mae"]),
            "n": self.count,
        }

    def curves(self) -> ScoreCurves:
        """Precision, recall and F-measure against the threshold (pysodmetrics orders them 255..0)."""
        if self.count == 0:
            raise ValueError("no image was scored")
        results = self._fmeasure.get_results()
        return ScoreCurves(
            thresholds=np.arange(256),
            precision=np.flip(results["pr"]["p"]),
            recall=np.flip(results["pr"]["r"]),
            fmeasure=np.flip(results["fm"]["curve"]),
        )


def image_scores(pred: np.ndarray, gt: np.ndarray, protocol: str = FIELD) -> dict[str, float | int]:
    """The scores of one image alone (a fresh :class:`SaliencyScores`, one step), keyed as :data:`SCORE_KEYS`."""
    scores = SaliencyScores(protocol)
    scores.step(pred, gt)
    return scores.results()
