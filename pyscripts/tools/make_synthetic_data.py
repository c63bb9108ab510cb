"""Write a small synthetic scribble RGB-D dataset in the release layout, with its training list.

Usage: python pyscripts/tools/make_synthetic_data.py --root DIR [--num-train N] [--num-test N] [--seed S]

Layout (as the release's data root): ``DIR/sod/RGB_Train/*.jpg``, ``Depth_Train/*.bmp``,
``scribble_tip/*.png`` (0/1/2), ``hed/*.jpg``, ``contours_sum/*.png`` and
``DIR/sod/Test/<SET>/{RGB/*.jpg, depth/*.bmp, GT/*.png}`` for the sets SYN-A and SYN-B;
training list ``DIR/lists/train.txt``. Scene i of a split depends only on (seed, split, i), so the same
arguments give identical bytes. Every file is written atomically.

DIR must be new or an empty folder: scenes left by an earlier run with other counts would be
picked up by a later scan. A DIR that is not empty, or cannot be created, stops the tool with one
line and exit status 2 before anything is written; a write that fails midway (a full disk)
removes what was written (exit status 1), and so does Ctrl-C (one line, exit status 130).
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lib.cli import ArgumentParser, non_negative_int, positive_int
from lib.interrupts import exit_status
from lib.io import WriteError, output_folder_problem
from spml.data.image_io import write_image
from spml.data.lists import TEST_FOLDERS, TRAIN_FOLDERS, TestSample, TrainSample, default_train_list, write_train_list
from spml.data.synthetic import make_scene

TEST_SET_NAMES = ("SYN-A", "SYN-B")
ENCODE_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3], ".bmp": []}


def write_train_split(root: Path, count: int, seed: int) -> list[TrainSample]:
    samples = []
    for index in tqdm(range(count), desc="train scenes", unit="scene"):
        scene = make_scene(np.random.default_rng([seed, 0, index]))
        stem = f"syn_{index:05d}"
        sample = TrainSample(
            rgb=root / TRAIN_FOLDERS["rgb"] / f"{stem}.jpg",
            depth=root / TRAIN_FOLDERS["depth"] / f"{stem}.bmp",
            scribble=root / TRAIN_FOLDERS["scribble"] / f"{stem}.png",
            hed=root / TRAIN_FOLDERS["hed"] / f"{stem}.jpg",
            contour=root / TRAIN_FOLDERS["contour"] / f"{stem}.png",
        )
        for path, image in zip(sample, (scene.rgb, scene.depth, scene.scribble, scene.hed, scene.contour)):
            write_image(image, path, ENCODE_PARAMS[path.suffix])
        samples.append(sample)
    return samples


def write_test_split(set_dir: Path, split: int, count: int, seed: int) -> list[TestSample]:
    samples = []
    for index in tqdm(range(count), desc=f"{set_dir.name} scenes", unit="scene"):
        scene = make_scene(np.random.default_rng([seed, split, index]))
        stem = f"{set_dir.name.lower().replace('-', '_')}_{index:05d}"
        sample = TestSample(
            rgb=set_dir / TEST_FOLDERS["rgb"] / f"{stem}.jpg",
            depth=set_dir / TEST_FOLDERS["depth"] / f"{stem}.bmp",
            gt=set_dir / TEST_FOLDERS["gt"] / f"{stem}.png",
        )
        for path, image in zip(sample, (scene.rgb, scene.depth, scene.mask.astype(np.uint8) * 255)):
            write_image(image, path, ENCODE_PARAMS[path.suffix])
        samples.append(sample)
    return samples


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments; a root that is not new or empty, or cannot be written, stops with one line (exit status 2)."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="data root to write (DIR/sod/...): a new or empty folder")
    parser.add_argument("--num-train", type=positive_int, default=40, help="training scenes (default 40)")
    parser.add_argument("--num-test", type=positive_int, default=10, help="scenes per test set (default 10)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    problem = output_folder_problem(args.root)
    if problem is None and args.root.is_dir() and any(args.root.iterdir()):
        problem = "not empty (choose a new or empty folder)"
    if problem is not None:
        parser.error(f"--root {args.root}: {problem}")
    return args


def remove_written(root: Path, created: bool) -> None:
    """Remove what this run wrote: ``root`` if it created it, else everything in it (it was empty)."""
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for path in root.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    created = not root.exists()
    try:
        train = write_train_split(root, args.num_train, args.seed)
        write_train_list(train, default_train_list(root), root)
        for split, set_name in enumerate(TEST_SET_NAMES, start=1):
            write_test_split(root / "sod" / "Test" / set_name, split, args.num_test, args.seed)
    except (WriteError, KeyboardInterrupt) as error:
        remove_written(root, created)
        if isinstance(error, KeyboardInterrupt):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.num_train} training scenes and {len(TEST_SET_NAMES)} test sets "
          f"({', '.join(TEST_SET_NAMES)}) x {args.num_test} scenes under {root / 'sod'} "
          f"(seed {args.seed}), training list {default_train_list(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "make_synthetic_data.py"))
