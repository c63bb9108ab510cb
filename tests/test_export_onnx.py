"""pyscripts/tools/export_onnx.py: the exported graph against PyTorch and the forward fixture in onnxruntime.

Exporting the 32M-parameter network takes 10-60 s on a CPU, so the ``slow`` tests share one
export (dynamic batch, with the embedding). The tool's own logic (verification, atomic write,
errors) is also checked on a tiny stand-in network, quickly.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import hubconf  # noqa: E402
from pyscripts.tools import export_onnx as tool  # noqa: E402
from reference_tables import float32_tolerances  # noqa: E402

FLOAT32_MARGIN = 2.0
"""Allowed multiple of the reference's own float32-vs-float64 difference (as tests/test_network_fixture.py)."""


def _tool(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "pyscripts/tools/export_onnx.py", *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=900)


def _session(path: Path) -> "onnxruntime.InferenceSession":
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- the real network (slow)

@pytest.fixture(scope="module")
def exported(repo_root: Path, deterministic_checkpoint: Path, reference_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """One export of the network with deterministic weights: dynamic batch, div1 and embedding."""
    out = tmp_path_factory.mktemp("onnx")
    process = _tool(repo_root, "--checkpoint", str(deterministic_checkpoint), "--out", str(out / "dhfr.onnx"),
                    "--embedding", "--inputs", str(reference_dir / "forward_eval.npz"), "--timing-runs", "1",
                    "--report", str(out / "report.json"))
    assert process.returncode == 0, process.stderr
    return out / "dhfr.onnx", json.loads((out / "report.json").read_text()), process


@pytest.mark.slow
def test_export_verifies_itself_and_times_both_runtimes(exported) -> None:
    _, report, process = exported
    assert report["batch"] == "dynamic" and report["outputs"] == ["div1", "embedding"]
    assert all(value <= tool.TOLERANCE for value in report["max_abs_diff"].values())
    assert report["timing"]["batch"] == 1 and report["timing"]["onnxruntime_ms"] > 0
    assert "max |diff| div1" in process.stdout and "onnxruntime" in process.stdout


@pytest.mark.slow
def test_graph_has_named_inputs_and_outputs_with_a_free_batch(exported) -> None:
    path, _, _ = exported
    graph = onnx.load(str(path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["image", "depth"] and [o.name for o in graph.output] == ["div1", "embedding"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]


@pytest.mark.slow
def test_onnxruntime_matches_the_forward_fixture(exported, reference_dir: Path) -> None:
    path, _, _ = exported
    with np.load(reference_dir / "forward_eval.npz") as data:
        reference = dict(data)
    div1, embedding = _session(path).run(None, {"image": reference["image"], "depth": reference["depth"]})
    tolerances = float32_tolerances(reference_dir / "README.md")
    for name, value in (("div1", div1), ("embedding", embedding)):
        difference = np.abs(value - reference[name]).max()
        assert difference <= FLOAT32_MARGIN * tolerances[name], f"{name}: max |diff| {difference:.3g}"


@pytest.mark.slow
def test_onnxruntime_matches_pytorch_on_real_images_in_a_batch_of_three(exported, shared_data_dir: Path,
                                                                        deterministic_checkpoint: Path) -> None:
    path, _, _ = exported
    des = shared_data_dir / "rgbd_samples/DES"
    pairs = [hubconf.dhfr_preprocess(Image.open(des / f"RGB/RGBD_data_{i}.jpg"), Image.open(des / f"depth/RGBD_data_{i}.bmp"))
             for i in (1, 2, 3)]
    image, depth = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    (div1,) = _session(path).run(["div1"], {"image": image.numpy(), "depth": depth.numpy()})
    model = hubconf.dhfr(deterministic_checkpoint)
    with torch.no_grad():
        expected = model(image, depth)["div1"].numpy()
    assert div1.shape == (3, 1, 224, 224)
    assert np.abs(div1 - expected).max() <= tool.TOLERANCE


# ----------------------------------------------------------------------------- the tool on a stand-in network

class TinyNetwork(nn.Module):
    """Stand-in with the network's interface: ``model(image, depth)`` -> ``div1``, ``embedding``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.conv(nn.functional.avg_pool2d(image + depth, 4))
        div1 = torch.sigmoid(nn.functional.interpolate(embedding.mean(1, keepdim=True), size=224, mode="bilinear"))
        return {"div1": div1, "embedding": embedding}


@pytest.fixture
def tiny_tool(monkeypatch) -> None:
    monkeypatch.setattr(tool, "load_model", lambda checkpoint, device: TinyNetwork().eval())


def test_tool_writes_a_verified_file_and_its_report(tiny_tool, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tool, "DEFAULT_INPUTS", tmp_path / "absent.npz")  # no --inputs and no fixture: random inputs
    args = ["--checkpoint", "unused.pth", "--out", str(tmp_path / "tiny.onnx"), "--batch", "2", "--opset", "13",
            "--timing-runs", "2", "--report", str(tmp_path / "report.json")]
    assert tool.main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["batch"] == 2 and report["outputs"] == ["div1"] and "seeded random inputs" in report["inputs"]
    assert report["timing"]["batch"] == 2 and report["timing"]["runs"] == 2
    graph = onnx.load(str(tmp_path / "tiny.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_verification_exits_1_and_writes_nothing(tiny_tool, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tool, "max_differences", lambda session, model, batches, names: {"div1": 1.0})
    args = ["--checkpoint", "unused.pth", "--out", str(tmp_path / "tiny.onnx"), "--timing-runs", "0",
            "--report", str(tmp_path / "report.json")]
    assert tool.main(args) == 1
    assert capsys.readouterr().err == f"error: onnxruntime differs from PyTorch by more than 0.0001 (div1); " \
                                      f"{tmp_path / 'tiny.onnx'} not written\n"
    assert not list(tmp_path.iterdir())


def _npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--inputs", "{tmp}/absent.npz"], "error: --inputs {tmp}/absent.npz: file not found"),
    (["--inputs", "{tmp}/notes.txt"], "error: --inputs {tmp}/notes.txt: not an npz file"),
    (["--inputs", "{image_only}"], "error: --inputs {image_only}: no 'depth' array"),
    (["--inputs", "{small}"], "error: --inputs {small}: 'image' and 'depth' must both be [N, 3, 224, 224], N >= 1, "
                              "got [1, 3, 8, 8] and [1, 3, 8, 8]"),
    (["--threads", "0"], "error: argument --threads: expected a positive integer, got '0' (see --help)"),
    (["--tolerance", "-1"], "error: argument --tolerance: expected a number > 0, got '-1' (see --help)"),
    (["--tolerance", "nan"], "error: argument --tolerance: expected a number > 0, got 'nan' (see --help)"),
    (["--timing-runs", "-2"], "error: argument --timing-runs: expected an integer >= 0, got '-2' (see --help)"),
    (["--out", "{tmp}"], "error: argument --out: {tmp}: is a folder (see --help)"),
    (["--out", "{tmp}/notes.txt/x.onnx"], "error: argument --out: {tmp}/notes.txt/x.onnx: {tmp}/notes.txt: exists and is not a folder (see --help)"),
    (["--report", "{tmp}/notes.txt/r.json"], "error: argument --report: {tmp}/notes.txt/r.json: {tmp}/notes.txt: exists and is not a folder (see --help)"),
    (["--report", "{tmp}/x.onnx"], "error: --report {tmp}/x.onnx: the same file as --out (see --help)"),
])
def test_bad_arguments_and_inputs_stop_with_one_line_before_anything_is_loaded_or_written(
        tmp_path: Path, monkeypatch, capsys, args: list[str], message: str) -> None:
    monkeypatch.setattr(tool, "load_model", lambda checkpoint, device: pytest.fail("the model was loaded"))
    (tmp_path / "notes.txt").write_text("not an npz file\n")
    names = {"tmp": tmp_path, "image_only": _npz(tmp_path / "image_only.npz", image=np.zeros((1, 3, 224, 224))),
             "small": _npz(tmp_path / "small.npz", image=np.zeros((1, 3, 8, 8)), depth=np.zeros((1, 3, 8, 8)))}
    before = sorted(tmp_path.iterdir())
    args = ["--checkpoint", "unused.pth", "--out", str(tmp_path / "x.onnx"), *(arg.format(**names) for arg in args)]
    try:
        status = tool.main(args)
    except SystemExit as stopped:  # an argument the parser rejects
        status = stopped.code
    assert status == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(message.format(**names)), line
    assert sorted(tmp_path.iterdir()) == before


def test_verification_batches_cover_batch_sizes_one_and_two_or_the_fixed_size() -> None:
    image, depth = np.arange(2)[:, None] * np.ones((2, 3)), -np.arange(2)[:, None] * np.ones((2, 3))
    assert [len(b[0]) for b in tool.verification_batches(image, depth, None)] == [1, 1, 2]
    (fixed,) = tool.verification_batches(image, depth, 3)
    assert list(fixed[0][:, 0]) == [0, 1, 0] and list(fixed[1][:, 0]) == [0, -1, 0]
    assert tool.dynamic_axes(4, ("div1",)) is None
    assert tool.dynamic_axes(None, ("div1",)) == {"image": {0: "batch"}, "depth": {0: "batch"}, "div1": {0: "batch"}}


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "'0' is neither 'dynamic' nor a positive integer"),
    (["--opset", "9"], "argument --opset: invalid choice"),
    (["--checkpoint", "{missing}"], "checkpoint file not found"),
])
def test_bad_arguments_stop_with_one_line_and_status_2(repo_root: Path, tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    args = [arg.format(missing=tmp_path / "missing.pth") for arg in args]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(tmp_path / "missing.pth")]
    process = _tool(repo_root, "--out", str(tmp_path / "x.onnx"), *args)
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and message in process.stderr, process.stderr
    assert not (tmp_path / "x.onnx").exists()
