"""Test score (docs/method.md §5): saliency maps, feature visualisations, scores, tables and curves.

For every test set found under the data root (``spml.data.lists.scan_test_sets``) it writes
under ``--save-dir``: ``results/<SET>/<gt-stem>.png`` (8-bit map; at the ground truth's size
under the field protocol, 224×224 under the release protocol), ``featvis/<SET>/<stem>.png``
(PCA of the embedding, 224×224), and for the sets with ground truth ``scores.{md,csv,json}``,
``pr_curves.png`` and ``f_threshold_curves.png``. Scores are computed from exactly the 8-bit
maps that are saved (see ``spml.evaluation.scores`` for the two protocols).

    python pyscripts/benchmark/test_score.py --data-root DIR --checkpoint CKPT --save-dir DIR \
        [--protocol field|release] [--device cpu|cuda] [--config CONFIG]
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from network import CheckpointError
from spml.config import TEST_SETS, default_config, load_config
from spml.data.datasets import RGBDTestDataset, seed_worker
from spml.data.errors import DataError
from spml.data.lists import TestSample, scan_test_sets
from spml.evaluation.featvis import embedding_pca_rgb
from spml.evaluation.inference import load_model, predict, resolve_device, saliency_to_uint8
from spml.data.image_io import write_image
from spml.evaluation.maps_io import image_size, read_ground_truth
from spml.evaluation.plots import plot_f_threshold_curves, plot_pr_curves
from spml.evaluation.scores import PROTOCOLS, RELEASE, RELEASE_SIZE, SaliencyScores, ScoreCurves
from spml.evaluation.tables import markdown_table, write_score_tables

PROTOCOL_DESCRIPTIONS = {
    "field": "maps at the ground truth's resolution, pysodmetrics input preparation",
    "release": "224x224 maps, ground truth resized to 224x224 and binarised at 0.5, as the release",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint in the release layout")
    parser.add_argument("--save-dir", required=True, type=Path, help="where results/, featvis/, tables and plots go")
    parser.add_argument("--config", type=Path, help="run config (defaults for the options below)")
    parser.add_argument("--data-root", type=Path, help="data root (default: the config's dataset.data_dir)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="scoring protocol (default: the config's, 'field')")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: the config's)")
    parser.add_argument("--num-workers", type=int, help="data loading processes (default: the config's)")
    args = parser.parse_args()
    config = load_config(args.config) if args.config else default_config()
    args.data_root = args.data_root or Path(config.dataset.data_dir)
    args.protocol = args.protocol or config.test.protocol
    args.batch_size = args.batch_size or config.test.batch_size
    args.num_workers = config.test.num_workers if args.num_workers is None else args.num_workers
    if args.protocol not in PROTOCOLS:
        parser.error(f"test.protocol '{args.protocol}' in {args.config} is not one of {PROTOCOLS}")
    return args


def run_test_set(
    model: torch.nn.Module, name: str, samples: list[TestSample], args: argparse.Namespace
) -> SaliencyScores | None:
    """Write the maps and feature visualisations of one set; return its scores (None without GT)."""
    scores = SaliencyScores(args.protocol) if all(sample.gt for sample in samples) else None
    loader = DataLoader(
        RGBDTestDataset(samples),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        worker_init_fn=seed_worker,
        pin_memory=args.device.type == "cuda",
    )
    with tqdm(total=len(samples), desc=name, unit="img") as progress:
        for batch in loader:
            saliency, embedding = predict(model, batch["image"], batch["depth"])
            featvis = embedding_pca_rgb(embedding, out_size=RELEASE_SIZE)
            for k, index in enumerate(batch["index"].tolist()):
                sample = samples[index]
                gt = read_ground_truth(sample.gt) if scores else None
                if args.protocol == RELEASE:
                    size = (RELEASE_SIZE, RELEASE_SIZE)
                else:
                    size = gt.shape if gt is not None else image_size(sample.rgb)
                saliency_map = saliency_to_uint8(saliency[k], size)
                map_name = f"{(sample.gt or sample.rgb).stem}.png"
                write_image(saliency_map, args.save_dir / "results" / name / map_name)
                write_image(featvis[k], args.save_dir / "featvis" / name / map_name)
                if scores:
                    scores.step(saliency_map, gt)
            progress.update(len(batch["index"]))
    return scores


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


def main() -> int:
    args = parse_args()
    print(f"scoring protocol: {args.protocol} ({PROTOCOL_DESCRIPTIONS[args.protocol]})")
    if not args.data_root.is_dir():
        print(f"error: data root not found: {args.data_root}", file=sys.stderr)
        return 2
    try:
        args.device = resolve_device(args.device)
        model = load_model(args.checkpoint, args.device)
        test_sets = scan_test_sets(args.data_root)
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    missing = [name for name in TEST_SETS if name not in test_sets]
    if missing:
        print(f"test sets not found under {args.data_root} (skipped): {', '.join(missing)}")
    if not test_sets:
        print(f"error: no test set (a folder with RGB/ and depth/) under {args.data_root}", file=sys.stderr)
        return 2
    all_scores, curves = {}, {}
    for name, samples in test_sets.items():
        try:
            scores = run_test_set(model, name, samples, args)
        except DataError as error:  # from a loader worker it arrives with the worker's traceback
            print(f"error in test set {name}: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
            return 2
        if scores is None:
            print(f"{name}: no ground truth for every image; maps and featvis written, not scored")
            continue
        all_scores[name], curves[name] = scores.results(), scores.curves()
    report_outputs(all_scores, curves, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
