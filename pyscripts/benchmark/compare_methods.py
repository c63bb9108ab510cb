"""Compare methods' saliency maps on the same test sets (field protocol, docs/method.md §5).

Each ``--method NAME=DIR`` folder holds ``<SET>/<stem>.png`` maps (``--method NAME:SET=DIR``:
DIR holds that one set's maps, ``<stem>.png``); ``--gt-root`` holds ``<SET>/GT/<stem>.png``
(or the release layout ``sod/Test/<SET>/GT``). Every map is scored at
the ground truth's resolution with the test score's metrics (pysodmetrics). Written under
``--out`` (atomically):

- ``<SET>/scores.{md,csv,json}``: one row per method (S, F, E, wF, MAE, n and the counts of
  missing, extra, resized and unreadable maps; "–" for a method without maps of the set),
- ``<SET>/pr_curves.png`` and ``<SET>/f_threshold_curves.png``: one line per method,
- ``<SET>/per_image.json`` with ``--per-image``: every map's own scores,
- ``comparison.md`` (all tables and problems) and ``problems.json`` (every problem file listed,
  ``{SET: {"gt_unreadable": [...], "methods": {METHOD: {...}}}}``).

    python pyscripts/benchmark/compare_methods.py --gt-root DIR --method NAME[:SET]=DIR [--method ...] \
        [--sets SET ...] [--per-image] --out DIR

Exit status 2 with one line on stderr for unusable arguments (bad ``--method``, missing folder,
unknown set, an ``--out`` that cannot be written), found before anything is scored; problems
with individual files are reported, not fatal (a ``NAME=DIR`` folder holding one set's maps
itself, with no ``<SET>/`` folder, is pointed out with the ``NAME:SET=DIR`` to use). Exit status
1 when writing fails midway; an ``--out`` this run created is then removed, as on Ctrl-C (one
line, exit status 130).
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lib.cli import USAGE_ERROR, ArgumentParser
from lib.interrupts import exit_status
from lib.io import WriteError, atomic_write_text, output_folder_problem
from spml.data.errors import DataError
from spml.evaluation.comparison import (
    TABLE_COLUMNS,
    ComparisonError,
    SetResult,
    compare_set,
    ground_truth_files,
    ground_truth_sets,
    problem_lines,
    root_images,
)
from spml.evaluation.plots import plot_f_threshold_curves, plot_pr_curves
from spml.evaluation.scores import FIELD
from spml.evaluation.tables import markdown_table, write_score_tables

METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class UsageError(ValueError):
    """A bad command line; the message names the culprit."""


@dataclass
class MethodFolders:
    """Where one method's maps are: a root holding ``<SET>/``, and/or one folder per named set."""

    root: Path | None = None
    sets: dict[str, Path] = field(default_factory=dict)

    def set_dir(self, name: str) -> Path | None:
        """The folder of set ``name``'s maps (a per-set folder wins over ``root/<SET>``)."""
        return self.sets.get(name) or (self.root / name if self.root else None)


def parse_method(text: str) -> tuple[str, str | None, Path]:
    """``NAME=DIR`` -> (NAME, None, DIR); ``NAME:SET=DIR`` -> (NAME, SET, DIR).
    NAME is letters, digits and ``_ . + -``."""
    key, sep, folder = text.partition("=")
    name, colon, set_name = key.partition(":")
    if not sep or not folder or (colon and not set_name):
        raise UsageError(f"--method '{text}': expected NAME=DIR or NAME:SET=DIR")
    if not METHOD_NAME.fullmatch(name):
        raise UsageError(f"--method '{text}': NAME must be letters, digits and _ . + - (starting with a letter or digit)")
    return name, set_name or None, Path(folder)


