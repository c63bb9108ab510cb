"""Scan a data root in the release layout and (re)write its training list (docs/method.md §3.1).

Usage: python pyscripts/tools/build_lists.py --root DIR [--train-list PATH]

Training samples (``DIR/sod/RGB_Train`` ...) go to ``DIR/lists/train.txt`` (or
``--train-list``). Files are paired by stem; unpaired stems are reported as warnings and left
out. An existing list is overwritten (atomically). Test sets need no list: test score and
predict scan ``DIR/sod/Test/<SET>`` (or ``DIR/<SET>``) themselves.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import logging
from pathlib import Path

from spml.data.lists import TRAIN_FOLDERS, default_train_list, scan_train_samples, write_train_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="data root to scan")
    parser.add_argument("--train-list", type=Path, default=None,
                        help="where to write the training list (default DIR/lists/train.txt)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.root.is_dir():
        parser.error(f"data root not found: {args.root}")

    if not (args.root / TRAIN_FOLDERS["rgb"]).is_dir():
        sys.exit(f"error: no training folder {args.root / TRAIN_FOLDERS['rgb']}")
    samples = scan_train_samples(args.root)
    train_list = args.train_list or default_train_list(args.root)
    write_train_list(samples, train_list, args.root)
    print(f"wrote {train_list} ({len(samples)} training samples)")


if __name__ == "__main__":
    main()
