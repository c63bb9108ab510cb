"""SFNet compiled with ``torch.compile`` (network.compilation, ``COMPILE=1``): the eager run's outputs,
gradients, BatchNorm statistics and DropPath draws, unchanged checkpoints, and one line for a machine
where Inductor cannot generate code (checked before any work) or a compilation that fails.

On the CPU the model is compiled with the ``aot_eager`` backend: the same single-graph capture and
forward/backward split as Inductor, run with eager kernels, in seconds. Inductor's generated
kernels (minutes to compile on two cores) are tested on a GPU, in tests/test_cuda_graphs.py.
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch

from network import build_model, load_checkpoint
from network.compilation import CompileUnavailableError, check_compile_support, compile_failure, compile_network
from spml.training.settings import prepare_training_run
from model_helpers import gradient_difference, relative_difference
from training_runs import SMALL_RUN, list_unreadable_sample, make_dataset

TOLERANCES = {"outputs": 1e-5, "gradient": 1e-3, "statistics": 1e-6}
"""float32, relative: each output and buffer to its largest magnitude, the gradient of all parameters
together to its norm. The compiled graph runs the eager kernels, decomposed in places: measured
outputs 3e-7, gradient 2e-6 (2e-4 in one of the four steps), statistics 1.5e-7 (float64: 8e-16,
8e-14, 1e-16)."""


def _training_step(model: torch.nn.Module, image: torch.Tensor, depth: torch.Tensor, seed: int) -> dict:
    """Train-mode forward from the random state ``seed`` (DropPath's draws), and a backward of all outputs."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    outputs = model(image, depth)
    sum(output.mean() for output in outputs.values()).backward()
    return {name: output.detach() for name, output in outputs.items()}


@pytest.fixture(scope="module")
def eager_and_compiled() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    eager = build_model().train()
    return eager, compile_network(copy.deepcopy(eager), backend="aot_eager")


@pytest.mark.parametrize("joint_passes", [False, True], ids=["separate-passes", "joint-passes"])
def test_compiled_training_step_gives_the_eager_numbers_and_droppath_draws(eager_and_compiled, joint_passes):
    eager, compiled = eager_and_compiled
    eager.joint_passes = compiled.joint_passes = joint_passes
    generator = torch.Generator().manual_seed(1)
    image, depth = torch.randn(1, 3, 224, 224, generator=generator), torch.rand(1, 3, 224, 224, generator=generator)
    draws = []
    for seed in (2, 3):  # each model takes the same two steps, so their BatchNorm statistics stay comparable
        reference, result = _training_step(eager, image, depth, seed), _training_step(compiled, image, depth, seed)
        assert reference.keys() == result.keys()
        for name in reference:
            assert relative_difference(result[name], reference[name]) <= TOLERANCES["outputs"], name
        assert gradient_difference(compiled, eager) <= TOLERANCES["gradient"]
        for (name, buffer), expected in zip(compiled.named_buffers(), eager.buffers()):
            assert relative_difference(buffer, expected) <= TOLERANCES["statistics"], name
        draws.append(result["embedding"])
    # DropPath stays live in the compiled forward: another random state, other masks.
    assert relative_difference(draws[1], draws[0]) > 1e-3


def test_compiling_keeps_the_state_dict_and_refuses_an_unknown_backend(eager_and_compiled):
    eager, compiled = eager_and_compiled
    assert list(compiled.state_dict()) == list(eager.state_dict())
    with pytest.raises(ValueError, match="compile backend must be one of inductor, aot_eager; got 'fast'"):
        compile_network(build_model(), backend="fast")


def _no_cpp_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor's compiler search fails as it does on a machine without g++/clang++."""
    def missing() -> str:
        raise RuntimeError("No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')")

    monkeypatch.setattr("torch._inductor.cpp_builder.get_cpp_compiler", missing)


def test_a_missing_code_generator_is_named(monkeypatch):
    _no_cpp_compiler(monkeypatch)
    with pytest.raises(CompileUnavailableError, match=r"on the CPU needs a C\+\+ compiler .*: No working C\+\+ compiler"):
        check_compile_support("cpu")
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: False)
    with pytest.raises(CompileUnavailableError, match=r"needs Triton for CUDA kernels \(pip install triton\)"):
        check_compile_support("cuda")


