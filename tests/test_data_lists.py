"""spml.data.lists: list files, scanning by stem, bad lists (docs/method.md §3.1)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spml.data import DataError
from spml.data.lists import (TRAIN_FOLDERS, default_train_list, ensure_train_list, read_train_list,
                             scan_test_sets, scan_train_samples, write_train_list)

EXTENSIONS = {"rgb": ".jpg", "depth": ".bmp", "scribble": ".png", "hed": ".jpg", "contour": ".png"}


def make_train_root(root: Path, stems: list[str], missing: dict[str, str] | None = None) -> Path:
    """Empty files in the release's training layout; ``missing`` maps a stem to a role left out."""
    missing = missing or {}
    for role, folder in TRAIN_FOLDERS.items():
        (root / folder).mkdir(parents=True)
        for stem in stems:
            if missing.get(stem) != role:
                (root / folder / f"{stem}{EXTENSIONS[role]}").touch()
    return root


def test_train_list_round_trip(tmp_path):
    root = make_train_root(tmp_path, ["b", "a", "c"])
    samples = scan_train_samples(root)
    assert [sample.rgb.stem for sample in samples] == ["a", "b", "c"]
    assert all(sample.hed.parent.name == "hed" and sample.hed.stem == sample.rgb.stem for sample in samples)
    write_train_list(samples, default_train_list(root), root)
    first_line = default_train_list(root).read_text().splitlines()[0]
    assert first_line.split() == [f"{folder}/a{EXTENSIONS[role]}" for role, folder in TRAIN_FOLDERS.items()]
    assert read_train_list(default_train_list(root), root) == samples


@pytest.mark.parametrize("bad_line, message", [
    ("sod/RGB_Train/a.jpg sod/Depth_Train/a.bmp", r"train.txt:2: expected 5 columns"),
    ("sod/RGB_Train/a.jpg sod/Depth_Train/a.bmp sod/scribble_tip/a.png sod/hed/a.jpg sod/contours_sum/zz.png",
     r"train.txt:2: missing file .*zz.png"),
])
def test_bad_train_list_lines_name_file_and_line(tmp_path, bad_line, message):
    root = make_train_root(tmp_path, ["a"])
    list_path = default_train_list(root)
    write_train_list(scan_train_samples(root), list_path, root)
    list_path.write_text(list_path.read_text() + bad_line + "\n")
    with pytest.raises(DataError, match=message):
        read_train_list(list_path, root)



def test_empty_list_names_the_list(tmp_path):
    list_path = tmp_path / "train.txt"
    list_path.write_text("\n  \n")
    with pytest.raises(DataError, match=r"train.txt: list is empty"):
        read_train_list(list_path, tmp_path)
    with pytest.raises(DataError, match="list file not found: .*absent.txt"):
        read_train_list(tmp_path / "absent.txt", tmp_path)


def test_scan_pairs_by_stem_any_extension_and_reports_unpaired(tmp_path, caplog):
    root = make_train_root(tmp_path, ["a", "b", "c"], missing={"b": "hed"})
    (root / TRAIN_FOLDERS["depth"] / "a.bmp").rename(root / TRAIN_FOLDERS["depth"] / "a.png")
    with caplog.at_level(logging.WARNING, logger="spml.data"):
        samples = scan_train_samples(root)
    assert [sample.rgb.stem for sample in samples] == ["a", "c"]
    assert samples[0].depth.name == "a.png"
    assert any("1 unpaired" in record.getMessage() and ": b" in record.getMessage() for record in caplog.records)


def test_scan_rejects_missing_folder_and_ambiguous_stem(tmp_path):
    root = make_train_root(tmp_path, ["a"])
    (root / TRAIN_FOLDERS["hed"] / "a.png").touch()
    with pytest.raises(DataError, match="two images with the stem 'a'"):
        scan_train_samples(root)
    with pytest.raises(DataError, match="missing data folder: .*RGB_Train"):
        scan_train_samples(tmp_path / "elsewhere")


def test_scan_test_sets_of_real_samples(shared_data_dir):
    root = shared_data_dir / "rgbd_samples"
    sets = scan_test_sets(root)
    assert list(sets) == ["NJU2K", "DES", "SSD", "DUT-RGBD_resized256", "NLPR_raw16_noGT"]
    for name, samples in sets.items():
        assert len(samples) == len(list((root / name / "RGB").iterdir()))
        assert all(sample.depth.stem == sample.rgb.stem for sample in samples)
    assert all(sample.gt is None for sample in sets["NLPR_raw16_noGT"])
    assert all(sample.gt is not None and sample.gt.stem == sample.rgb.stem for sample in sets["DES"])


def test_scan_test_sets_prefers_sod_test(tmp_path):
    for root_set in ("sod/Test/ZZZ", "sod/Test/LFSD", "Other"):
        for folder in ("RGB", "depth"):
            (tmp_path / root_set / folder).mkdir(parents=True)
            (tmp_path / root_set / folder / f"s{'.jpg' if folder == 'RGB' else '.png'}").touch()
    assert list(scan_test_sets(tmp_path)) == ["LFSD", "ZZZ"]


def test_ensure_train_list_writes_once_and_then_keeps_the_list(tmp_path):
    root = make_train_root(tmp_path, ["a", "b"])
    path = ensure_train_list(root)
    assert path == default_train_list(root) and len(read_train_list(path, root)) == 2
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert len(read_train_list(ensure_train_list(root), root)) == 1
    custom = ensure_train_list(root, tmp_path / "mine.txt")
    assert custom == tmp_path / "mine.txt" and len(read_train_list(custom, root)) == 2
