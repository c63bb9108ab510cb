"""Synthetic scribble-annotated RGB-D scenes, so every script runs without the real data.

A scene is a textured, low-saturation background with one to three salient objects
(ellipses or star polygons) in saturated colours that are also nearer (brighter in depth)
than the background, so saliency is predictable from colour and from depth. Besides the
ground-truth mask it carries the release's training annotations (docs/method.md §3.1): scribbles
(5-px strokes: 1 inside the eroded objects, 0 on the background away from them, 2
elsewhere), an edge map in place of HED and an outer-contour map. Everything is drawn with
numpy/cv2 from one ``numpy.random.Generator``, so a scene is a pure function of its seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STROKE_WIDTH = 5
MAX_EDGE_VALUE = 200


@dataclass(frozen=True)
class SyntheticScene:
    rgb: np.ndarray       # HxWx3 uint8, RGB order
    depth: np.ndarray     # HxW uint8, nearer = brighter
    mask: np.ndarray      # HxW bool, the salient objects (ground truth)
    scribble: np.ndarray  # HxW uint8: 0 background, 1 foreground, 2 unknown
    hed: np.ndarray       # HxW uint8 edge map, 0..MAX_EDGE_VALUE
    contour: np.ndarray   # HxW uint8 outer contour of the objects, 0..255


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey-ish textured colour (HxWx3 float) and a far, gently sloped depth (HxW float)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    grey = rng.uniform(70, 150)
    tint = rng.uniform(-15, 15, size=3)
    frequency = rng.uniform(2, 8, size=2)
    waves = 18 * np.sin(2 * np.pi * (frequency[0] * xx + frequency[1] * yy) + rng.uniform(0, 2 * np.pi))
    texture = 12 * _blurred_noise(rng, (height, width), 3)[..., None] + 4 * _blurred_noise(rng, (height, width, 3), 3)
    colour = grey + tint + waves[..., None] + texture
    depth = rng.uniform(25, 60) + rng.uniform(20, 50) * yy + 4 * _blurred_noise(rng, (height, width), 8)
    return colour, depth


def _object_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One ellipse or star polygon, at least about 30 px across its smaller half-axis."""
    size = min(height, width)
    centre = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height])
    canvas = np.zeros((height, width), np.uint8)
    if rng.random() < 0.5:
        axes = tuple(int(a) for a in rng.uniform(0.12, 0.28, size=2) * size)
        cv2.ellipse(canvas, tuple(int(c) for c in centre), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        corners = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = rng.uniform(0.14, 0.28, corners) * size
        points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(canvas, [points.round().astype(np.int32)], 1)
    return canvas.astype(bool)


def _visible_parts(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each object's pixels not covered by a later (nearer-drawn) object; empty parts dropped."""
    visible = [mask & ~np.logical_or.reduce(masks[index + 1:] or [np.zeros_like(mask)])
               for index, mask in enumerate(masks)]
    return [mask for mask in visible if mask.any()]


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(190, 256), rng.integers(170, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _strokes(rng: np.random.Generator, region: np.ndarray, count: int) -> np.ndarray:
    """``count`` polylines of STROKE_WIDTH px through random points of ``region``, clipped to it."""
    canvas = np.zeros(region.shape, np.uint8)
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return canvas.astype(bool)
    for _ in range(count):
        picks = rng.integers(0, ys.size, size=int(rng.integers(2, 4)))
        points = np.stack([xs[picks], ys[picks]], 1).astype(np.int32)
        cv2.polylines(canvas, [points], False, 1, STROKE_WIDTH)
    return canvas.astype(bool) & region


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _edge_map(rgb: np.ndarray, objects: list[np.ndarray]) -> np.ndarray:
    """HED stand-in: weak blurred texture gradients plus strong blurred object boundaries."""
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.5)
    texture = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    boundaries = np.zeros(grey.shape, np.float32)
    for mask in objects:
        boundaries += cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, _disk(1))
    edges = 0.35 * texture / max(float(texture.max()), 1e-6) + cv2.GaussianBlur(boundaries, (0, 0), 2) * 2.5
    return np.round(np.clip(edges / max(float(edges.max()), 1e-6), 0, 1) * MAX_EDGE_VALUE).astype(np.uint8)


def make_scene(rng: np.random.Generator, min_size: int = 240, max_size: int = 320) -> SyntheticScene:
    """Draw one scene of random size (each side in ``[min_size, max_size]``)."""
    height, width = (int(side) for side in rng.integers(min_size, max_size + 1, size=2))
    colour, depth = _background(rng, height, width)
    objects = _visible_parts([_object_mask(rng, height, width) for _ in range(int(rng.integers(1, 4)))])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for mask in objects:
        texture = _blurred_noise(rng, (height, width, 3), 2)
        colour[mask] = (_saturated_colour(rng) + 8 * texture)[mask]
        cy, cx = yy[mask].mean(), xx[mask].mean()
        bulge = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.15 * max(height, width)) ** 2))
        depth[mask] = (rng.uniform(165, 215) + 25 * bulge)[mask]
    rgb = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    depth = np.clip(np.round(cv2.GaussianBlur(depth, (0, 0), 1.0)), 0, 255).astype(np.uint8)

    salient = np.logical_or.reduce(objects)
    scribble = np.full((height, width), 2, np.uint8)
    background = ~cv2.dilate(salient.astype(np.uint8), _disk(15)).astype(bool)
    scribble[_strokes(rng, background, int(rng.integers(2, 4)))] = 0
    for mask in objects:
        inner = cv2.erode(mask.astype(np.uint8), _disk(6)).astype(bool)
        scribble[_strokes(rng, inner, int(rng.integers(1, 3)))] = 1

    outline = cv2.dilate(salient.astype(np.uint8), _disk(2)).astype(bool) & ~salient
    contour = cv2.GaussianBlur(outline.astype(np.float32) * 255, (3, 3), 0)
    return SyntheticScene(rgb=rgb, depth=depth, mask=salient, scribble=scribble,
                          hed=_edge_map(rgb, objects), contour=np.round(contour).astype(np.uint8))
