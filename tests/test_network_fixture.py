"""Eval forward pass against reference/forward_eval.npz, float32 and float64 (../shared/reference/README.md §5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deterministic_weights import deterministic_state_dict
from network import build_model, load_checkpoint
from network.sfnet import OUTPUT_NAMES
from reference_tables import float32_tolerances

FLOAT32_MARGIN = 2.0
"""Allowed multiple of the reference's own float32-vs-float64 difference (summation order varies)."""
FLOAT64_TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def reference(reference_dir) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "forward_eval.npz") as data:
        return dict(data)


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def run(request, reference) -> tuple[torch.dtype, torch.nn.Module, dict[str, torch.Tensor]]:
    """Model with deterministic weights in one dtype, and its outputs on the fixture batch."""
    dtype = request.param
    model = build_model().to(dtype).eval()
    load_checkpoint(model, {"embedding_model": deterministic_state_dict(model)})
    image = torch.from_numpy(reference["image"]).to(dtype)
    depth = torch.from_numpy(reference["depth"]).to(dtype)
    with torch.no_grad():
        outputs = model(image, depth)
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
    image = torch.from_numpy(reference["image"][1:]).to(dtype)
    depth = torch.from_numpy(reference["depth"][1:]).to(dtype)
    with torch.no_grad():
        single = model(image, depth)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(single[name], outputs[name][1:], msg=name)