def _failing_backend(graph: torch.fx.GraphModule, inputs: list) -> None:
    raise RuntimeError("InvalidCxxCompiler: the generated kernel did not build")


def test_a_failed_compilation_is_one_line_naming_its_cause():
    compiled = torch.compile(lambda x: x.sin() + 1, backend=_failing_backend, fullgraph=True)
    with pytest.raises(Exception) as failed:
        compiled(torch.ones(3))
    assert compile_failure(failed.value) == "RuntimeError: InvalidCxxCompiler: the generated kernel did not build"
    assert compile_failure(ValueError("not a compilation")) is None


def _training_config(tmp_path, data_root) -> str:
    environment = {**SMALL_RUN, "DATAROOT": str(data_root), "SNAPSHOT_DIR": str(tmp_path / "run"), "MAX_ITERATION": "1"}
    config_path, _, _ = prepare_training_run(environment, 1, "cpu")
    return str(config_path)


def test_training_with_compile_and_no_code_generator_stops_with_one_line_before_any_work(
        tmp_path, monkeypatch, capfd, restored_logging):
    from pyscripts.train import train as train_script

    _no_cpp_compiler(monkeypatch)
    data_root = tmp_path / "data"  # files nothing can decode: reading any would stop the run otherwise
    list_unreadable_sample(data_root)
    config = _training_config(tmp_path, data_root)
    assert train_script.main(["--config", config, "--device", "cpu", "--compile"]) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if "error" in line]
    assert errors == ["train.py: error: COMPILE=1: torch.compile on the CPU needs a C++ compiler (g++ or clang++, "
                      "or set CXX): No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++'); "
                      "train without COMPILE=1"]
    assert not (tmp_path / "run" / "stage1").exists()


@pytest.mark.parametrize("arguments", [["train", "--devices", "cpu", "--compile", "off", "on"],
                                       ["profile", "--devices", "cpu", "--compile"]])
def test_the_speed_benchmark_with_compile_and_no_code_generator_stops_with_one_line(arguments, monkeypatch, capsys):
    from pyscripts.benchmark import speed

    _no_cpp_compiler(monkeypatch)
    monkeypatch.setattr(speed, "run_train", lambda args: pytest.fail("work started"))
    monkeypatch.setattr(speed, "run_profile", lambda args: pytest.fail("work started"))
    with pytest.raises(SystemExit) as stopped:
        speed.main(arguments)
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(
        "error: --compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++, or set CXX): No working C++ "
        "compiler found in torch._inductor.config.cpp.cxx: (None, 'g++') (--devices cpu) (see --help)")


@pytest.mark.slow
def test_training_with_compile_logs_it_and_writes_a_checkpoint_of_the_uncompiled_layout(
        repo_root, tmp_path, monkeypatch, capfd, restored_logging):
    from pyscripts.train import train as train_script

    dataset = make_dataset(repo_root, tmp_path / "data")
    config = _training_config(tmp_path, dataset)
    # Inductor would compile for minutes on a CPU; aot_eager takes the same path through train.py.
    monkeypatch.setattr(train_script, "compile_network", functools.partial(compile_network, backend="aot_eager"))
    status = train_script.main(["--config", config, "--device", "cpu", "--compile", "--no-validate"])
    assert status == 0
    assert "COMPILE=1: SFNet is compiled with torch.compile" in capfd.readouterr().err
    load_checkpoint(build_model(), tmp_path / "run" / "stage1" / "model-0.pth")
    # A compilation that fails at the first step stops the run with one line naming the cause.
    monkeypatch.setattr(train_script, "compile_network", lambda model: model.sfnet.compile(backend=_failing_backend))
    status = train_script.main(["--config", config, "--device", "cpu", "--compile", "--no-validate"])
    assert status == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if "error" in line]
    assert errors == ["train.py: error: COMPILE=1: torch.compile failed: RuntimeError: InvalidCxxCompiler: the "
                      "generated kernel did not build; train without COMPILE=1"]
