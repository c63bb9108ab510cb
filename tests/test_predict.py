"""pyscripts/inference/predict.py on generated RGB-D pairs of any size, bad files and bad arguments included."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

SIZES = {"wide": (60, 100), "tall": (90, 50)}  # stem -> (height, width)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds none: PIL refuses it at open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, Path]:
    """Folders ``rgb/`` and ``depth/``: two good pairs (``tall``'s depth at half size), one with a
    broken depth, one 15000x12500 RGB image, one unpaired RGB."""
    rng = np.random.default_rng(0)
    rgb_dir, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for stem, (height, width) in SIZES.items():
        cv2.imwrite(str(rgb_dir / f"{stem}.jpg"), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        depth_size = (height // 2, width // 2) if stem == "tall" else (height, width)
        cv2.imwrite(str(depth_dir / f"{stem}.png"), rng.integers(0, 256, depth_size, dtype=np.uint8))
    cv2.imwrite(str(rgb_dir / "broken.jpg"), np.zeros((40, 40, 3), np.uint8))
    (depth_dir / "broken.png").write_bytes(b"not a png")
    (rgb_dir / "huge.png").write_bytes(png_header_only(15000, 12500))
    cv2.imwrite(str(depth_dir / "huge.png"), np.zeros((40, 40), np.uint8))
    cv2.imwrite(str(rgb_dir / "lonely.jpg"), np.zeros((40, 40, 3), np.uint8))
    return rgb_dir, depth_dir


def _predict(repo_root: Path, rgb: Path, depth: Path, out: Path, checkpoint: Path, *extra: str):
    command = [sys.executable, "pyscripts/inference/predict.py", "--rgb", str(rgb), "--depth", str(depth),
               "--out", str(out), "--checkpoint", str(checkpoint), "--device", "cpu", *extra]
    return subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_folders_give_maps_at_input_size_and_list_the_bad_files(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = pairs
    out = tmp_path / "out"
    process = _predict(repo_root, rgb_dir, depth_dir, out, deterministic_checkpoint, "--featvis",
                       "--batch-size", "2", "--num-workers", "64")
    assert process.returncode == 1
    lines = process.stderr.splitlines()
    assert any("broken.png" in line for line in lines) and any("lonely.jpg" in line for line in lines)
    huge = [line for line in lines if "huge.png" in line]
    assert len(huge) == 1 and "image too large" in huge[0] and "15000x12500" in huge[0]
    repairs = [line for line in lines if str(depth_dir / "tall.png") in line]
    assert len(repairs) == 1 and "size 25x45 differs from the RGB size 50x90" in repairs[0]
    assert re.match(r"\d\d:\d\d:\d\d WARNING spml.data: ", repairs[0]), "a log line is not glued to the progress bar"
    assert "Traceback" not in process.stderr and "suggested max number of worker" not in process.stderr
    assert _tree(out) == ["featvis", "featvis/tall.png", "featvis/wide.png", "tall.png", "wide.png"]
    for stem, size in SIZES.items():
        saliency = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert saliency.dtype == np.uint8 and saliency.shape == size
        assert cv2.imread(str(out / "featvis" / f"{stem}.png")).shape == (224, 224, 3)


def test_one_pair_of_files(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = pairs
    process = _predict(
        repo_root, rgb_dir / "wide.jpg", depth_dir / "wide.png", tmp_path / "out", deterministic_checkpoint
    )
    assert process.returncode == 0, process.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["wide.png"]
    assert cv2.imread(str(tmp_path / "out/wide.png"), cv2.IMREAD_GRAYSCALE).shape == SIZES["wide"]


def _corrupt_checkpoints(folder: Path, checkpoint: Path) -> dict[str, tuple[Path, str]]:
    """Bad checkpoint files and what the one line must say about each."""
    state = torch.load(checkpoint, map_location="cpu")
    entry = sorted(state["embedding_model"])[-1]
    del state["embedding_model"][entry]
    torch.save(state, folder / "missing-entry.pth")
    (folder / "page.pth").write_text("<!DOCTYPE html><html></html>")
    (folder / "truncated.pth").write_bytes(checkpoint.read_bytes()[:10000])
    (folder / "empty.pth").write_bytes(b"")
    return {"missing-entry": (folder / "missing-entry.pth", entry), "html": (folder / "page.pth", "HTML page"),
            "truncated": (folder / "truncated.pth", "truncated zip/torch archive"),
            "empty": (folder / "empty.pth", "empty file"), "absent": (folder / "absent.pth", "not found")}


def test_bad_input_stops_with_one_line_exit_2_and_writes_nothing(
    repo_root: Path, pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = pairs
    (tmp_path / "a-file").write_text("x")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    empty_rgb, no_images = tmp_path / "empty", tmp_path / "no-images"
    empty_rgb.mkdir()
    no_images.mkdir()
    (no_images / "notes.txt").write_text("x")
    out = tmp_path / "out"
    cases = {
        "batch-size": ((rgb_dir, depth_dir, out, "--batch-size", "0"),
                       "argument --batch-size: expected a positive integer, got '0'"),
        "num-workers": ((rgb_dir, depth_dir, out, "--num-workers", "-1"), "argument --num-workers: expected an integer >= 0"),
        "device": ((rgb_dir, depth_dir, out, "--device", "gpu"), "argument --device: expected cpu, cuda or cuda:N"),
        "out-is-a-file": ((rgb_dir, depth_dir, tmp_path / "a-file"), "exists and is not a folder"),
        "read-only-out": ((rgb_dir, depth_dir, read_only), "read-only"),
        "uncreatable-out": ((rgb_dir, depth_dir, tmp_path / "a-file" / "out"), "is not a folder"),
        "empty-folders": ((empty_rgb, no_images, out), f"no RGB/depth pairs found (images paired by file stem): {empty_rgb} holds 0"),
        "no-pairs": ((rgb_dir, no_images, out), "no RGB/depth pairs found"),
        "file-and-folder": ((rgb_dir / "wide.jpg", depth_dir, out), "must both be image files or both folders"),
        "out-is-an-input-folder": ((rgb_dir, depth_dir, depth_dir), f"--out {depth_dir}: is an input folder"),
        "map-over-an-input": ((rgb_dir / "wide.jpg", depth_dir / "wide.png", depth_dir),
                              f"the map {depth_dir / 'wide.png'} would overwrite that input image; choose another folder"),
    }
    if not torch.cuda.is_available():
        cases["no-cuda"] = ((rgb_dir, depth_dir, out, "--device", "cuda"), "--device 'cuda': CUDA is not available")
    for name, (path, expected) in _corrupt_checkpoints(tmp_path, deterministic_checkpoint).items():
        cases[f"checkpoint-{name}"] = ((rgb_dir, depth_dir, out, "--checkpoint", str(path)), expected, str(path))
    before = _tree(tmp_path)
    for name, ((rgb, depth, out_path, *extra), *expected) in cases.items():
        process = _predict(repo_root, rgb, depth, out_path, deterministic_checkpoint, *extra)
        assert process.returncode == 2, (name, process.stderr)
        lines = process.stderr.strip().splitlines()
        assert len(lines) == 1 and all(text in lines[0] for text in expected), (name, process.stderr)
        assert "weights_only" not in lines[0] and "Traceback" not in lines[0]
        assert _tree(tmp_path) == before, name
    read_only.chmod(0o755)


def test_the_launcher_without_the_released_model_says_how_to_get_it(repo_root: Path, tmp_path: Path) -> None:
    """``predict.sh`` in a checkout without downloaded weights (a copy of the launcher, run with this
    repository's modules) names the missing file and the download command."""
    launcher = tmp_path / "bashscripts" / "predict.sh"
    launcher.parent.mkdir()
    launcher.write_text((repo_root / "bashscripts" / "predict.sh").read_text())
    environment = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(repo_root)}
    environment.pop("CHECKPOINT", None)
    process = subprocess.run(["bash", str(launcher), "rgb", "depth", "out"], cwd=tmp_path, env=environment,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    [line] = process.stderr.strip().splitlines()
    assert "the released model is not downloaded (snapshots/sod_scribble/" in line and "/stage1/model-109249.pth)" in line
    assert "bash bashscripts/download_snapshots.sh model fetches it" in line
    assert _tree(tmp_path) == ["bashscripts", "bashscripts/predict.sh"]


def test_the_launcher_stops_on_a_misspelt_checkpoint_variable_instead_of_taking_the_released_model(
        repo_root: Path, tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHON": sys.executable, "CHECKPOINTS": str(tmp_path / "mine.pth")}
    process = subprocess.run(["bash", "bashscripts/predict.sh", "rgb", "depth", str(tmp_path / "out")], cwd=repo_root,
                             env=environment, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        f"error: CHECKPOINTS={tmp_path / 'mine.pth'}: not a setting of the launchers; did you mean CHECKPOINT? "
        f"(unset CHECKPOINTS)"]
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_with_one_line_saying_what_was_written(
    pairs: tuple[Path, Path], deterministic_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from pyscripts.inference import predict as predict_script

    real_write = predict_script.write_batch
    written = []

    def ctrl_c_after_the_first_batch(*args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(real_write(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(predict_script, "write_batch", ctrl_c_after_the_first_batch)
    rgb_dir, depth_dir = pairs
    out = tmp_path / "out"
    assert predict_script.main(["--rgb", str(rgb_dir), "--depth", str(depth_dir), "--out", str(out), "--checkpoint",
                                str(deterministic_checkpoint), "--device", "cpu", "--batch-size", "1"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"predict.py: interrupted; 1 map(s) written to {out}"
    assert len(list(out.glob("*.png"))) == 1
