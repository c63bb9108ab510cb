"""Comparing the saliency maps of several methods on the same test sets (docs/method.md §5, field protocol).

Layout, as the field's evaluation toolkits expect it: the ground-truth root holds
``<SET>/GT/<stem>.<ext>`` (or the release layout ``sod/Test/<SET>/GT``); each method folder
holds ``<SET>/<stem>.png``. Every map is scored at the ground truth's resolution with
:class:`spml.evaluation.scores.SaliencyScores` (the test score's metrics), read as the metric
library's users read it (``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``).

Nothing is dropped silently. Per method and set, :class:`MethodSetResult` lists and counts
the *missing* maps (``<stem>.png`` of a ground-truth stem that is absent; all of them when the method has
no folder for the set), the *extra* files (anything in the method's set folder that is not the
map of a ground-truth stem), the *resized* maps (another size than the ground truth: resized
bilinearly to it, then scored) and the *unreadable* maps (not scored). Unreadable ground-truth
files are listed per set; their images are scored for no method. A method folder that holds
images itself and no ``<SET>/`` folder (likely one set's maps) is pointed out with its missing
set folders.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from spml.data.errors import DataError
from spml.data.lists import IMAGE_EXTENSIONS, TEST_FOLDERS, standard_set_order, pair_by_stem
from spml.evaluation.maps_io import read_ground_truth
from spml.evaluation.scores import FIELD, SCORE_KEYS, SaliencyScores, ScoreCurves, image_scores, resize_to_ground_truth

MAP_SUFFIX = ".png"
PROBLEM_KINDS = ("missing", "extra", "resized", "unreadable")
TABLE_COLUMNS = (*SCORE_KEYS, *PROBLEM_KINDS)
GT_FOLDER = TEST_FOLDERS["gt"]
LISTED_NAMES = 5
"""Names shown per problem in the text summary (the JSON report lists all)."""


class ComparisonError(ValueError):
    """Unusable comparison input (a missing folder, an unknown set); the message names it."""


@dataclass(frozen=True)
class Resize:
    """A map scored after resizing it from ``map_size`` to the ground truth's ``gt_size`` (H, W)."""

    file: str
    map_size: tuple[int, int]
    gt_size: tuple[int, int]


