"""spml.data.validation: every bad training file is found before training, in one pass (docs/method.md §3.1)."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from spml.data import DataError
from spml.data.lists import TrainSample
from spml.data.validation import SHOWN_PROBLEMS, check_training_sample, validate_training_samples


def _sample(root: Path, stem: str, size: tuple[int, int] = (48, 64)) -> TrainSample:
    rng = np.random.default_rng(len(stem))
    height, width = size
    files = {}
    for role, suffix, array in (
        ("rgb", ".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8)),
        ("depth", ".bmp", rng.integers(0, 256, (height, width), dtype=np.uint8)),
        ("scribble", ".png", rng.integers(0, 3, (height, width), dtype=np.uint8)),
        ("hed", ".jpg", rng.integers(0, 256, (height, width), dtype=np.uint8)),
        ("contour", ".png", rng.integers(0, 256, (height, width), dtype=np.uint8)),
    ):
        files[role] = root / role / f"{stem}{suffix}"
        files[role].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(files[role]), array)
    return TrainSample(**files)


@pytest.fixture()
def samples(tmp_path: Path) -> list[TrainSample]:
    return [_sample(tmp_path, f"s{index}") for index in range(12)]


def test_good_samples_pass_and_a_size_mismatch_is_a_logged_repair(samples, tmp_path, caplog):
    cv2.imwrite(str(samples[3].depth), np.zeros((24, 32), np.uint8))
    with caplog.at_level(logging.INFO, logger="spml.data"):
        validate_training_samples(samples, workers=2)
    repairs = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert repairs == [f"{samples[3].depth}: size 32x24 resized to the RGB size 64x48"]


def test_every_bad_file_is_reported_then_one_error_stops(samples, tmp_path, caplog):
    scribble = np.full((48, 64), 2, np.uint8)
    scribble[5, 5] = 5
    cv2.imwrite(str(samples[9].scribble), scribble)  # value 5, in a sample late in the list
    samples[2].depth.unlink()
    samples[4].rgb.write_bytes(samples[4].rgb.read_bytes()[:200])  # truncated JPEG
    samples[7].hed.write_text("<html></html>")
    tiny = _sample(tmp_path, "tiny", size=(20, 64))
    report = tmp_path / "run" / "data_problems.txt"
    with caplog.at_level(logging.ERROR, logger="spml.data"), pytest.raises(DataError) as caught:
        validate_training_samples([*samples, tiny], workers=2, report_path=report)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"5 unusable training file(s) in 13 samples (all listed in {report}): ")
    culprits = [samples[2].depth, samples[4].rgb, samples[7].hed, samples[9].scribble, tiny.rgb]
    for path in culprits:
        assert str(path) in message
    assert "values other than 0/1/2: [5]" in message and "too small for the training crop" in message
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert logged == [], "the one error line names every problem; nothing else is logged as an error"
    assert len(report.read_text().splitlines()) == 5 and all(str(path) in report.read_text() for path in culprits)
    assert [p.name for p in report.parent.iterdir()] == [report.name]


def test_a_long_list_of_problems_is_shortened_in_the_message_and_the_rest_logged(samples, caplog):
    for sample in samples:
        sample.contour.unlink()
    with caplog.at_level(logging.ERROR, logger="spml.data"), pytest.raises(DataError) as caught:
        validate_training_samples(samples, workers=1)
    assert str(caught.value).count("missing image file") == SHOWN_PROBLEMS and str(caught.value).endswith("; ...")
    assert "(the others logged above)" in str(caught.value)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == len(samples) - SHOWN_PROBLEMS


def test_check_of_one_sample_collects_repairs_instead_of_logging(shared_data_dir, samples, caplog):
    raw16 = sorted((shared_data_dir / "rgbd_samples" / "NLPR_raw16_noGT" / "depth").iterdir())[0]
    sample = samples[0]._replace(depth=raw16)
    with caplog.at_level(logging.WARNING, logger="spml.data"):
        check = check_training_sample(sample)
    assert check.problems == [] and not caplog.records
    assert [path for path, _ in check.repairs] == [str(raw16), str(raw16)]  # 16-bit scaled, then resized
