"""CUDA-graph replay of the network (network.cuda_graphs): same numbers as eager, stochastic blocks intact;
also with SFNet compiled by Inductor first (network.compilation, ``COMPILE=1``).

These need a GPU and are skipped, saying so, on a machine without one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deterministic_weights import deterministic_state_dict
from network import build_model, load_checkpoint
from network.compilation import compile_network
from network.cuda_graphs import GraphedEval, graphed_training_forward
from network.precision import set_float32_precision
from network.sfnet import OUTPUT_NAMES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

EAGER_TOLERANCE = 1e-5
"""Graph replay runs the eager kernels; only launch order and allocation differ."""
NETWORKS = {"separate-passes": (False, False), "joint-passes": (True, False), "joint-passes-compiled": (True, True)}
"""``(joint_passes, compiled)`` of the training networks the graph tests run."""


@pytest.fixture(scope="module")
def fixture_inputs(reference_dir) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(reference_dir / "forward_eval.npz") as data:
        return torch.from_numpy(data["image"]).cuda(), torch.from_numpy(data["depth"]).cuda()


@pytest.fixture(scope="module")
def eval_model() -> torch.nn.Module:
    set_float32_precision("fp32")
    model = build_model()
    load_checkpoint(model, {"embedding_model": deterministic_state_dict(model)})
    return model.cuda().eval()


def test_graphed_eval_equals_eager_for_every_batch_size_met(eval_model, fixture_inputs):
    image, depth = fixture_inputs
    with torch.no_grad():
        eager = eval_model(image, depth)
    graphed = GraphedEval(eval_model)
    first = graphed(image, depth)
    single = graphed(image[1:], depth[1:])  # a second graph, sharing the memory pool
    again = graphed(image, depth)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(first[name], eager[name], atol=EAGER_TOLERANCE, rtol=0, msg=name)
        torch.testing.assert_close(single[name], eager[name][1:], atol=EAGER_TOLERANCE, rtol=0, msg=name)
        torch.testing.assert_close(again[name], first[name], atol=0, rtol=0, msg=name)


def test_graphed_eval_outputs_are_copies(eval_model, fixture_inputs):
    image, depth = fixture_inputs
    graphed = GraphedEval(eval_model)
    first = graphed(image, depth)["div1"]
    kept = first.clone()
    graphed(torch.zeros_like(image), torch.zeros_like(depth))
    assert torch.equal(first, kept)


@pytest.mark.parametrize("joint_passes, compiled", NETWORKS.values(), ids=NETWORKS.keys())
def test_graphed_training_keeps_droppath_and_batchnorm_live(joint_passes, compiled):
    torch.manual_seed(0)
    model = build_model(joint_passes).cuda().train()
    if compiled:
        compile_network(model)
    batch_norm = model.sfnet.upsample_head.bn1
    counter_before = int(batch_norm.num_batches_tracked)
    forward = graphed_training_forward(model, batch_size=2)
    assert int(batch_norm.num_batches_tracked) == counter_before, "capture warm-up must leave the buffers as they were"
    image, depth = torch.randn(2, 3, 224, 224, device="cuda"), torch.rand(2, 3, 224, 224, device="cuda")
    running_mean = batch_norm.running_mean.clone()
    first = forward(image, depth)["div1"].detach().clone()
    second = forward(image, depth)
    assert not torch.equal(first, second["div1"]), "DropPath must draw new masks at every replay"
    assert not torch.equal(batch_norm.running_mean, running_mean)
    assert int(batch_norm.num_batches_tracked) == counter_before + 4  # two calls, two passes each
    sum(output.float().mean() for output in second.values()).backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_graphed_training_rejects_another_batch_size():
    model = build_model().cuda().train()
    forward = graphed_training_forward(model, batch_size=2)
    with pytest.raises(ValueError, match=r"captured for inputs \[2, 3, 224, 224\]"):
        forward(torch.zeros(1, 3, 224, 224, device="cuda"), torch.zeros(1, 3, 224, 224, device="cuda"))


def _training_losses(graphs: bool, steps: int = 20, precision: str = "fp32",
                     joint_passes: bool = False, compiled: bool = False) -> list[list[float]]:
    """The logged values of ``steps`` training steps at batch 2 from seed 0, eager or graphed, SFNet
    compiled by Inductor when ``compiled``."""
    from spml.losses import DHFRObjective
    from spml.training.step import LOGGED_KEYS, make_training_state, training_step

    torch.manual_seed(0)
    set_float32_precision(precision)
    model = build_model(joint_passes).cuda().train()
    if compiled:
        compile_network(model)
    state = make_training_state(model, 1e-4, 2, precision, torch.device("cuda"))
    network = graphed_training_forward(model, 2, precision) if graphs else model
    objective = DHFRObjective().cuda()
    generator = torch.Generator().manual_seed(1)
    semantic = torch.full((2, 224, 224), 2, dtype=torch.long)
    semantic[:, 10:30] = 0
    semantic[:, 100:120, 60:160] = 1
    losses = []
    for _ in range(steps):
        batch = {"image": torch.randn(2, 3, 224, 224, generator=generator),
                 "depth": torch.rand(2, 3, 224, 224, generator=generator),
                 "semantic_label": semantic, "contour_sum_label": torch.rand(2, 224, 224, generator=generator),
                 "instance_label": torch.randint(1, 200, (2, 224, 224), generator=generator)}
        values = training_step(network, objective, state, batch, lr=1e-4, grad_clamp=0.5,
                               precision=precision).logged.read()
        losses.append([values[key] for key in LOGGED_KEYS])
    set_float32_precision("fp32")
    return losses


@pytest.mark.parametrize("joint_passes, compiled", NETWORKS.values(), ids=NETWORKS.keys())
def test_twenty_graphed_steps_follow_the_eager_run_within_its_own_run_to_run_noise(joint_passes, compiled):
    """Graph replay runs the eager kernels: the first step's losses agree to float rounding (Inductor's
    fused kernels round differently: 1e-5). From the second step on the runs drift apart, but CUDA's
    atomic-add backward kernels (bilinear upsampling, index_add) make two eager runs drift as much
    (on an H100: graph/eager 1.2e-5 at the second step; eager/eager 3.2e-3 over 20 steps), so that is
    the bound."""
    eager, eager_again = (np.array(_training_losses(False, joint_passes=joint_passes)) for _ in range(2))
    graphed = np.array(_training_losses(True, joint_passes=joint_passes, compiled=compiled))

    def relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a - b) / np.maximum(np.abs(b), 1e-12)

    noise, difference = relative(eager_again, eager), relative(graphed, eager)
    print(f"max relative difference, second step / 20 steps: eager/eager {noise[1].max():.3g} / {noise.max():.3g}, "
          f"graph/eager {difference[1].max():.3g} / {difference.max():.3g}")
    assert difference[0].max() <= (1e-5 if compiled else 1e-6)
    assert difference.max() <= max(1e-4, 2 * noise.max())


@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_graphed_training_in_a_reduced_precision_stays_near_float32(precision):
    """PRECISION=tf32/bf16/fp16 with the graphs: finite losses that start where float32 starts
    (the first step's loss within 5 %; the network's outputs move by up to ~0.3, README)."""
    reduced = np.array(_training_losses(True, steps=3, precision=precision))
    exact = np.array(_training_losses(True, steps=3))
    assert np.isfinite(reduced).all()
    assert abs(reduced[0, -2] - exact[0, -2]) <= 0.05 * abs(exact[0, -2])