@dataclass
class MethodSetResult:
    """Scores and file problems of one method on one set; :meth:`step` once per ground-truth image."""

    folder: Path | None
    """The method's folder of this set's maps (None: none was given for the set)."""
    found: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    resized: list[Resize] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    per_image: dict[str, dict[str, float | int]] | None = None
    scores: SaliencyScores = field(default_factory=lambda: SaliencyScores(FIELD))
    root_images: int = 0
    """With a missing ``folder``: the image files directly in its parent, the method's folder,
    which holds no ``<SET>/`` folder (:func:`root_images`); 0 otherwise."""

    def step(self, name: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score the map ``name`` against its ground truth, resizing (and recording) a map of another size."""
        if pred.shape != gt.shape:
            self.resized.append(Resize(name, pred.shape[:2], gt.shape[:2]))
            pred = resize_to_ground_truth(pred, gt)
        self.scores.step(pred, gt)
        if self.per_image is not None:
            self.per_image[name] = image_scores(pred, gt)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in PROBLEM_KINDS}

    def row(self) -> dict[str, float | int | None]:
        """The table row: the scores ("–" when no map was scored, ``n`` = 0) and the problem counts."""
        if self.scores.count:
            results = self.scores.results()
        else:
            results = {key: None for key in SCORE_KEYS} | {"n": 0}
        return results | self.counts()

    def curves(self) -> ScoreCurves | None:
        return self.scores.curves() if self.scores.count else None

    def problems(self) -> dict:
        """JSON-ready listing of every problem."""
        return {
            "folder": None if self.folder is None else str(self.folder),
            "folder_found": self.found,
            "missing": self.missing,
            "extra": self.extra,
            "resized": [{"file": r.file, "map_size": list(r.map_size), "gt_size": list(r.gt_size)} for r in self.resized],
            "unreadable": self.unreadable,
            "root_images": self.root_images,
        }


@dataclass
class SetResult:
    """One set's ground truth and every method's :class:`MethodSetResult`, in the methods' order."""

    name: str
    gt_dir: Path
    num_images: int
    methods: dict[str, MethodSetResult]
    gt_unreadable: list[str] = field(default_factory=list)

    def table(self) -> dict[str, dict[str, float | int | None]]:
        return {method: result.row() for method, result in self.methods.items()}

    def curves(self) -> dict[str, ScoreCurves]:
        """Curves of the methods that scored at least one map."""
        return {method: curve for method, result in self.methods.items() if (curve := result.curves()) is not None}

    def per_image(self) -> dict[str, dict[str, dict[str, float | int]]]:
        return {method: result.per_image for method, result in self.methods.items() if result.per_image is not None}

    def problems(self) -> dict:
        """JSON-ready ``{"gt_unreadable": [...], "methods": {METHOD: listing}}``."""
        return {"gt_unreadable": self.gt_unreadable,
                "methods": {method: result.problems() for method, result in self.methods.items()}}


# ----------------------------------------------------------------------------- folders

def ground_truth_sets(gt_root: str | os.PathLike, names: Sequence[str] | None = None) -> dict[str, Path]:
    """``{SET: its GT folder}`` under ``gt_root/sod/Test`` (else ``gt_root``): standard sets first.

    Raises :class:`ComparisonError` for a missing root, a requested set without ``GT/`` or no set at all.
    """
    root = Path(gt_root)
    if not root.is_dir():
        raise ComparisonError(f"ground-truth root not found: {root}")
    base = root / "sod" / "Test" if (root / "sod" / "Test").is_dir() else root
    found = {folder.name: folder / GT_FOLDER for folder in base.iterdir() if (folder / GT_FOLDER).is_dir()}
    if names:
        unknown = [name for name in names if name not in found]
        if unknown:
            raise ComparisonError(f"no ground truth {base}/{unknown[0]}/{GT_FOLDER} for set '{unknown[0]}'")
        return {name: found[name] for name in names}
    if not found:
        raise ComparisonError(f"no <SET>/{GT_FOLDER} folder under {base}")
    return {name: found[name] for name in sorted(found, key=standard_set_order)}


def ground_truth_files(gt_dir: Path) -> dict[str, Path]:
    """Ground-truth image files by stem (any image extension), sorted by stem."""
    paired, _ = pair_by_stem({"gt": gt_dir})
    return {files["gt"].stem: files["gt"] for files in paired}


def root_images(root: Path, set_names: Iterable[str]) -> int:
    """The image files directly in the method folder ``root`` if it holds no ``<SET>/`` folder of
    ``set_names`` (it looks like one set's maps, given as ``NAME=DIR``), else 0."""
    if any((root / name).is_dir() for name in set_names):
        return 0
    return sum(1 for path in root.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())


def method_files(set_dir: Path, stems: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """The maps ``<stem>.png`` of the ground-truth ``stems`` found in ``set_dir``, and the names of
    every other entry there (extra files), sorted."""
    wanted = set(stems)
    maps: dict[str, Path] = {}
    extra: list[str] = []
    for path in sorted(set_dir.iterdir()):
        if path.suffix.lower() == MAP_SUFFIX and path.stem in wanted and path.is_file():
            maps[path.stem] = path
        else:
            extra.append(path.name)
    return maps, extra


def read_map(path: Path) -> np.ndarray | None:
    """HxW uint8 map as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` gives it; None if unreadable."""
    return cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)


# ----------------------------------------------------------------------------- scoring

def compare_set(
    name: str,
    gt_dir: Path,
    method_dirs: Mapping[str, Path | None],
    per_image: bool = False,
    advance: Callable[[int], None] = lambda count: None,
    method_root_images: Mapping[str, int] | None = None,
) -> SetResult:
    """Score every method's maps of set ``name`` against ``gt_dir`` (one GT read per image).

    ``method_dirs`` maps a method name to the folder of its ``<stem>.png`` maps of this set
    (None or a missing folder: every map is missing); ``advance(1)`` is called after each
    ground-truth image (progress bars). ``method_root_images``: :func:`root_images` of the
    methods whose set folders are ``<root>/<SET>``, reported with a missing one.
    """
    gt_files = ground_truth_files(gt_dir)
    methods: dict[str, MethodSetResult] = {}
    maps: dict[str, dict[str, Path]] = {}
    for method, set_dir in method_dirs.items():
        found = set_dir is not None and set_dir.is_dir()
        result = MethodSetResult(set_dir, found, per_image={} if per_image else None)
        if set_dir is not None and not found:
            result.root_images = (method_root_images or {}).get(method, 0)
        maps[method], result.extra = method_files(set_dir, list(gt_files)) if result.found else ({}, [])
        result.missing = [stem + MAP_SUFFIX for stem in gt_files if stem not in maps[method]]
        methods[method] = result
    outcome = SetResult(name, gt_dir, len(gt_files), methods)
    for stem, gt_path in gt_files.items():
        try:
            gt = read_ground_truth(gt_path)
        except DataError:
            outcome.gt_unreadable.append(gt_path.name)
            advance(1)
            continue
        for method, result in methods.items():
            if stem not in maps[method]:
                continue
            pred = read_map(maps[method][stem])
            if pred is None:
                result.unreadable.append(maps[method][stem].name)
            else:
                result.step(gt_path.name, pred, gt)
        advance(1)
    return outcome


# ----------------------------------------------------------------------------- reports

def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES])
    return shown + (f", … ({len(names)} in all)" if len(names) > LISTED_NAMES else "")


def problem_lines(result: SetResult) -> list[str]:
    """One line per method (and for the ground truth) that has a problem on this set; empty if none."""
    lines = []
    if result.gt_unreadable:
        lines.append(f"{result.name} / ground truth: {len(result.gt_unreadable)} unreadable "
                     f"(not scored for any method): {_names(result.gt_unreadable)}")
    for method, outcome in result.methods.items():
        parts = []
        if outcome.folder is None:
            parts.append(f"no folder given for {result.name}: all {len(outcome.missing)} maps missing")
        elif not outcome.found:
            parts.append(f"no folder {outcome.folder}: all {len(outcome.missing)} maps missing")
            if outcome.root_images:
                root = outcome.folder.parent
                parts[-1] += (f" ({root} holds {outcome.root_images} images itself and no <SET>/ folder: "
                              f"for one set's maps use --method {method}:{result.name}={root})")
        elif outcome.missing:
            parts.append(f"{len(outcome.missing)} missing ({_names(outcome.missing)})")
        if outcome.extra:
            parts.append(f"{len(outcome.extra)} extra ({_names(outcome.extra)})")
        if outcome.resized:
            sizes = [f"{r.file} {r.map_size[1]}x{r.map_size[0]}->{r.gt_size[1]}x{r.gt_size[0]}" for r in outcome.resized]
            parts.append(f"{len(outcome.resized)} resized to the GT size ({_names(sizes)})")
        if outcome.unreadable:
            parts.append(f"{len(outcome.unreadable)} unreadable ({_names(outcome.unreadable)})")
        if parts:
            lines.append(f"{result.name} / {method}: " + "; ".join(parts))
    return lines
