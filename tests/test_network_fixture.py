"""Eval forward pass against reference/forward_eval.npz, float32 and float64, on the CPU and on CUDA
when present (../shared/reference/README.md §5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deterministic_weights import deterministic_state_dict
from network import build_model, load_checkpoint
from network.sfnet import OUTPUT_NAMES
from reference_tables import float32_tolerances

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

FLOAT32_MARGIN = 2.0
"""Allowed multiple of the reference's own float32-vs-float64 difference (summation order varies)."""
FLOAT64_TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def reference(reference_dir) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "forward_eval.npz") as data:
        return dict(data)


@pytest.fixture(
    scope="module",
    params=[
        ("cpu", torch.float32),
        ("cpu", torch.float64),
        pytest.param(("cuda", torch.float32), marks=NO_CUDA),
        pytest.param(("cuda", torch.float64), marks=NO_CUDA),
    ],
    ids=["cpu-float32", "cpu-float64", "cuda-float32", "cuda-float64"],
)
def run(request, reference) -> tuple[torch.dtype, torch.nn.Module, dict[str, torch.Tensor]]:
    """Model with deterministic weights in one dtype and on one device, and its outputs on the fixture batch.

    On CUDA the network runs in the package's default exact float32 (no TF32).
    """
    device, dtype = request.param
    model = build_model().to(dtype).eval()
    load_checkpoint(model, {"embedding_model": deterministic_state_dict(model)})
    model.to(device)
    image = torch.from_numpy(reference["image"]).to(device, dtype)
    depth = torch.from_numpy(reference["depth"]).to(device, dtype)
    with torch.no_grad():
        outputs = {name: output.cpu() for name, output in model(image, depth).items()}
    return dtype, model, outputs


def tolerance(dtype: torch.dtype, name: str, reference_dir) -> float:
    if dtype == torch.float64:
        return FLOAT64_TOLERANCE
    return FLOAT32_MARGIN * float32_tolerances(reference_dir / "README.md")[name]


def test_readme_states_a_tolerance_for_every_output(reference_dir):
    assert set(float32_tolerances(reference_dir / "README.md")) == set(OUTPUT_NAMES)


@pytest.mark.parametrize("name", OUTPUT_NAMES)
def test_output_matches_reference(run, reference, reference_dir, name):
    dtype, _, outputs = run
    assert outputs[name].dtype == dtype
    expected = torch.from_numpy(reference[name])
    assert outputs[name].shape == expected.shape
    difference = (outputs[name].double() - expected).abs().max().item()
    assert difference <= tolerance(dtype, name, reference_dir), f"{name}: max |diff| {difference:.3g}"


def test_single_image_batch_gives_the_same_outputs(run, reference):
    dtype, model, outputs = run
    device = next(model.parameters()).device
    image = torch.from_numpy(reference["image"][1:]).to(device, dtype)
    depth = torch.from_numpy(reference["depth"][1:]).to(device, dtype)
    with torch.no_grad():
        single = {name: output.cpu() for name, output in model(image, depth).items()}
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(single[name], outputs[name][1:], msg=name)
