"""pyscripts/benchmark/compare_methods.py and its launcher on the real DES pair (docs/method.md §5, field protocol).

``JLDCF`` is ``../shared/data/rgbd_samples/DES/pred_JLDCF`` as it is; ``partial`` is made from
the same maps with one removed, one extra file, one map at half size and one unreadable map.
Expected numbers come from pysodmetrics' fixture file or from pysodmetrics run here.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics
import pytest

from spml.evaluation.comparison import PROBLEM_KINDS, TABLE_COLUMNS, compare_set
from spml.evaluation.scores import fmeasure

FIXTURE = "pysodmetrics_fixtures/generated_pysodmetrics-1.6.2_per_image.json"
FIXTURE_KEYS = {
    "S": "Smeasure", "maxF": "maxFm", "meanF": "meanFm", "adpF": "adpFm",
    "maxE": "maxEm", "meanE": "meanEm", "adpE": "adpEm", "wF": "wFmeasure", "MAE": "MAE",
}
"""Our score keys and the fixture file's names for them."""
REMOVED, RESIZED, UNREADABLE, EXTRA = "RGBD_data_5.png", "RGBD_data_2.png", "RGBD_data_3.png", "notes.txt"


def _grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def pysodmetrics_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The library's own numbers (default classes, one instance over all pairs), in our keys."""
    fm = fmeasure()
    wfm, sm, em, mae = py_sod_metrics.WeightedFmeasure(), py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure(), py_sod_metrics.MAE()
    for pred, gt in pairs:
        for metric in (fm, wfm, sm, em, mae):
            metric.step(pred=pred, gt=gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {"S": sm.get_results()["sm"], "maxF": f["curve"].max(), "meanF": f["curve"].mean(), "adpF": f["adp"],
            "maxE": e["curve"].max(), "meanE": e["curve"].mean(), "adpE": e["adp"],
            "wF": wfm.get_results()["wfm"], "MAE": mae.get_results()["mae"]}


def _assert_scores(actual: dict, expected: dict) -> None:
    for key in FIXTURE_KEYS:
        assert actual[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key


@pytest.fixture(scope="module")
def des(shared_data_dir: Path) -> Path:
    return shared_data_dir / "rgbd_samples/DES"


@pytest.fixture(scope="module")
def fixture_scores(shared_data_dir: Path) -> dict:
    return json.loads((shared_data_dir / FIXTURE).read_text())["rgbd_samples_DES_pred_JLDCF"]


@pytest.fixture(scope="module")
def methods(des: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Method folders ``<root>/DES/*.png``: JLDCF unchanged, and the damaged ``partial`` copy."""
    root = tmp_path_factory.mktemp("methods")
    shutil.copytree(des / "pred_JLDCF", root / "JLDCF/DES")
    partial = root / "partial/DES"
    shutil.copytree(des / "pred_JLDCF", partial)
    (partial / REMOVED).unlink()
    (partial / EXTRA).write_text("not a map\n")
    half = _grey(partial / RESIZED)
    cv2.imwrite(str(partial / RESIZED), cv2.resize(half, (half.shape[1] // 2, half.shape[0] // 2)))
    (partial / UNREADABLE).write_bytes(b"\x89PNG truncated")
    return {"JLDCF": root / "JLDCF", "partial": root / "partial"}


def _compare(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "pyscripts/benchmark/compare_methods.py", *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(repo_root: Path, shared_data_dir: Path, methods: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The tool on the shared sample root (DES has maps; NJU2K, SSD, ... have none) with per-image scores."""
    out = tmp_path_factory.mktemp("comparison")
    process = _compare(repo_root, "--gt-root", str(shared_data_dir / "rgbd_samples"), "--out", str(out),
                       "--method", f"JLDCF={methods['JLDCF']}", "--method", f"partial={methods['partial']}",
                       "--per-image")
    assert process.returncode == 0, process.stderr
    return out, process


@pytest.mark.slow  # runs the tool in a subprocess
def test_per_image_scores_equal_the_pysodmetrics_fixture(run, fixture_scores: dict) -> None:
    out, _ = run
    per_image = json.loads((out / "DES/per_image.json").read_text())
    assert sorted(per_image["JLDCF"]) == sorted(fixture_scores["per_image"])
    for name, expected in fixture_scores["per_image"].items():
        _assert_scores(per_image["JLDCF"][name], {key: expected[value] for key, value in FIXTURE_KEYS.items()})
        assert per_image["JLDCF"][name]["n"] == 1


@pytest.mark.slow  # runs the tool in a subprocess
def test_set_row_equals_the_pysodmetrics_aggregate(run, fixture_scores: dict) -> None:
    out, _ = run
    table = json.loads((out / "DES/scores.json").read_text())
    assert list(table) == ["JLDCF", "partial"] and list(table["JLDCF"]) == list(TABLE_COLUMNS)
    expected = fixture_scores["aggregate"]
    _assert_scores(table["JLDCF"], {key: expected[value] for key, value in FIXTURE_KEYS.items()})
    assert table["JLDCF"]["n"] == 5 and all(table["JLDCF"][kind] == 0 for kind in PROBLEM_KINDS)


@pytest.mark.slow  # runs the tool in a subprocess
def test_second_method_is_scored_beside_with_its_problems_counted(run, des: Path, methods: dict[str, Path]) -> None:
    out, _ = run
    row = json.loads((out / "DES/scores.json").read_text())["partial"]
    assert {kind: row[kind] for kind in PROBLEM_KINDS} == {"missing": 1, "extra": 1, "resized": 1, "unreadable": 1}
    assert row["n"] == 3
    pairs = []
    for name in ("RGBD_data_1.png", RESIZED, "RGBD_data_4.png"):  # the scored maps, in name order
        gt, pred = _grey(des / "GT" / name), _grey(methods["partial"] / "DES" / name)
        pairs.append((cv2.resize(pred, gt.shape[::-1], interpolation=cv2.INTER_LINEAR), gt))
    _assert_scores(row, pysodmetrics_scores(pairs))
    problems = json.loads((out / "problems.json").read_text())["DES"]["methods"]["partial"]
    assert problems["missing"] == [REMOVED] and problems["extra"] == [EXTRA]
    assert problems["unreadable"] == [UNREADABLE]
    assert problems["resized"] == [{"file": RESIZED, "map_size": [240, 320], "gt_size": [480, 640]}]


@pytest.mark.slow  # runs the tool in a subprocess
def test_tables_and_curves_are_written_per_set_and_report_every_problem(run) -> None:
    out, process = run
    rows = list(csv.DictReader((out / "DES/scores.csv").open()))
    assert [row["method"] for row in rows] == ["JLDCF", "partial"] and rows[1]["missing"] == "1"
    markdown = (out / "DES/scores.md").read_text()
    assert "| JLDCF | 0.9603 |" in markdown and "field protocol" in markdown
    for name in ("pr_curves.png", "f_threshold_curves.png"):
        assert cv2.imread(str(out / "DES" / name)) is not None
    report = (out / "comparison.md").read_text()
    assert "DES / partial: 1 missing (RGBD_data_5.png); 1 extra (notes.txt); 1 resized to the GT size " \
           "(RGBD_data_2.png 320x240->640x480); 1 unreadable (RGBD_data_3.png)" in report
    assert report in process.stdout
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow  # runs the tool in a subprocess
def test_a_method_without_the_set_shows_a_dash(run) -> None:
    out, _ = run
    table = json.loads((out / "NJU2K/scores.json").read_text())
    assert table["JLDCF"]["S"] is None and table["JLDCF"]["n"] == 0 and table["JLDCF"]["missing"] == 8
    assert "| JLDCF | – | – |" in (out / "NJU2K/scores.md").read_text()
    assert next(csv.DictReader((out / "NJU2K/scores.csv").open()))["MAE"] == "–"
    assert not (out / "NJU2K/pr_curves.png").exists()
    assert "NJU2K / JLDCF: no folder" in (out / "comparison.md").read_text()


def test_release_layout_and_set_selection(des: Path, methods: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(des / "GT", tmp_path / "data/sod/Test/DES/GT")
    shutil.copytree(des / "GT", tmp_path / "data/sod/Test/SSD/GT")
    result = compare_set("DES", tmp_path / "data/sod/Test/DES/GT", {"JLDCF": methods["JLDCF"] / "DES"})
    assert result.table()["JLDCF"]["n"] == 5 and set(result.curves()) == {"JLDCF"}
    from pyscripts.benchmark.compare_methods import main

    assert main(["--gt-root", str(tmp_path / "data"), "--sets", "DES", "--method", f"JLDCF={methods['JLDCF']}",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert list(json.loads((tmp_path / "out/DES/scores.json").read_text())) == ["JLDCF"]
    assert not (tmp_path / "out/SSD").exists()


def test_a_folder_per_set_is_taken_as_it_is(repo_root: Path, shared_data_dir: Path, des: Path,
                                            fixture_scores: dict, tmp_path: Path) -> None:
    """``NAME:SET=DIR``: the shared ``DES/pred_JLDCF`` folder itself, beside a root without DES."""
    (tmp_path / "empty").mkdir()
    process = _compare(repo_root, "--gt-root", str(shared_data_dir / "rgbd_samples"), "--sets", "DES", "SSD",
                       "--out", str(tmp_path / "out"), "--method", f"JLDCF:DES={des / 'pred_JLDCF'}",
                       "--method", f"other={tmp_path / 'empty'}")
    assert process.returncode == 0, process.stderr
    table = json.loads((tmp_path / "out/DES/scores.json").read_text())
    expected = fixture_scores["aggregate"]
    _assert_scores(table["JLDCF"], {key: expected[value] for key, value in FIXTURE_KEYS.items()})
    assert table["other"]["S"] is None and table["other"]["missing"] == 5
    report = (tmp_path / "out/comparison.md").read_text()
    assert "SSD / JLDCF: no folder given for SSD: all 3 maps missing" in report
    assert f"DES / other: no folder {tmp_path / 'empty' / 'DES'}: all 5 maps missing\n" in report  # no images: no hint


def test_a_method_folder_holding_one_sets_maps_itself_is_pointed_out(shared_data_dir: Path, des: Path,
                                                                      tmp_path: Path, capsys) -> None:
    """``NAME=DIR`` with DIR the shared ``DES/pred_JLDCF``: no ``DES/`` in it, so every map is missing,
    and the problem line says how to give one set's maps."""
    from pyscripts.benchmark.compare_methods import main

    assert main(["--gt-root", str(shared_data_dir / "rgbd_samples"), "--sets", "DES", "--no-progress",
                 "--method", f"A={des / 'pred_JLDCF'}", "--out", str(tmp_path / "out")]) == 0
    folder = des / "pred_JLDCF"
    line = (f"- DES / A: no folder {folder / 'DES'}: all 5 maps missing ({folder} holds 5 images itself and no "
            f"<SET>/ folder: for one set's maps use --method A:DES={folder})")
    assert line in (tmp_path / "out/comparison.md").read_text().splitlines() and line in capsys.readouterr().out
    problems = json.loads((tmp_path / "out/problems.json").read_text())["DES"]["methods"]["A"]
    assert problems["root_images"] == 5 and len(problems["missing"]) == 5
    assert json.loads((tmp_path / "out/DES/scores.json").read_text())["A"]["missing"] == 5


def test_images_in_a_method_folder_count_only_without_set_folders(tmp_path: Path) -> None:
    from spml.evaluation.comparison import root_images

    for name in ("a.png", "b.JPG", "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "other").mkdir()
    assert root_images(tmp_path, ["DES", "SSD"]) == 2
    (tmp_path / "SSD").mkdir()
    assert root_images(tmp_path, ["DES", "SSD"]) == 0


def test_an_out_that_cannot_be_written_stops_with_one_line_before_scoring(shared_data_dir: Path, des: Path,
                                                                           tmp_path: Path, capsys, monkeypatch) -> None:
    from pyscripts.benchmark import compare_methods

    monkeypatch.setattr(compare_methods, "compare_set", lambda *args: pytest.fail("scoring started"))
    (tmp_path / "file").write_text("x")
    for out, problem in ((tmp_path / "file", "exists and is not a folder"),
                         (tmp_path / "file" / "out", f"cannot be created: {tmp_path / 'file'} is not a folder")):
        assert compare_methods.main(["--gt-root", str(shared_data_dir / "rgbd_samples"), "--out", str(out),
                                     "--method", f"JLDCF:DES={des / 'pred_JLDCF'}"]) == 2
        assert capsys.readouterr().err == f"error: --out {out}: {problem}\n"
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_ctrl_c_removes_the_out_folder_this_run_created(shared_data_dir: Path, des: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    from pyscripts.benchmark import compare_methods

    real_write = compare_methods.write_set_outputs

    def ctrl_c_after_the_first_set(*args, **kwargs):
        real_write(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_methods, "write_set_outputs", ctrl_c_after_the_first_set)
    with pytest.raises(KeyboardInterrupt):
        compare_methods.main(["--gt-root", str(shared_data_dir / "rgbd_samples"), "--out", str(tmp_path / "out"),
                              "--method", f"JLDCF:DES={des / 'pred_JLDCF'}", "--no-progress"])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # runs the tool in a subprocess
def test_launcher_passes_options_and_fills_defaults(repo_root: Path, des: Path, methods: dict[str, Path],
                                                    tmp_path: Path) -> None:
    shutil.copytree(des / "GT", tmp_path / "gt/DES/GT")
    process = subprocess.run(["bash", "bashscripts/compare_methods.sh", "--method", f"JLDCF={methods['JLDCF']}"],
                             cwd=repo_root, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "GT_ROOT": str(tmp_path / "gt"), "OUT_DIR": str(tmp_path / "out")})
    assert process.returncode == 0, process.stderr
    assert json.loads((tmp_path / "out/DES/scores.json").read_text())["JLDCF"]["n"] == 5


@pytest.mark.slow  # runs the tool in a subprocess
@pytest.mark.parametrize("args, message", [
    (["--method", "JLDCF"], "--method 'JLDCF': expected NAME=DIR"),
    (["--method", "a|b={JLDCF}"], "NAME must be"),
    (["--method", "JLDCF={JLDCF}", "--method", "JLDCF={partial}"], "JLDCF given twice"),
    (["--method", "JLDCF:={JLDCF}"], "expected NAME=DIR or NAME:SET=DIR"),
    (["--method", "JLDCF:NOPE={JLDCF}"], "no ground truth for set 'NOPE'"),
    (["--method", "X={missing}"], "folder not found"),
    (["--method", "JLDCF={JLDCF}", "--sets", "NOPE"], "for set 'NOPE'"),
    (["--method", "JLDCF={JLDCF}", "--gt-root-missing"], "ground-truth root not found"),
    ([], "the following arguments are required: --method"),
])
def test_bad_arguments_stop_with_one_line_and_status_2(repo_root: Path, shared_data_dir: Path, methods: dict,
                                                       tmp_path: Path, args: list[str], message: str) -> None:
    gt_root = str(tmp_path / "nowhere") if "--gt-root-missing" in args else str(shared_data_dir / "rgbd_samples")
    args = [arg.format(missing=tmp_path / "missing", **methods) for arg in args if arg != "--gt-root-missing"]
    process = _compare(repo_root, "--gt-root", gt_root, "--out", str(tmp_path / "out"), *args)
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and message in process.stderr, process.stderr
    assert not (tmp_path / "out").exists()

