"""pyscripts/benchmark/score_model.py and its launcher on a few real RGB-D samples (docs/method.md §5).

The network has the deterministic weights of tests/deterministic_weights.py. Every image
costs about a second on a CPU, so the data root holds three samples: two of DES (with GT)
and one NLPR pair with 16-bit depth at another size than its RGB image and no GT.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics
import pytest
import torch

from spml.evaluation.scores import SCORE_KEYS, fmeasure

pytestmark = pytest.mark.slow  # subprocesses running the network

DES_STEMS = ("RGBD_data_1", "RGBD_data_2")
NO_GT_STEM = "1_02-02-40"


def _grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def data_root(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sod/Test/DES`` (2 samples with GT) and ``sod/Test/NLPR_noGT`` (1 pair without GT)."""
    root = tmp_path_factory.mktemp("dataroot")
    samples = shared_data_dir / "rgbd_samples"
    for sub, pattern in (("RGB", "{}.jpg"), ("depth", "{}.bmp"), ("GT", "{}.png")):
        (root / "sod/Test/DES" / sub).mkdir(parents=True)
        for stem in DES_STEMS:
            shutil.copy(samples / "DES" / sub / pattern.format(stem), root / "sod/Test/DES" / sub)
    for sub, suffix in (("RGB", ".jpg"), ("depth", ".png")):
        (root / "sod/Test/NLPR_noGT" / sub).mkdir(parents=True)
        shutil.copy(samples / "NLPR_raw16_noGT" / sub / (NO_GT_STEM + suffix), root / "sod/Test/NLPR_noGT" / sub)
    depth_path = root / "sod/Test/NLPR_noGT/depth" / f"{NO_GT_STEM}.png"
    depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(depth_path), cv2.resize(depth, (depth.shape[1] // 2, depth.shape[0] // 2)))
    return root


def _run(command: list[str], repo_root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=600, env={**os.environ, **env}
    )


@pytest.fixture(scope="module")
def field_run(repo_root: Path, data_root: Path, deterministic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """The launcher, as the outside checks call it, with the default (field) protocol."""
    save_dir = tmp_path_factory.mktemp("field")
    process = _run(
        ["bash", "bashscripts/sod/train_sfnet_rgbd_scribble_sod_testscore.sh", "cpu"], repo_root,
        DATAROOT=str(data_root), CHECKPOINT=str(deterministic_checkpoint), SAVE_DIR=str(save_dir),
        SNAPSHOT_DIR=str(tmp_path_factory.mktemp("snapshot")), TEST_NUM_WORKERS="0",
    )
    assert process.returncode == 0, process.stderr
    return save_dir, process


def test_field_maps_have_the_ground_truth_names_and_sizes(field_run, data_root: Path) -> None:
    save_dir, _ = field_run
    for stem in DES_STEMS:
        saved = cv2.imread(str(save_dir / "results/DES" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert saved.dtype == np.uint8 and saved.shape == _grey(data_root / "sod/Test/DES/GT" / f"{stem}.png").shape
    no_gt_map = _grey(save_dir / "results/NLPR_noGT" / f"{NO_GT_STEM}.png")
    rgb = cv2.imread(str(data_root / "sod/Test/NLPR_noGT/RGB" / f"{NO_GT_STEM}.jpg"))
    assert no_gt_map.shape == rgb.shape[:2]


def test_field_scores_equal_pysodmetrics_on_the_saved_maps(field_run, data_root: Path) -> None:
    save_dir, _ = field_run
    scores = json.loads((save_dir / "scores.json").read_text())
    assert list(scores) == ["DES"] and list(scores["DES"]) == list(SCORE_KEYS) and scores["DES"]["n"] == 2
    s, f, e, wf, mae = (py_sod_metrics.Smeasure(), fmeasure(), py_sod_metrics.Emeasure(),
                        py_sod_metrics.WeightedFmeasure(), py_sod_metrics.MAE())
    for stem in DES_STEMS:
        pred, gt = _grey(save_dir / "results/DES" / f"{stem}.png"), _grey(data_root / "sod/Test/DES/GT" / f"{stem}.png")
        for metric in (s, f, e, wf, mae):
            metric.step(pred, gt)
    fm, em = f.get_results()["fm"], e.get_results()["em"]
    expected = {
        "S": s.get_results()["sm"], "maxF": fm["curve"].max(), "meanF": fm["curve"].mean(), "adpF": fm["adp"],
        "maxE": em["curve"].max(), "meanE": em["curve"].mean(), "adpE": em["adp"],
        "wF": wf.get_results()["wfm"], "MAE": mae.get_results()["mae"],
    }
    for key, value in expected.items():
        assert scores["DES"][key] == pytest.approx(float(value), rel=1e-12, abs=1e-15), key


def test_field_run_reports_protocol_missing_sets_repairs_and_unscored_set(field_run, data_root: Path) -> None:
    save_dir, process = field_run
    assert "scoring protocol: field" in process.stdout
    assert "LFSD" in process.stdout and "NJU2K" in process.stdout  # standard sets that are absent
    assert "NLPR_noGT: no ground truth" in process.stdout
    assert "| DES |" in (save_dir / "scores.md").read_text()
    depth = data_root / "sod/Test/NLPR_noGT/depth" / f"{NO_GT_STEM}.png"
    repairs = [line for line in process.stderr.splitlines() if f"{depth}: size" in line]
    assert len(repairs) == 1 and "differs from the RGB size" in repairs[0]
    assert re.match(r"\d\d:\d\d:\d\d WARNING spml.data: ", repairs[0]), "a log line is not glued to the progress bar"


def test_featvis_and_plots_are_images(field_run) -> None:
    save_dir, _ = field_run
    for name in [f"DES/{stem}.png" for stem in DES_STEMS] + [f"NLPR_noGT/{NO_GT_STEM}.png"]:
        featvis = cv2.imread(str(save_dir / "featvis" / name), cv2.IMREAD_UNCHANGED)
        assert featvis.shape == (224, 224, 3) and featvis.min() == 0 and featvis.max() == 255
    for plot in ("pr_curves.png", "f_threshold_curves.png"):
        image = cv2.imread(str(save_dir / plot))
        assert image is not None and image.shape[0] > 200 and image.std() > 10


def test_release_protocol_scores_224_maps_against_resized_ground_truth(
    repo_root: Path, data_root: Path, deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    process = _run(
        [sys.executable, "pyscripts/benchmark/score_model.py", "--data-root", str(data_root), "--checkpoint",
         str(deterministic_checkpoint), "--save-dir", str(tmp_path), "--protocol", "release", "--num-workers", "0"], repo_root,
    )
    assert process.returncode == 0, process.stderr
    assert "scoring protocol: release" in process.stdout
    maes = []
    for stem in DES_STEMS:
        pred = _grey(tmp_path / "results/DES" / f"{stem}.png").astype(np.float64)
        assert pred.shape == (224, 224)
        gt = _grey(data_root / "sod/Test/DES/GT" / f"{stem}.png")
        gt_224 = cv2.resize(gt, (224, 224), interpolation=cv2.INTER_AREA) > 127.5
        pred = (pred - pred.min()) / (pred.max() - pred.min())
        maes.append(np.abs(pred - gt_224).mean())
    # PIL's bilinear filter and cv2's area filter differ on a few edge pixels only.
    assert json.loads((tmp_path / "scores.json").read_text())["DES"]["MAE"] == pytest.approx(np.mean(maes), abs=2e-3)


def _score(repo_root: Path, data_root: Path, checkpoint: Path, save_dir: Path, *extra: str):
    return _run([sys.executable, "pyscripts/benchmark/score_model.py", "--data-root", str(data_root),
                 "--checkpoint", str(checkpoint), "--save-dir", str(save_dir), "--device", "cpu",
                 "--num-workers", "0", *extra], repo_root)


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_bad_input_stops_with_one_line_exit_2_before_loading_and_leaves_nothing(
    repo_root: Path, data_root: Path, deterministic_checkpoint: Path, tmp_path: Path
) -> None:
    state = torch.load(deterministic_checkpoint, map_location="cpu")
    entry = next(name for name in state["embedding_model"] if name.endswith("weight"))
    state["embedding_model"][entry] = state["embedding_model"][entry][..., :1]
    torch.save(state, tmp_path / "bad.pth")
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html></html>")
    (tmp_path / "a-file").write_text("x")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    broken_root = tmp_path / "broken-root"
    shutil.copytree(data_root / "sod/Test/DES", broken_root / "DES")
    (broken_root / "DES/depth" / f"{DES_STEMS[1]}.bmp").write_bytes(b"BM broken")
    out = tmp_path / "out"
    cases = {
        "mis-shaped entry": ((data_root, tmp_path / "bad.pth", out), [entry, "has shape"]),
        "html": ((data_root, tmp_path / "page.pth", out), [f"{tmp_path / 'page.pth'}: an HTML page"]),
        "save-dir is a file": ((data_root, deterministic_checkpoint, tmp_path / "a-file"),
                               ["--save-dir", "exists and is not a folder"]),
        "read-only save-dir": ((data_root, deterministic_checkpoint, read_only / "out"), ["read-only"]),
        "batch size": ((data_root, deterministic_checkpoint, out, "--batch-size", "0"),
                       ["argument --batch-size: expected a positive integer, got '0'"]),
        "device": ((data_root, deterministic_checkpoint, out, "--device", "gpu"), ["argument --device"]),
        "unreadable test file": ((broken_root, deterministic_checkpoint, out),
                                 [f"test set DES: unreadable image file: {broken_root}/DES/depth/{DES_STEMS[1]}.bmp"]),
    }
    before = _tree(tmp_path)
    for name, ((root, checkpoint, save_dir, *extra), expected) in cases.items():
        process = _score(repo_root, root, checkpoint, save_dir, *extra)
        assert process.returncode == 2, (name, process.stderr)
        errors = [line for line in process.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and all(text in errors[0] for text in expected), (name, process.stderr)
        assert "Traceback" not in process.stderr and "weights_only" not in process.stderr, name
        assert _tree(tmp_path) == before, name
    read_only.chmod(0o755)


def test_missing_standard_sets_are_named_only_for_a_root_that_holds_some(
    repo_root: Path, data_root: Path, tmp_path: Path
) -> None:
    own_root = tmp_path / "own"
    shutil.copytree(data_root / "sod/Test/DES", own_root / "MY-SET")
    (tmp_path / "page.pth").write_text("<html></html>")  # stops after the report, before the model runs
    standard = _score(repo_root, data_root, tmp_path / "page.pth", tmp_path / "out")
    own = _score(repo_root, own_root, tmp_path / "page.pth", tmp_path / "out")
    assert "standard test sets not found" in standard.stdout and "LFSD" in standard.stdout
    assert "not found" not in own.stdout and "LFSD" not in own.stdout


def test_ctrl_c_stops_with_one_line_and_removes_the_results_folder_it_created(
    data_root: Path, deterministic_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from pyscripts.benchmark import score_model

    real_run = score_model.run_test_set

    def ctrl_c_at_the_second_set(network, name, *args, **kwargs):
        if name != "DES":
            raise KeyboardInterrupt
        return real_run(network, name, *args, **kwargs)

    monkeypatch.setattr(score_model, "run_test_set", ctrl_c_at_the_second_set)
    arguments = ["--data-root", str(data_root), "--checkpoint", str(deterministic_checkpoint), "--device", "cpu",
                 "--num-workers", "0", "--save-dir"]
    save_dir = tmp_path / "scores"
    assert score_model.main([*arguments, str(save_dir)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"score_model.py: interrupted; removed {save_dir}, which this run created")
    assert not save_dir.exists()
    save_dir.mkdir()
    assert score_model.main([*arguments, str(save_dir)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"score_model.py: interrupted; {save_dir} holds partial results"
    assert (save_dir / "results" / "DES").is_dir()
