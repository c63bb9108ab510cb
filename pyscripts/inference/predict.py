"""Saliency maps (and optionally feature visualisations) for one's own RGB-D images.

``--rgb`` and ``--depth`` are either two image files (one pair) or two folders whose images
are paired by file stem. Any input size: the pair is resized to 224×224 (docs/method.md §3.3) and the
map back to the RGB image's size (bilinear). Maps are written atomically as
``<out>/<stem>.png``, visualisations as ``<out>/featvis/<stem>.png`` (224×224). Unpaired
and unreadable files are listed and skipped; the exit status is then 1.

    python pyscripts/inference/predict.py --rgb PATH --depth PATH --out DIR --checkpoint CKPT \
        [--device cpu|cuda] [--featvis]
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
from pathlib import Path

from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from network import CheckpointError
from spml.data.errors import DataError
from spml.data.image_io import read_depth, read_rgb, write_image
from spml.data.lists import pair_by_stem
from spml.data.transforms import eval_inputs
from spml.evaluation.featvis import embedding_pca_rgb
from spml.evaluation.inference import load_model, predict, resolve_device, saliency_to_uint8
from spml.evaluation.scores import RELEASE_SIZE

Pair = tuple[Path, Path]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rgb", required=True, type=Path, help="an RGB image or a folder of them")
    parser.add_argument("--depth", required=True, type=Path, help="a depth map or a folder of them")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--checkpoint", required=True, help="checkpoint in the release layout")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--featvis", action="store_true", help="also write the embedding's PCA visualisation")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    parser.add_argument("--num-workers", type=int, default=0, help="data loading processes")
    return parser.parse_args()


def find_pairs(rgb: Path, depth: Path) -> tuple[list[Pair], list[Path]]:
    """(pairs, unpaired files): one pair for two files, pairing by stem for two folders."""
    if rgb.is_file() and depth.is_file():
        return [(rgb, depth)], []
    if not (rgb.is_dir() and depth.is_dir()):
        raise ValueError(f"--rgb {rgb} and --depth {depth} must both be existing files or both folders")
    paired, unpaired = pair_by_stem({"rgb": rgb, "depth": depth})
    return [(files["rgb"], files["depth"]) for files in paired], unpaired


class PairDataset(Dataset):
    """Network inputs of each pair plus the RGB size; an unreadable pair yields its error instead."""

    def __init__(self, pairs: list[Pair]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        rgb_path, depth_path = self.pairs[index]
        try:
            rgb, depth = read_rgb(rgb_path), read_depth(depth_path)
        except DataError as error:
            return {"index": index, "error": str(error)}
        image, depth_input = eval_inputs(rgb, depth, RELEASE_SIZE)
        return {"index": index, "image": image, "depth": depth_input, "height": rgb.shape[0], "width": rgb.shape[1]}


def collate_readable(items: list[dict]) -> tuple[dict | None, list[str]]:
    """Batch the readable items; return the errors of the others beside the batch."""
    readable = [item for item in items if "error" not in item]
    errors = [item["error"] for item in items if "error" in item]
    return (default_collate(readable) if readable else None), errors


def main() -> int:
    args = parse_args()
    try:
        pairs, unpaired = find_pairs(args.rgb, args.depth)
        device = resolve_device(args.device)
        model = load_model(args.checkpoint, device)
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    skipped = [f"unpaired file: {path}" for path in unpaired]
    written = 0
    loader = DataLoader(
        PairDataset(pairs), batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate_readable
    )
    with tqdm(total=len(pairs), desc="predict", unit="img") as progress:
        for batch, errors in loader:
            skipped += errors
            if batch is not None:
                saliency, embedding = predict(model, batch["image"], batch["depth"])
                featvis = embedding_pca_rgb(embedding, out_size=RELEASE_SIZE) if args.featvis else None
                for k, index in enumerate(batch["index"].tolist()):
                    stem = pairs[index][0].stem
                    size = (int(batch["height"][k]), int(batch["width"][k]))
                    write_image(saliency_to_uint8(saliency[k], size), args.out / f"{stem}.png")
                    if featvis is not None:
                        write_image(featvis[k], args.out / "featvis" / f"{stem}.png")
                written += len(batch["index"])
            progress.update(len(errors) + (0 if batch is None else len(batch["index"])))
    print(f"{written} map(s) written to {args.out}")
    if skipped:
        print(f"skipped {len(skipped)}:\n  " + "\n  ".join(skipped), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
