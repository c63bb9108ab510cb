"""What the training loop reports (spml.training.reporting): each step's losses read one step late,
everything pending read before a checkpoint and at the end, a non-finite loss named with its step."""
from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spml.training.reporting import StepReporter
from spml.training.step import LOGGED_KEYS, LoggedValues, NonFiniteLossError


class RecordingValues(LoggedValues):
    """LoggedValues of constant losses that note when they are read."""

    def __init__(self, iteration: int, reads: list[int], value: float = 1.0) -> None:
        super().__init__({key: torch.tensor(value + iteration) for key in LOGGED_KEYS}, iteration)
        self.reads = reads

    def read(self) -> dict[str, float]:
        self.reads.append(self.iteration)
        return super().read()


def reporter(log_dir=None, tensorboard_step: int = 2) -> StepReporter:
    return StepReporter(0, 4, tensorboard_step, lambda iteration: 1e-4, log_dir, image_size=224)


def test_each_step_is_read_after_the_next_one_is_issued_and_everything_by_flush():
    reads: list[int] = []
    steps = reporter()
    steps.step(RecordingValues(0, reads), {}, {})
    assert reads == []
    steps.step(RecordingValues(1, reads), {}, {})
    assert reads == [0]
    steps.flush()
    assert reads == [0, 1]
    steps.step(RecordingValues(2, reads), {}, {})
    steps.close()
    assert reads == [0, 1, 2]


def strip_inputs() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A batch and network outputs of one sample, the shapes the image strip reads."""
    size = 224
    batch = {"image": torch.zeros(1, 3, size, size), "depth": torch.zeros(1, 3, size, size),
             "contour_sum_label": torch.zeros(1, size, size), "semantic_label": torch.full((1, size, size), 2),
             "instance_label": torch.ones(1, size, size, dtype=torch.long)}
    outputs = {"div1": torch.rand(1, 1, size, size), "contour_div1": torch.rand(1, 1, size, size),
               "embedding": torch.randn(1, 64, size // 4, size // 4)}
    return batch, outputs


def test_scalars_and_the_strip_go_to_tensorboard_at_their_own_iteration(tmp_path):
    steps = reporter(tmp_path, tensorboard_step=2)
    for iteration in range(1, 4):
        steps.step(RecordingValues(iteration, []), *strip_inputs())
    steps.close()
    [events] = tmp_path.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    [loss] = accumulator.Scalars("train/loss")
    assert (loss.step, loss.value) == (2, 3.0)
    assert [event.step for event in accumulator.Scalars("train/lr")] == [2]
    assert [image.step for image in accumulator.Images("train/strip")] == [2]


def test_the_accuracy_is_asked_for_and_logged_on_tensorboard_iterations_only(tmp_path):
    steps = reporter(tmp_path, tensorboard_step=2)
    for iteration in range(1, 4):
        asked = steps.logs_scalars_at(iteration)
        assert asked == (iteration == 2)
        values = {key: torch.tensor(1.0) for key in LOGGED_KEYS if key != "accuracy" or asked}
        steps.step(LoggedValues(values, iteration), *strip_inputs())
    steps.close()
    [events] = tmp_path.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("train/accuracy")] == [2]
    assert [event.step for event in accumulator.Scalars("train/loss")] == [2]


def test_a_non_finite_loss_stops_at_the_next_read_naming_its_iteration():
    steps = reporter()
    steps.step(RecordingValues(5, [], value=float("inf")), {}, {})
    with pytest.raises(NonFiniteLossError, match="iteration 5: non-finite sem_ann_loss = inf"):
        steps.step(RecordingValues(6, []), {}, {})
