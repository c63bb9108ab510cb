"""The training step of spml.training.step (docs/method.md §4): every parameter learns, the
losses are read later without changing, and a non-finite loss is named when it is read."""
from __future__ import annotations

import copy

import pytest
import torch

from model_helpers import without_droppath
from network.sfnet import INPUT_SIZE
from spml.config import default_config
from spml.losses import DHFRObjective
from spml.training.step import LOGGED_KEYS, NonFiniteLossError, make_training_state, training_step


def scribble_batch(batch_size: int = 1) -> dict[str, torch.Tensor]:
    """A batch shaped like the training data: background band and foreground patch scribbled."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, INPUT_SIZE, INPUT_SIZE)
    semantic = torch.full(shape, 2, dtype=torch.long)
    semantic[:, 8:24] = 0
    semantic[:, 100:116, 60:160] = 1
    return {
        "image": torch.randn(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator),
        "depth": torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator),
        "semantic_label": semantic,
        "instance_label": torch.randint(1, 20, shape, generator=generator),
        "contour_sum_label": torch.rand(shape, generator=generator),
    }


@pytest.fixture
def trainable(deterministic_model):
    """A trainable copy of the model without DropPath: at batch 1 DropPath may drop a block's branch in
    both passes, a legitimate zero gradient that depended on the random state the test found."""
    model = without_droppath(copy.deepcopy(deterministic_model)).train()
    train = default_config().train
    return model, make_training_state(model, train.base_lr, 2, "fp32", torch.device("cpu"))


def test_every_parameter_receives_a_gradient_in_one_step(trainable):
    model, state = trainable
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    result = training_step(model, DHFRObjective(), state, scribble_batch(), lr=1e-4, grad_clamp=0.5)
    no_gradient = [name for name, parameter in model.named_parameters()
                   if parameter.grad is None or not torch.any(parameter.grad != 0)]
    assert not no_gradient, f"{len(no_gradient)} parameters got no gradient: {no_gradient[:5]}"
    assert all(bool(parameter.grad.abs().max() <= 0.5) for parameter in model.parameters()), "clamped to ±0.5"
    assert all(not torch.equal(before[name], parameter) for name, parameter in model.named_parameters())
    values = result.logged.read()
    assert set(values) >= {"loss", "sem_ann_loss", "accuracy"} and len(state.memory) == 1
    assert values["loss"] == pytest.approx(sum(values[key] for key in LOGGED_KEYS[:6]), rel=1e-6)


class NaNContour(DHFRObjective):
    def forward(self, outputs, labels, image=None, memory=None, accuracy=True):
        result = super().forward(outputs, labels, image, memory, accuracy)
        result["contour_loss"] = result["contour_loss"] * float("nan")
        return result


def test_a_non_finite_loss_is_named_with_its_iteration_when_read(trainable):
    model, state = trainable
    result = training_step(model, NaNContour(), state, scribble_batch(), lr=1e-4, grad_clamp=0.5, iteration=7)
    with pytest.raises(NonFiniteLossError, match="iteration 7: non-finite contour_loss = nan; stopping"):
        result.logged.read()
