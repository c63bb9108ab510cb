"""Test score (docs/method.md §5): saliency maps, feature visualisations, scores, tables and curves.

For every test set found under the data root (``spml.data.lists.scan_test_sets``) it writes
under ``--save-dir``: ``results/<SET>/<gt-stem>.png`` (8-bit map; at the ground truth's size
under the field protocol, 224×224 under the release protocol), ``featvis/<SET>/<stem>.png``
(PCA of the embedding, 224×224), and for the sets with ground truth ``scores.{md,csv,json}``,
``pr_curves.png`` and ``f_threshold_curves.png``. Scores are computed from exactly the 8-bit
maps that are saved (see ``spml.evaluation.scores`` for the two protocols). Bad flags, an
unusable ``--save-dir`` or checkpoint, and unreadable test files stop with one line and exit
status 2; the output folder is checked before anything is loaded.

    python pyscripts/benchmark/score_model.py --data-root DIR --checkpoint CKPT --save-dir DIR \
        [--protocol field|release] [--device cpu|cuda|cuda:N] [--config CONFIG] [--batch-size N] [--num-workers N]
        [--eager] [--precision fp32|tf32|bf16|fp16]

On a GPU the network is replayed as a CUDA graph (``--eager`` runs it eagerly), in exact
float32 unless ``--precision`` asks for a faster arithmetic.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import shutil
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
from spml.config import TEST_SETS, ConfigError, default_config, load_config
from spml.data.datasets import RGBDTestDataset, collate_test_items, log_item_repairs, seed_worker
from spml.data.errors import DataError
from spml.data.lists import TestSample, scan_test_sets
from spml.evaluation.featvis import embedding_pca_rgb
from network.precision import PRECISIONS
from spml.evaluation.inference import Forward, eval_network, load_model, predict, resolve_device, saliency_to_uint8
from spml.data.image_io import write_image
from spml.evaluation.maps_io import read_ground_truth
from spml.evaluation.plots import plot_f_threshold_curves, plot_pr_curves
from spml.evaluation.scores import PROTOCOLS, RELEASE, RELEASE_SIZE, SaliencyScores, ScoreCurves
from spml.evaluation.tables import markdown_table, write_score_tables

PROTOCOL_DESCRIPTIONS = {
    "field": "maps at the ground truth's resolution, pysodmetrics input preparation",
    "release": "224x224 maps, ground truth resized to 224x224 and binarised at 0.5, as the release",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint in the release layout")
    parser.add_argument("--save-dir", required=True, type=Path, help="where results/, featvis/, tables and plots go")
    parser.add_argument("--config", type=Path, help="run config (defaults for the options below)")
    parser.add_argument("--data-root", type=Path, help="data root (default: the config's dataset.data_dir)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="scoring protocol (default: the config's, 'field')")
    parser.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--batch-size", type=positive_int, help="images per forward pass (default: the config's)")
    parser.add_argument("--num-workers", type=non_negative_int,
                        help="data loading processes (default: the config's; at most one per CPU core)")
    parser.add_argument("--eager", action="store_true",
                        help="on a GPU, run the network eagerly instead of replaying it as a CUDA graph")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="GPU arithmetic: fp32 (default, exact), tf32, bf16 or fp16 (faster, see README)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else default_config()
    except (ConfigError, OSError) as error:
        parser.error(f"--config {args.config}: {error}")
    args.data_root = args.data_root or Path(config.dataset.data_dir)
    args.protocol = args.protocol or config.test.protocol
    args.batch_size = args.batch_size or config.test.batch_size
    args.num_workers = config.test.num_workers if args.num_workers is None else args.num_workers
    if args.protocol not in PROTOCOLS:
        parser.error(f"test.protocol '{args.protocol}' in {args.config} is not one of {PROTOCOLS}")
    return args


def run_test_set(
    network: Forward, name: str, samples: list[TestSample], args: argparse.Namespace
) -> SaliencyScores | None:
    """Write the maps and feature visualisations of one set; return its scores (None without GT)."""
    scores = SaliencyScores(args.protocol) if all(sample.gt for sample in samples) else None
    loader = DataLoader(
        RGBDTestDataset(samples, INPUT_SIZE, keep_errors=True),
        batch_size=args.batch_size,
        num_workers=cap_workers(args.num_workers),
        worker_init_fn=seed_worker,
        collate_fn=collate_test_items,
        pin_memory=args.device.type == "cuda",
    )
    with logging_redirect_tqdm(), tqdm(total=len(samples), desc=name, unit="img") as progress:
        for batch, errors in loader:
            if errors:
                raise DataError(f"test set {name}: {errors[0]}")
            log_item_repairs(batch["repairs"])
            saliency, embedding = predict(network, batch["image"], batch["depth"], args.device)
            featvis = embedding_pca_rgb(embedding, out_size=INPUT_SIZE)
            for k, index in enumerate(batch["index"].tolist()):
                sample = samples[index]
                gt = read_ground_truth(sample.gt) if scores else None
                if args.protocol == RELEASE:
                    size = (RELEASE_SIZE, RELEASE_SIZE)
                else:
                    size = gt.shape if gt is not None else (int(batch["height"][k]), int(batch["width"][k]))
                saliency_map = saliency_to_uint8(saliency[k], size)
                map_name = f"{(sample.gt or sample.rgb).stem}.png"
                write_image(saliency_map, args.save_dir / "results" / name / map_name)
                write_image(featvis[k], args.save_dir / "featvis" / name / map_name)
                if scores:
                    scores.step(saliency_map, gt)
            progress.update(len(batch["index"]))
    return scores


def report_missing_standard_sets(test_sets: dict[str, list[TestSample]], data_root: Path) -> None:
    """Name the standard test sets that are absent, for a data root that holds some of them."""
    missing = [name for name in TEST_SETS if name not in test_sets]
    if missing and len(missing) < len(TEST_SETS):
        print(f"standard test sets not found under {data_root} (skipped): {', '.join(missing)}")


def report_outputs(all_scores: dict[str, dict], curves: dict[str, ScoreCurves], args: argparse.Namespace) -> None:
    """Write tables and plots of the scored sets and print the table and where everything is."""
    print(f"maps: {args.save_dir / 'results'}\nfeature visualisations: {args.save_dir / 'featvis'}")
    if not all_scores:
        print("no test set has ground truth: no scores, tables or curves")
        return
    tables = write_score_tables(all_scores, args.save_dir, args.protocol)
    plots = [
        plot_pr_curves(curves, args.save_dir / "pr_curves.png"),
        plot_f_threshold_curves(curves, args.save_dir / "f_threshold_curves.png"),
    ]
    print("\n" + markdown_table(all_scores, args.protocol))
    print("tables: " + ", ".join(map(str, tables)) + "\nplots: " + ", ".join(map(str, plots)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    print(f"scoring protocol: {args.protocol} ({PROTOCOL_DESCRIPTIONS[args.protocol]})")
    try:
        problem = output_folder_problem(args.save_dir)
        if problem is not None:
            raise ValueError(f"--save-dir {args.save_dir}: {problem}")
        if not args.data_root.is_dir():
            raise ValueError(f"--data-root {args.data_root}: data root not found")
        test_sets = scan_test_sets(args.data_root)
        if not test_sets:
            raise ValueError(f"--data-root {args.data_root}: no test set (a folder with RGB/ and depth/) "
                             f"under {args.data_root} or {args.data_root / 'sod' / 'Test'}")
        report_missing_standard_sets(test_sets, args.data_root)
        args.device = resolve_device(args.device)
        network = eval_network(load_model(args.checkpoint, args.device), args.eager, args.precision)
    except (CheckpointError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    created = not args.save_dir.exists()
    try:
        score_test_sets(network, test_sets, args)
    except (DataError, WriteError, KeyboardInterrupt) as error:
        if created:  # leave no partial results behind
            shutil.rmtree(args.save_dir, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            left = f"removed {args.save_dir}, which this run created" if created else f"{args.save_dir} holds partial results"
            print(f"score_model.py: interrupted; {left}", file=sys.stderr)
            return INTERRUPTED
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR if isinstance(error, DataError) else 1
    return 0


def score_test_sets(network: Forward, test_sets: dict[str, list[TestSample]], args: argparse.Namespace) -> None:
    """Maps, visualisations and scores of every set, then the tables and curves."""
    all_scores, curves = {}, {}
    for name, samples in test_sets.items():
        scores = run_test_set(network, name, samples, args)
        if scores is None:
            print(f"{name}: no ground truth for every image; maps and featvis written, not scored")
            continue
        all_scores[name], curves[name] = scores.results(), scores.curves()
    report_outputs(all_scores, curves, args)


if __name__ == "__main__":
    sys.exit(main())
