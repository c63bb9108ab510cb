"""SFNet compiled with ``torch.compile`` (network.compilation, ``COMPILE=1``): the eager run's outputs,
gradients, BatchNorm statistics and DropPath draws, and unchanged checkpoints.

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
from network.compilation import compile_network
from spml.training.settings import prepare_training_run
from model_helpers import gradient_difference, relative_difference
from training_runs import SMALL_RUN, make_dataset

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


@pytest.mark.slow
def test_training_with_compile_logs_it_and_writes_a_checkpoint_of_the_uncompiled_layout(
        repo_root, tmp_path, monkeypatch, capfd, restored_logging):
    from pyscripts.train import train as train_script

    dataset = make_dataset(repo_root, tmp_path / "data")
    environment = {**SMALL_RUN, "DATAROOT": str(dataset), "SNAPSHOT_DIR": str(tmp_path / "run"), "MAX_ITERATION": "1"}
    config_path, _, _ = prepare_training_run(environment, 1, "cpu")
    # Inductor would compile for minutes on a CPU; aot_eager takes the same path through train.py.
    monkeypatch.setattr(train_script, "compile_network", functools.partial(compile_network, backend="aot_eager"))
    status = train_script.main(["--config", str(config_path), "--device", "cpu", "--compile", "--no-validate"])
    assert status == 0
    assert "COMPILE=1: SFNet is compiled with torch.compile" in capfd.readouterr().err
    load_checkpoint(build_model(), tmp_path / "run" / "stage1" / "model-0.pth")
