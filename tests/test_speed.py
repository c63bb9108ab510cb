"""pyscripts/benchmark/speed.py ``profile``: where the time of a training step goes, per phase and per kernel."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent

from pyscripts.benchmark import speed
from pyscripts.benchmark.speed import profile_training, summarise_profile
from spml.training.step import PHASES


def test_a_cpu_profile_splits_a_training_step_into_phases_and_top_ops(tmp_path):
    result = profile_training(torch.device("cpu"), batch_size=1, steps=1, top=10, trace_dir=tmp_path, warmup_steps=0)
    phases = {row["phase"]: row for row in result["phases"]}
    assert list(phases) == [*PHASES, "total"]  # every op ran under a phase label
    assert all(row["calls"] > 0 and row["device_ms"] >= 0 for row in phases.values())
    assert phases["forward"]["calls"] > 100 and phases["forward"]["device_ms"] > 0
    assert phases["total"]["calls"] == sum(phases[name]["calls"] for name in PHASES)
    top = result["top"]
    assert len(top) == 10 and all(row["name"].startswith("aten::") and "op" not in row for row in top)
    times = [row["ms_per_step"] for row in top]
    assert times == sorted(times, reverse=True)
    assert 0 < sum(row["share_pct"] for row in top) <= 100
    assert (tmp_path / "profile_cpu_batch1.json").is_file()
    assert {row["passes"] for row in result["phases"]} == {"separate"}, "as training runs on the CPU by default"
    assert speed.default_passes(torch.device("cuda")) == "joint"


def _event(name: str, start: float, end: float, device_type: DeviceType = DeviceType.CPU, annotation: bool = False,
           thread: int = 1) -> FunctionEvent:
    return FunctionEvent(id=0, name=name, thread=thread, start_us=start, end_us=end, device_type=device_type,
                         is_user_annotation=annotation)


def test_cuda_kernels_count_for_the_phase_whose_host_span_launched_them():
    forward, backward = _event("forward", 0, 100, annotation=True), _event("backward", 100, 300, annotation=True)
    conv = _event("aten::convolution", 10, 20)
    copy = _event("aten::copy_", 30, 40)
    conv_backward = _event("aten::convolution_backward", 150, 160, thread=2)  # autograd's device thread
    conv.append_kernel("gemm", 0, 30.0)
    copy.append_kernel("gemm", 0, 10.0)
    copy.append_kernel("copy_kernel", 0, 5.0)
    conv_backward.append_kernel("gemm", 0, 60.0)
    device = [_event(name, start, start + duration, DeviceType.CUDA)
              for name, start, duration in (("gemm", 20, 30.0), ("gemm", 50, 10.0), ("copy_kernel", 60, 5.0),
                                            ("gemm", 200, 60.0), ("lost_kernel", 400, 2.0))]
    gpu_annotation = _event("forward", 20, 65, DeviceType.CUDA, annotation=True)
    events = [forward, backward, conv, copy, conv_backward, *device, gpu_annotation]
    phases, top = summarise_profile(events, cuda=True, steps=1, top=5)
    rows = {row["phase"]: (row["device_ms"], row["calls"]) for row in phases}
    assert rows["forward"] == pytest.approx((0.045, 3)) and rows["backward"] == pytest.approx((0.06, 1))
    assert rows["unlinked"] == pytest.approx((0.002, 1)) and rows["total"] == pytest.approx((0.107, 5))
    assert "other" not in rows and rows["objective"] == (0.0, 0)
    assert [(row["name"], row["op"], row["calls"]) for row in top] == [("gemm", "aten::convolution_backward", 3),
                                                                      ("copy_kernel", "aten::copy_", 1)]
    assert top[0]["mean_us"] == pytest.approx(100 / 3) and top[0]["share_pct"] == pytest.approx(100 * 100 / 107)


def test_per_step_figures_divide_by_the_steps():
    forward, op = _event("forward", 0, 100, annotation=True), _event("aten::mm", 10, 20)
    op.append_kernel("gemm", 0, 40.0)
    op.append_kernel("gemm", 0, 40.0)
    device = [_event("gemm", start, start + 40.0, DeviceType.CUDA) for start in (20, 60)]
    phases, top = summarise_profile([forward, op, *device], cuda=True, steps=2, top=5)
    assert phases[1] == {"phase": "forward", "device_ms": pytest.approx(0.04), "calls": 1}
    assert top == [{"name": "gemm", "op": "aten::mm", "calls": 1, "ms_per_step": pytest.approx(0.04), "mean_us": 40.0,
                    "share_pct": 100.0}]


def _refuse_work(monkeypatch) -> None:
    def refuse(args):
        raise AssertionError("work started")

    for name in ("run_objective", "run_profile", "run_train", "run_eval", "run_loader", "run_all"):
        monkeypatch.setattr(speed, name, refuse)


def _one_line_error(arguments: list[str], capsys) -> str:
    """The one stderr line of ``speed.main(arguments)``, which must stop with status 2."""
    with pytest.raises(SystemExit) as stopped:
        speed.main(arguments)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("arguments, message", [
    (["profile", "--devices", "cpu", "--precision", "bf16"], "--precision bf16: needs a CUDA device (the CPU runs fp32) (--devices cpu)"),
    (["train", "--devices", "tpu"], "--devices tpu: not a device (cpu, cuda or cuda:N)"),
    pytest.param(["train", "--devices", "cuda"], "--devices cuda: no CUDA device on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_bad_devices_and_precisions_stop_with_one_line_before_any_work(arguments, message, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    assert _one_line_error(arguments, capsys).endswith(f": error: {message} (see --help)")


@pytest.mark.parametrize("arguments, message", [
    (["train", "--batch-size", "0"], "train: error: argument --batch-size: expected a positive integer, got '0'"),
    (["train", "--steps", "0"], "train: error: argument --steps: expected a positive integer, got '0'"),
    (["all", "--steps", "-1"], "all: error: argument --steps: expected a positive integer, got '-1'"),
    (["eval", "--repeats", "0"], "eval: error: argument --repeats: expected a positive integer, got '0'"),
    (["eval", "--eval-batch-sizes", "1", "0"], "eval: error: argument --eval-batch-sizes: expected a positive integer, got '0'"),
    (["objective", "--batch-sizes", "x"], "objective: error: argument --batch-sizes: expected a positive integer, got 'x'"),
    (["profile", "--top", "0"], "profile: error: argument --top: expected a positive integer, got '0'"),
    (["loader", "--workers", "0", "-1"], "loader: error: argument --workers: expected an integer >= 0, got '-1'"),
    (["loader", "--loader-batches", "0"], "loader: error: argument --loader-batches: expected a positive integer, got '0'"),
    (["loader", "--devices", "cpu"], "error: unrecognized arguments: --devices cpu"),
    (["train", "--workers", "1"], "error: unrecognized arguments: --workers 1"),
])
def test_bad_numbers_and_options_of_other_subcommands_stop_with_one_line(arguments, message, capsys, monkeypatch):
    _refuse_work(monkeypatch)
    assert _one_line_error(arguments, capsys).endswith(f"{message} (see --help)")


def _training_files(root, stems: list[str]) -> None:
    """Empty files of complete training samples (what the scan pairs; not images to load)."""
    for folder, suffix in (("RGB_Train", ".jpg"), ("Depth_Train", ".bmp"), ("scribble_tip", ".png"), ("hed", ".jpg"),
                           ("contours_sum", ".png")):
        (root / "sod" / folder).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            (root / "sod" / folder / f"{stem}{suffix}").touch()


@pytest.mark.parametrize("arguments, message", [
    (["loader", "--data-root", "{tmp}/absent"], "--data-root {tmp}/absent: folder not found"),
    (["all", "--data-root", "{tmp}/file"], "--data-root {tmp}/file: not a folder"),
    (["loader", "--data-root", "{tmp}"], "--data-root {tmp}: missing data folder: {tmp}/sod/RGB_Train"),
    (["all", "--data-root", "{tmp}/two", "--batch-size", "3"],
     "--data-root {tmp}/two: 2 training samples make no batch of --batch-size 3"),
    (["loader", "--batch-size", "65"],
     "--batch-size 65: the synthetic dataset of the loader benchmark has 64 samples; give a --data-root with more"),
    (["train", "--json", "{tmp}/file/speed.json"],
     "argument --json: {tmp}/file/speed.json: {tmp}/file: exists and is not a folder"),
    (["loader", "--json", "{tmp}/file/new/speed.json"],
     "argument --json: {tmp}/file/new/speed.json: {tmp}/file/new: cannot be created: {tmp}/file is not a folder"),
    (["eval", "--json", "{tmp}/two"], "argument --json: {tmp}/two: is a folder"),
    (["profile", "--trace", "{tmp}/file"], "--trace {tmp}/file: exists and is not a folder"),
])
def test_bad_data_roots_and_output_paths_stop_with_one_line_before_any_work(arguments, message, tmp_path, capsys,
                                                                            monkeypatch):
    _refuse_work(monkeypatch)
    (tmp_path / "file").write_text("x")
    _training_files(tmp_path / "two", ["a", "b"])
    before = sorted(tmp_path.rglob("*"))
    line = _one_line_error([argument.format(tmp=tmp_path) for argument in arguments], capsys)
    assert line.endswith(f"error: {message.format(tmp=tmp_path)} (see --help)")
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"


def test_a_data_root_with_enough_samples_is_scanned_once_for_the_loader(tmp_path, monkeypatch):
    _training_files(tmp_path, ["a", "b"])
    calls = []

    def time_loader(*args) -> list[dict]:
        calls.append(args)
        return []

    monkeypatch.setattr(speed, "time_loader", time_loader)
    speed.main(["loader", "--data-root", str(tmp_path), "--batch-size", "2", "--workers", "0", "3"])
    [(data_root, workers, batch_size, batches, samples)] = calls
    assert (data_root, workers, batch_size, batches) == (tmp_path, [0, 3], 2, 20)
    assert [sample.rgb.name for sample in samples] == ["a.jpg", "b.jpg"]


def test_each_subcommand_lists_only_its_options_and_the_help_is_plain_text(capsys):
    options = {}
    for command in ("objective", "profile", "train", "eval", "loader", "all"):
        with pytest.raises(SystemExit):
            speed.main([command, "--help"])
        options[command] = {word.strip("[],") for word in capsys.readouterr().out.split() if word.startswith(("--", "[--"))}
    assert options["train"] == {"--help", "--devices", "--batch-size", "--precisions", "--steps", "--eager", "--passes",
                                "--compile", "--json"}
    assert options["eval"] == {"--help", "--devices", "--repeats", "--precisions", "--eval-batch-sizes", "--json"}
    assert options["loader"] == {"--help", "--batch-size", "--workers", "--loader-batches", "--data-root", "--json"}
    assert options["all"] == options["train"] | options["eval"] | options["loader"]
    assert "--repeats" in options["objective"] and "--top" in options["profile"] and "--workers" not in options["profile"]
    with pytest.raises(SystemExit):
        speed.main(["--help"])
    assert "``" not in capsys.readouterr().out
