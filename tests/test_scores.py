"""spml.evaluation.scores / tables: metric numbers against pysodmetrics' own fixtures (docs/method.md §5)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spml.evaluation.scores import (
    FIELD,
    RELEASE,
    SCORE_KEYS,
    SaliencyScores,
    minmax_normalise,
    release_ground_truth,
)
from spml.evaluation.tables import write_score_tables

# Our score keys and the names used by the pysodmetrics fixture files.
FIXTURE_KEYS = {
    "S": "Smeasure", "maxF": "maxFm", "meanF": "meanFm", "adpF": "adpFm",
    "maxE": "maxEm", "meanE": "meanEm", "adpE": "adpEm", "wF": "wFmeasure", "MAE": "MAE",
}


def _grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _field_scores(pred_dir: Path, gt_dir: Path, names: list[str]) -> dict[str, float | int]:
    scores = SaliencyScores(FIELD)
    for name in names:
        scores.step(_grey(pred_dir / name), _grey(gt_dir / name))
    return scores.results()


@pytest.fixture(scope="module")
def per_image_fixture(shared_data_dir: Path) -> dict:
    return json.loads((shared_data_dir / "pysodmetrics_fixtures/generated_pysodmetrics-1.6.2_per_image.json").read_text())


def _assert_matches(results: dict[str, float | int], expected: dict[str, float]) -> None:
    for key, fixture_key in FIXTURE_KEYS.items():
        assert results[key] == pytest.approx(expected[fixture_key], rel=1e-12, abs=1e-15), key


def test_field_scores_equal_pysodmetrics_upstream_fixture(shared_data_dir: Path) -> None:
    root = shared_data_dir / "pysodmetrics_fixtures"
    expected = json.loads((root / "version_performance.json").read_text())["v1_4_3"]
    names = sorted(p.name for p in (root / "test_data/masks").iterdir())
    results = _field_scores(root / "test_data/preds", root / "test_data/masks", names)
    assert results["n"] == len(names)
    _assert_matches(results, expected)


def test_field_scores_equal_pysodmetrics_on_rgbd_des(shared_data_dir: Path, per_image_fixture: dict) -> None:
    expected = per_image_fixture["rgbd_samples_DES_pred_JLDCF"]
    des = shared_data_dir / "rgbd_samples/DES"
    results = _field_scores(des / "pred_JLDCF", des / "GT", sorted(expected["per_image"]))
    _assert_matches(results, expected["aggregate"])
    single = _field_scores(des / "pred_JLDCF", des / "GT", ["RGBD_data_3.png"])
    _assert_matches(single, expected["per_image"]["RGBD_data_3.png"])


def test_curves_are_ascending_in_threshold_and_give_max_and_mean_f(shared_data_dir: Path) -> None:
    des = shared_data_dir / "rgbd_samples/DES"
    scores = SaliencyScores(FIELD)
    for name in ("RGBD_data_1.png", "RGBD_data_2.png"):
        scores.step(_grey(des / "pred_JLDCF" / name), _grey(des / "GT" / name))
    curves, results = scores.curves(), scores.results()
    assert np.array_equal(curves.thresholds, np.arange(256))
    assert curves.fmeasure.max() == pytest.approx(results["maxF"])
    assert curves.fmeasure.mean() == pytest.approx(results["meanF"])
    assert np.all(np.diff(curves.recall) <= 0)  # a higher threshold keeps fewer pixels
    assert curves.recall[0] == pytest.approx(1.0)


def test_field_protocol_rejects_a_map_of_another_size() -> None:
    with pytest.raises(ValueError, match="differs from ground truth size"):
        SaliencyScores(FIELD).step(np.zeros((224, 224), np.uint8), np.zeros((300, 400), np.uint8))


def test_release_ground_truth_is_resized_to_224_and_binarised_above_half() -> None:
    gt = np.zeros((300, 500), np.uint8)
    gt[:, :250] = 255
    mask = release_ground_truth(gt)
    assert mask.shape == (224, 224) and mask.dtype == bool
    assert mask[:, :100].all() and not mask[:, 124:].any()
    # 128/255 > 0.5 counts as foreground here, while the field protocol needs > 128.
    assert release_ground_truth(np.full((50, 50), 128, np.uint8)).all()
    assert not release_ground_truth(np.full((50, 50), 127, np.uint8)).any()


def test_minmax_normalise_stretches_a_map_and_keeps_a_constant_one() -> None:
    assert np.array_equal(minmax_normalise(np.array([[10, 20], [15, 10]], np.uint8)), [[0, 1], [0.5, 0]])
    assert np.array_equal(minmax_normalise(np.full((2, 2), 51, np.uint8)), np.full((2, 2), 0.2))


def test_release_protocol_scores_224_maps_against_resized_ground_truth() -> None:
    gt = np.zeros((480, 640), np.uint8)
    gt[100:300, 200:500] = 255
    perfect = release_ground_truth(gt).astype(np.uint8) * 200  # min-max normalisation stretches 200 to 1
    scores = SaliencyScores(RELEASE)
    scores.step(perfect, gt)
    results = scores.results()
    assert results["MAE"] == 0 and results["S"] == pytest.approx(1.0) and results["maxF"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="224x224"):
        scores.step(np.zeros((480, 640), np.uint8), gt)


def test_unknown_protocol_and_empty_results_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scoring protocol 'paper'"):
        SaliencyScores("paper")
    with pytest.raises(ValueError, match="no image"):
        SaliencyScores().results()


def test_score_tables_hold_every_set_and_key(tmp_path: Path) -> None:
    scores = {
        "DES": {key: 0.5 for key in SCORE_KEYS} | {"n": 5},
        "SSD": {key: 0.25 for key in SCORE_KEYS} | {"n": 3},
    }
    paths = write_score_tables(scores, tmp_path, FIELD)
    assert [p.name for p in paths] == ["scores.md", "scores.csv", "scores.json"]
    assert json.loads((tmp_path / "scores.json").read_text()) == scores
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [row["set"] for row in rows] == ["DES", "SSD"] and float(rows[1]["MAE"]) == 0.25
    markdown = (tmp_path / "scores.md").read_text()
    assert "field protocol" in markdown and "| SSD | 0.2500" in markdown
    assert not list(tmp_path.glob(".*.tmp"))
