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


@pytest.mark.parametrize("arguments, message", [
    (["profile", "--devices", "cpu", "--precision", "bf16"], "--precision bf16: needs a CUDA device (the CPU runs fp32) (--devices cpu)"),
    (["train", "--devices", "tpu"], "--devices tpu: not a device (cpu, cuda or cuda:N)"),
    pytest.param(["train", "--devices", "cuda"], "--devices cuda: no CUDA device on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_bad_devices_and_precisions_stop_with_one_line_before_any_work(arguments, message, capsys, monkeypatch):
    def refuse(args):
        raise AssertionError("work started")

    monkeypatch.setattr(speed, "run_profile", refuse)
    monkeypatch.setattr(speed, "run_train", refuse)
    with pytest.raises(SystemExit) as stopped:
        speed.main(arguments)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f": error: {message}")
