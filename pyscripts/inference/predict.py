"""Saliency maps (and optionally feature visualisations) for one's own RGB-D images.

``--rgb`` and ``--depth`` are either two image files (one pair) or two folders whose images
are paired by file stem. Any input size: the pair is resized to the network's input size
(docs/method.md §3.3) and the map back to the RGB image's size (bilinear). Maps are written
atomically as ``<out>/<stem>.png``, visualisations as ``<out>/featvis/<stem>.png``.
Unpaired and unreadable files (e.g. images over PIL's size limit, unless
``--allow-large-images``) are listed and skipped; the exit status is then 1. Bad flags, an
unusable output folder or checkpoint, an output folder that is an input folder (or where a
map would replace an input image), and inputs without any pair stop at once with one line
and exit status 2.

    python pyscripts/inference/predict.py --rgb PATH --depth PATH --out DIR --checkpoint CKPT \\
        [--device cpu|cuda|cuda:N] [--featvis] [--batch-size N] [--num-workers N] [--allow-large-images]
        [--eager] [--precision fp32|tf32|bf16|fp16]

On a GPU the network is replayed as a CUDA graph (``--eager`` runs it eagerly), in exact
float32 unless ``--precision`` asks for a faster arithmetic.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
from pathlib import Path

from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib.cli import USAGE_ERROR, ArgumentParser, device_name, non_negative_int, positive_int
from lib.cpus import cap_workers
from lib.interrupts import INTERRUPTED
from lib.io import WriteError, output_folder_problem
from lib.logging import setup_logging
from network import INPUT_SIZE, CheckpointError
from spml.data.datasets import RGBDTestDataset, collate_test_items, log_item_repairs
from spml.data.errors import DataError
from spml.data.image_io import allow_large_images, write_image
from spml.data.lists import pair_inputs
from spml.evaluation.featvis import embedding_pca_rgb
from network.precision import PRECISIONS
from spml.evaluation.inference import Forward, eval_network, load_model, predict, resolve_device, saliency_to_uint8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rgb", required=True, type=Path, help="an RGB image or a folder of them")
    parser.add_argument("--depth", required=True, type=Path, help="a depth map or a folder of them")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint in the release layout")
    parser.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--featvis", action="store_true", help="also write the embedding's PCA visualisation")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--num-workers", type=non_negative_int, default=0,
                        help="data loading processes (default 0; at most one per CPU core)")
    parser.add_argument("--eager", action="store_true",
                        help="on a GPU, run the network eagerly instead of replaying it as a CUDA graph")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="GPU arithmetic: fp32 (default, exact), tf32, bf16 or fp16 (faster, see README)")
    parser.add_argument("--allow-large-images", action="store_true",
                        help="read images over PIL's decompression-bomb limit (about 179 Mpixels) instead of skipping them")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.allow_large_images:
        allow_large_images()
    try:
        problem = output_folder_problem(args.out)
        if problem is not None:
            raise ValueError(f"--out {args.out}: {problem}")
        samples, unpaired = pair_inputs(args.rgb, args.depth)
        problem = input_overwrite_problem(args, samples)
        if problem is not None:
            raise ValueError(f"--out {args.out}: {problem}; choose another folder")
        args.device = resolve_device(args.device)
        network = eval_network(load_model(args.checkpoint, args.device), args.eager, args.precision)
    except (CheckpointError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    skipped = [f"unpaired file: {path}" for path in unpaired]
    written = 0
    loader = DataLoader(RGBDTestDataset(samples, INPUT_SIZE, keep_errors=True), batch_size=args.batch_size,
                        num_workers=cap_workers(args.num_workers), collate_fn=collate_test_items)
    try:
        with logging_redirect_tqdm(), tqdm(total=len(samples), desc="predict", unit="img") as progress:
            for batch, errors in loader:
                skipped += errors
                if batch is not None:
                    log_item_repairs(batch["repairs"])
                    written += write_batch(network, batch, samples, args)
                progress.update(len(errors) + (0 if batch is None else len(batch["index"])))
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"predict.py: interrupted; {written} map(s) written to {args.out}", file=sys.stderr)
        return INTERRUPTED
    print(f"{written} map(s) written to {args.out}")
    if skipped:
        print(f"skipped {len(skipped)}:\n  " + "\n  ".join(skipped), file=sys.stderr)
        return 1
    return 0


def output_paths(out: Path, stem: str, featvis: bool) -> list[Path]:
    """Where the map (and the visualisation) of the pair ``stem`` is written."""
    return [out / f"{stem}.png"] + ([out / "featvis" / f"{stem}.png"] if featvis else [])


def input_overwrite_problem(args: argparse.Namespace, samples: list) -> str | None:
    """Why writing to ``--out`` would overwrite or mix with the inputs, or None: ``--out`` is one of
    the input folders, or a map would replace an input image."""
    out = args.out.resolve()
    if args.rgb.is_dir() and out in (args.rgb.resolve(), args.depth.resolve()):
        return "is an input folder (the maps would be written among its images)"
    inputs = {path.resolve() for sample in samples for path in (sample.rgb, sample.depth)}
    for sample in samples:
        for path in output_paths(out, sample.rgb.stem, args.featvis):
            if path in inputs:
                return f"the map {path} would overwrite that input image"
    return None


def write_batch(network: Forward, batch: dict, samples: list, args: argparse.Namespace) -> int:
    """Predict one batch and write its maps (and visualisations); return how many."""
    saliency, embedding = predict(network, batch["image"], batch["depth"], args.device)
    featvis = embedding_pca_rgb(embedding, out_size=INPUT_SIZE) if args.featvis else None
    for k, index in enumerate(batch["index"].tolist()):
        stem = samples[index].rgb.stem
        size = (int(batch["height"][k]), int(batch["width"][k]))
        map_path, *featvis_path = output_paths(args.out, stem, featvis is not None)
        write_image(saliency_to_uint8(saliency[k], size), map_path)
        if featvis_path:
            write_image(featvis[k], featvis_path[0])
    return len(batch["index"])


if __name__ == "__main__":
    sys.exit(main())
