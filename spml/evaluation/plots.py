"""Precision-recall and F-measure-vs-threshold curves (PNG), one line per entry of ``curves``.

The test score draws one line per test set; the method comparison one line per method, one
figure per set (its ``title`` names the set).
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot)

from lib.io import atomic_path  # noqa: E402
from spml.evaluation.scores import ScoreCurves  # noqa: E402


def _plot_curves(
    curves: dict[str, ScoreCurves], path: Path, x: str, y: str, xlabel: str, ylabel: str, xmax: float, title: str
) -> Path:
    """One line per set of ``getattr(curve, y)`` against ``getattr(curve, x)``, saved atomically."""
    figure, axes = plt.subplots(figsize=(6, 5))
    for name, curve in curves.items():
        axes.plot(getattr(curve, x), getattr(curve, y), label=name)
    axes.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, xmax), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_pr_curves(
    curves: dict[str, ScoreCurves], path: str | os.PathLike, title: str = "Precision-recall curves"
) -> Path:
    """Precision against recall, one line per entry, written as a PNG to ``path``."""
    return _plot_curves(curves, Path(path), "recall", "precision", "recall", "precision", 1.0, title)


def plot_f_threshold_curves(
    curves: dict[str, ScoreCurves], path: str | os.PathLike, title: str = "F-measure vs threshold"
) -> Path:
    """F-measure (β² = 0.3) against the binarisation threshold 0..255, one line per entry (PNG)."""
    return _plot_curves(curves, Path(path), "thresholds", "fmeasure", "threshold", "F-measure (β²=0.3)", 255.0, title)
