"""The plain and augmented pass as one interleaved batch (``EmbeddingModel(joint_passes=True)``).

Same outputs, gradients, losses and BatchNorm statistics as two SFNet calls up to rounding
(float64 for BatchNorm alone and on a GPU, float32 for the whole model on the CPU); only
DropPath's random draws come in another order, so these comparisons run with DropPath off.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lib.profiling import count_dispatched_ops
from network import build_model
from network.per_pass_batch_norm import PerPassBatchNorm2d, interleaved_passes
from spml.losses import DHFRObjective, MemoryBank
from model_helpers import gradient_difference, relative_difference, training_batch, without_droppath

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
TOLERANCE = 1e-10
"""float64, relative; the joint batch changes only the order of some sums (measured: ≤ 1e-13)."""
FLOAT32_TOLERANCES = {"outputs": 1e-4, "losses": 1e-5, "statistics": 1e-5, "gradient": 5e-3}
"""Relative, measured on the CPU: outputs 8e-6, losses 2e-6, BatchNorm statistics 2e-6, gradient 7.5e-4."""
MAX_JOINT_OPS_SHARE = 0.62
"""Ops (kernels on a GPU) of a joint training forward+backward against two calls: measured 0.57 at batch 1
(3 152 + 4 278 ops as two calls, 2 194 + 2 057 joint; BatchNorm's per-pass bookkeeping adds ~6 ops a layer)."""


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)])
def test_per_pass_batch_norm_equals_one_call_per_pass(device):
    passes, batch, channels = 3, 2, 5
    separate = nn.BatchNorm2d(channels).double().to(device)
    with torch.no_grad():
        separate.weight.uniform_(0.5, 1.5)
        separate.bias.uniform_(-1, 1)
        separate.running_mean.uniform_(-1, 1)
        separate.running_var.uniform_(0.5, 2)
    joint = PerPassBatchNorm2d(channels).double().to(device)
    joint.load_state_dict(separate.state_dict())
    per_pass = [torch.randn(batch, channels, 4, 4, dtype=torch.float64, device=device) * (p + 1) + p
                for p in range(passes)]
    interleaved = torch.stack(per_pass, dim=1).flatten(0, 1).requires_grad_()
    with interleaved_passes(passes):
        joint_out = joint(interleaved)
    separate_out = torch.stack([separate(x) for x in per_pass], dim=1).flatten(0, 1)
    torch.testing.assert_close(joint_out, separate_out, rtol=TOLERANCE, atol=TOLERANCE)
    for name, buffer in separate.state_dict().items():
        torch.testing.assert_close(joint.state_dict()[name], buffer, rtol=TOLERANCE, atol=TOLERANCE, msg=name)
    assert int(joint.num_batches_tracked) == passes
    weights = torch.rand_like(joint_out)
    joint_grads = torch.autograd.grad((joint_out * weights).sum(), [joint.weight, joint.bias])
    separate_grads = torch.autograd.grad((separate_out * weights).sum(), [separate.weight, separate.bias])
    for joint_grad, separate_grad in zip(joint_grads, separate_grads):
        torch.testing.assert_close(joint_grad, separate_grad, rtol=TOLERANCE, atol=TOLERANCE)


def test_interleaved_passes_ends_with_one_pass_even_after_an_error():
    layer = PerPassBatchNorm2d(4)
    with pytest.raises(RuntimeError, match="boom"), interleaved_passes(2):
        layer(torch.randn(4, 4, 3, 3))
        assert int(layer.num_batches_tracked) == 2
        raise RuntimeError("boom")
    layer(torch.randn(4, 4, 3, 3))
    assert int(layer.num_batches_tracked) == 3, "one batch again after the block"


@pytest.mark.parametrize(("device", "dtype"), [
    pytest.param("cpu", torch.float32, id="cpu-float32"),
    pytest.param("cuda", torch.float64, id="cuda-float64", marks=NEEDS_CUDA),
])
def test_joint_passes_give_the_two_calls_outputs_losses_gradients_and_statistics(deterministic_model, device, dtype):
    """float64 on a GPU (the CPU takes 45 s for it): equal to rounding. float32 on the CPU: within
    float32 rounding; this model's float32 gradients are themselves 1.3e-2 (relative norm) away
    from its float64 ones, the joint batch moves them by 7.5e-4."""
    tolerances = FLOAT32_TOLERANCES if dtype == torch.float32 else dict.fromkeys(FLOAT32_TOLERANCES, TOLERANCE)
    image, depth, labels = training_batch(torch.Generator().manual_seed(0))
    image, depth = image.to(device, dtype), depth.to(device, dtype)
    labels = {name: label.to(device) for name, label in labels.items()}
    separate = without_droppath(copy.deepcopy(deterministic_model)).to(device, dtype).train()
    joint = copy.deepcopy(separate)
    joint.joint_passes = True
    objective = DHFRObjective().to(device)

    results = {}
    for name, model in (("separate", separate), ("joint", joint)):
        outputs = model(image, depth)
        result = objective(outputs, labels, image, MemoryBank(size=2))
        result["loss"].backward()
        results[name] = outputs, result

    (separate_outputs, separate_result), (joint_outputs, joint_result) = results["separate"], results["joint"]
    assert separate_outputs.keys() == joint_outputs.keys()
    for name, output in separate_outputs.items():
        assert relative_difference(joint_outputs[name], output) <= tolerances["outputs"], name
    for name in ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss", "loss"):
        assert relative_difference(joint_result[name], separate_result[name]) <= tolerances["losses"], name
    joint_state = joint.state_dict()
    for name, buffer in separate.state_dict().items():
        assert relative_difference(joint_state[name], buffer) <= tolerances["statistics"], name
    assert gradient_difference(joint, separate) <= tolerances["gradient"]


def test_joint_passes_draw_droppath_masks_in_training_and_leave_evaluation_alone(deterministic_model):
    image, depth, _ = training_batch(torch.Generator().manual_seed(0))
    model = copy.deepcopy(deterministic_model)
    model.joint_passes = True
    with torch.no_grad(), torch.random.fork_rng():
        evaluated, reference = model(image, depth), deterministic_model(image, depth)
        torch.manual_seed(0)
        trained = model.train()(image, depth)
        torch.manual_seed(0)
        again = model(image, depth)
        torch.manual_seed(1)
        other_draw = model(image, depth)
    for name, output in reference.items():
        torch.testing.assert_close(evaluated[name], output, rtol=0, atol=0, msg=name)
    assert trained["div1"].shape == trained["div1_aug"].shape == (2, 1, 224, 224)
    torch.testing.assert_close(again["embedding_aug"], trained["embedding_aug"], rtol=0, atol=0)
    assert not torch.equal(other_draw["embedding"], trained["embedding"]), "DropPath must be live in training"


def test_joint_passes_dispatch_far_fewer_ops():
    image, depth = torch.randn(1, 3, 224, 224), torch.rand(1, 3, 224, 224)
    counts = {}
    for joint_passes in (False, True):
        model, outputs = build_model(joint_passes).train(), {}
        forward = count_dispatched_ops(lambda: outputs.update(model(image, depth)))
        backward = count_dispatched_ops(lambda: sum(output.mean() for output in outputs.values()).backward())
        counts[joint_passes] = sum(forward.values()) + sum(backward.values())
    assert counts[True] <= MAX_JOINT_OPS_SHARE * counts[False], counts
