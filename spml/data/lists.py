"""The training list file, and finding training and test samples by scanning a data root (docs/method.md §3.1).

The training list has one sample per line, space-separated paths relative to the data root:
``rgb depth scribble hed contour``. Reading checks every line and every file; an error names
``list:line``. Test sets have no list: they are scanned.

Scanning pairs the files of the release layout by file stem, whatever their image
extension: ``sod/RGB_Train``, ``sod/Depth_Train``, ``sod/scribble_tip``, ``sod/hed``,
``sod/contours_sum`` for training; ``<SET>/{RGB,depth[,GT]}`` under ``sod/Test/`` (or,
when that folder does not exist, under the data root itself) for testing. Unpaired stems
are reported with a warning and skipped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

from lib.io import atomic_write_text, output_file_problem
from spml.config import TEST_SETS
from spml.data.errors import DataError, logger

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
TRAIN_FOLDERS = {
    "rgb": "sod/RGB_Train",
    "depth": "sod/Depth_Train",
    "scribble": "sod/scribble_tip",
    "hed": "sod/hed",
    "contour": "sod/contours_sum",
}
TEST_FOLDERS = {"rgb": "RGB", "depth": "depth", "gt": "GT"}


class TrainSample(NamedTuple):
    rgb: Path
    depth: Path
    scribble: Path
    hed: Path
    contour: Path


class TestSample(NamedTuple):
    __test__ = False  # not a pytest test class, despite its name
    rgb: Path
    depth: Path
    gt: Path | None


def default_train_list(data_root: str | os.PathLike) -> Path:
    return Path(data_root) / "lists" / "train.txt"


def train_list_location(data_root: str | os.PathLike, spare_folder: str | os.PathLike) -> Path:
    """Where a run finds or builds its training list: :func:`default_train_list`, unless that file
    is absent and cannot be written (read-only data, :func:`lib.io.output_file_problem`); then
    ``<spare_folder>/lists/train.txt``."""
    list_path = default_train_list(data_root)
    if not list_path.is_file() and output_file_problem(list_path) is not None:
        return Path(spare_folder) / "lists" / "train.txt"
    return list_path


# ----------------------------------------------------------------------------- reading

def _read_rows(list_path: Path, data_root: Path, allowed_columns: Sequence[int],
               header: str) -> list[tuple[int, list[Path]]]:
    """(line number, absolute paths) of every non-blank line; checks columns and files."""
    try:
        text = list_path.read_text()
    except FileNotFoundError:
        raise DataError(f"list file not found: {list_path}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) not in allowed_columns:
            raise DataError(f"{list_path}:{number}: expected {header}, got {len(columns)} column(s)")
        paths = [Path(os.path.abspath(data_root / column)) for column in columns]
        for path in paths:
            if not path.is_file():
                raise DataError(f"{list_path}:{number}: missing file {path}")
        rows.append((number, paths))
    if not rows:
        raise DataError(f"{list_path}: list is empty")
    return rows


def read_train_list(list_path: str | os.PathLike, data_root: str | os.PathLike) -> list[TrainSample]:
    """Read a 5-column training list; paths are resolved against ``data_root``."""
    rows = _read_rows(Path(list_path), Path(data_root), (5,), "5 columns 'rgb depth scribble hed contour'")
    return [TrainSample(*paths) for _, paths in rows]


# ----------------------------------------------------------------------------- writing

def _relative(path: Path, data_root: Path) -> str:
    relative = Path(os.path.relpath(path, data_root)).as_posix()
    if any(character.isspace() for character in relative):
        raise DataError(f"cannot write a list entry with white space in its path: {path}")
    return relative


def _write_rows(rows: Sequence[Sequence[Path]], list_path: str | os.PathLike,
                data_root: str | os.PathLike) -> None:
    if not rows:
        raise DataError(f"refusing to write an empty list: {list_path}")
    root = Path(os.path.abspath(data_root))
    lines = (" ".join(_relative(Path(os.path.abspath(path)), root) for path in row) for row in rows)
    atomic_write_text("\n".join(lines) + "\n", list_path)


def write_train_list(samples: Sequence[TrainSample], list_path: str | os.PathLike,
                     data_root: str | os.PathLike) -> None:
    """Write a training list (atomically) with paths relative to ``data_root``."""
    _write_rows(samples, list_path, data_root)


# ----------------------------------------------------------------------------- scanning

def _index_folder(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two images with one stem are ambiguous."""
    if not folder.is_dir():
        raise DataError(f"missing data folder: {folder}")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in by_stem:
            raise DataError(f"two images with the stem '{path.stem}': {by_stem[path.stem]} and {path}")
        by_stem[path.stem] = path
    return by_stem