def method_folders(specs: list[str], gt_sets: dict[str, Path]) -> dict[str, MethodFolders]:
    """The ``--method`` options by NAME, in order of first appearance; folders must exist, each
    root or set be given once per method, and a named set have ground truth."""
    methods: dict[str, MethodFolders] = {}
    for spec in specs:
        name, set_name, folder = parse_method(spec)
        method = methods.setdefault(name, MethodFolders())
        if (method.root is not None and set_name is None) or set_name in method.sets:
            raise UsageError(f"--method '{spec}': {name}{':' + set_name if set_name else ''} given twice")
        if not folder.is_dir():
            raise UsageError(f"--method '{spec}': folder not found: {folder}")
        if set_name is None:
            method.root = folder
        elif set_name in gt_sets:
            method.sets[set_name] = folder
        else:
            raise UsageError(f"--method '{spec}': no ground truth for set '{set_name}' among {', '.join(gt_sets)}")
    return methods


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt-root", required=True, type=Path, help="holds <SET>/GT/ (or sod/Test/<SET>/GT/)")
    parser.add_argument("--method", action="append", required=True, metavar="NAME[:SET]=DIR",
                        help="a method's maps: DIR/<SET>/<stem>.png, or with :SET DIR/<stem>.png "
                             "(repeat for several methods or sets)")
    parser.add_argument("--sets", nargs="+", metavar="SET", help="sets to score (default: every set with GT/)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--per-image", action="store_true", help="also write every map's own scores")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def write_set_outputs(result: SetResult, out: Path, per_image: bool) -> list[Path]:
    """Tables, curves and (optionally) per-image scores of one set under ``out/<SET>``."""
    set_dir = out / result.name
    title = f"{result.name}: {result.num_images} images"
    paths = write_score_tables(result.table(), set_dir, FIELD, "method", TABLE_COLUMNS, title)
    curves = result.curves()
    if curves:
        paths.append(plot_pr_curves(curves, set_dir / "pr_curves.png", f"{result.name}: precision-recall"))
        paths.append(plot_f_threshold_curves(curves, set_dir / "f_threshold_curves.png", f"{result.name}: F-measure"))
    if per_image:
        atomic_write_text(json.dumps(result.per_image(), indent=2) + "\n", set_dir / "per_image.json")
        paths.append(set_dir / "per_image.json")
    return paths


def summary(results: list[SetResult]) -> str:
    """All tables and problem lines, as printed and saved in ``comparison.md``."""
    blocks = []
    for result in results:
        title = f"{result.name}: {result.num_images} images"
        block = markdown_table(result.table(), FIELD, "method", TABLE_COLUMNS, title)
        problems = problem_lines(result)
        lines = problems or ["no missing, extra, resized or unreadable file"]
        block += "\n" + "".join(f"- {line}\n" for line in lines)
        blocks.append(block)
    return "\n".join(blocks)


def run(args: argparse.Namespace) -> list[SetResult]:
    problem = output_folder_problem(args.out)
    if problem is not None:
        raise UsageError(f"--out {args.out}: {problem}")
    sets = ground_truth_sets(args.gt_root, args.sets)
    all_sets = ground_truth_sets(args.gt_root)
    methods = method_folders(args.method, all_sets)
    images_in_roots = {method: root_images(folders.root, all_sets) for method, folders in methods.items() if folders.root}
    total = sum(len(ground_truth_files(gt_dir)) for gt_dir in sets.values())
    results = []
    with tqdm(total=total, unit="img", disable=args.no_progress or None) as progress:
        for name, gt_dir in sets.items():
            progress.set_description(name)
            set_dirs = {method: folders.set_dir(name) for method, folders in methods.items()}
            result = compare_set(name, gt_dir, set_dirs, args.per_image, progress.update, images_in_roots)
            write_set_outputs(result, args.out, args.per_image)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    created = not args.out.exists()
    try:
        results = run(args)
        text = summary(results)
        atomic_write_text(text, args.out / "comparison.md")
        problems = {result.name: result.problems() for result in results}
        atomic_write_text(json.dumps(problems, indent=2) + "\n", args.out / "problems.json")
    except (UsageError, ComparisonError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except (WriteError, KeyboardInterrupt) as error:  # --out was checked up front: a full disk, say, or Ctrl-C
        if created:  # leave no partial results behind
            shutil.rmtree(args.out, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n" + text)
    print(f"tables, curves and reports: {args.out} (comparison.md, problems.json, <SET>/scores.*)")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "compare_methods.py"))