def pair_by_stem(folders: dict[str, Path]) -> tuple[list[dict[str, Path]], list[Path]]:
    """Pair the image files of several folders by stem: one ``{role: path}`` dict per stem
    present in every folder (sorted by stem), and the files whose stem is missing somewhere."""
    indexes = {role: _index_folder(folder) for role, folder in folders.items()}
    stem_sets = [set(index) for index in indexes.values()]
    paired = set.intersection(*stem_sets)
    unpaired = [index[stem] for index in indexes.values() for stem in sorted(set(index) - paired)]
    return [{role: indexes[role][stem] for role in folders} for stem in sorted(paired)], unpaired


def pair_inputs(rgb: Path, depth: Path) -> tuple[list[TestSample], list[Path]]:
    """Test samples (without ground truth) of two image files, or of two folders paired by
    stem, and the unpaired files; no pair at all raises DataError saying where it looked."""
    if rgb.is_file() and depth.is_file():
        return [TestSample(rgb, depth, None)], []
    if not (rgb.is_dir() and depth.is_dir()):
        problems = [f"{flag} {path} " + ("is a folder" if path.is_dir() else "is a file" if path.exists()
                                         else "does not exist") for flag, path in (("--rgb", rgb), ("--depth", depth))]
        raise DataError(f"--rgb and --depth must both be image files or both folders: {'; '.join(problems)}")
    paired, unpaired = pair_by_stem({"rgb": rgb, "depth": depth})
    if not paired:
        counts = {role: len(_index_folder(folder)) for role, folder in (("RGB", rgb), ("depth", depth))}
        raise DataError(f"no RGB/depth pairs found (images paired by file stem): {rgb} holds {counts['RGB']} "
                        f"image(s), {depth} holds {counts['depth']}")
    return [TestSample(files["rgb"], files["depth"], None) for files in paired], unpaired


def _pair_and_warn(folders: dict[str, Path], where: Path) -> list[dict[str, Path]]:
    """:func:`pair_by_stem`, logging a warning that lists the skipped unpaired stems."""
    paired, unpaired = pair_by_stem(folders)
    if unpaired:
        stems = sorted({path.stem for path in unpaired})
        shown = ", ".join(stems[:20]) + (f", ... ({len(stems)} in all)" if len(stems) > 20 else "")
        logger.warning("%s: skipping %d unpaired file stem(s) (not in all of %s): %s",
                       where, len(stems), "/".join(folders), shown)
    return paired


def scan_train_samples(data_root: str | os.PathLike) -> list[TrainSample]:
    """Pair the training files of the release layout by stem (see module docstring)."""
    root = Path(os.path.abspath(data_root))
    paired = _pair_and_warn({role: root / sub for role, sub in TRAIN_FOLDERS.items()}, root / "sod")
    if not paired:
        raise DataError(f"no complete training sample under {root / 'sod'}")
    return [TrainSample(**files) for files in paired]


def standard_set_order(name: str) -> tuple[int, str]:
    """Standard sets first in ``TEST_SETS`` order, then the others alphabetically."""
    return (TEST_SETS.index(name), "") if name in TEST_SETS else (len(TEST_SETS), name)


def scan_test_sets(data_root: str | os.PathLike) -> dict[str, list[TestSample]]:
    """Test sets under ``<data_root>/sod/Test`` (else ``<data_root>``): subfolders with RGB/ and depth/."""
    root = Path(os.path.abspath(data_root))
    base = root / "sod" / "Test"
    if not base.is_dir():
        base = root
    set_folders = [folder for folder in base.iterdir()
                   if (folder / TEST_FOLDERS["rgb"]).is_dir() and (folder / TEST_FOLDERS["depth"]).is_dir()]
    sets: dict[str, list[TestSample]] = {}
    for folder in sorted(set_folders, key=lambda folder: standard_set_order(folder.name)):
        roles = [role for role, sub in TEST_FOLDERS.items() if role != "gt" or (folder / sub).is_dir()]
        paired = _pair_and_warn({role: folder / TEST_FOLDERS[role] for role in roles}, folder)
        if not paired:
            logger.warning("%s: test set has no complete sample; skipped", folder)
            continue
        sets[folder.name] = [TestSample(files["rgb"], files["depth"], files.get("gt")) for files in paired]
    return sets


def ensure_train_list(data_root: str | os.PathLike, list_path: str | os.PathLike | None = None) -> Path:
    """The training list to use: ``list_path`` (default ``<data_root>/lists/train.txt``) if it
    exists, else one written there by scanning ``data_root``."""
    path = Path(list_path) if list_path else default_train_list(data_root)
    if not path.is_file():
        samples = scan_train_samples(data_root)
        write_train_list(samples, path, data_root)
        logger.info("wrote %s (%d samples scanned from %s)", path, len(samples), data_root)
    return path
