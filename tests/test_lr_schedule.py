"""The release's step schedule (docs/method.md §4): lr = base · 0.1^(epoch // 60), epochs counted from 1."""
from __future__ import annotations

import pytest

from lib.lr_schedule import epoch_of_iteration, step_lr
from spml.config import default_config


def test_epochs_count_from_one_and_advance_when_the_data_restarts():
    assert epoch_of_iteration(0, 546) == 1
    assert epoch_of_iteration(545, 546) == 1
    assert epoch_of_iteration(546, 546) == 2


def test_lr_drops_tenfold_on_the_first_iteration_of_epoch_60():
    batches = 7
    first_of_epoch_60 = 59 * batches
    assert step_lr(1e-4, first_of_epoch_60 - 1, batches) == 1e-4
    assert step_lr(1e-4, first_of_epoch_60, batches) == pytest.approx(1e-5, rel=1e-12)
    assert step_lr(1e-4, 119 * batches, batches) == pytest.approx(1e-6, rel=1e-12)


def test_release_run_ends_after_epoch_180_at_a_thousandth_of_the_base_lr():
    train = default_config().train
    batches = 2185 // train.batch_size  # NJU2K + NLPR training images, drop_last
    last = train.max_iteration - 1
    assert 180 <= epoch_of_iteration(last, batches) < 240
    assert step_lr(train.base_lr, last, batches, train.lr_decay_epochs, train.lr_decay_factor) == pytest.approx(
        train.base_lr * train.lr_decay_factor ** 3, rel=1e-12)


def test_lr_is_a_function_of_the_iteration_alone():
    """Resuming at iteration k gives the lr the uninterrupted run had at k."""
    schedule = [step_lr(1e-4, iteration, 3, decay_epochs=2) for iteration in range(12)]
    assert schedule[:3] == [1e-4] * 3
    assert schedule[3:9] == [pytest.approx(1e-5)] * 6
    assert schedule[9] == pytest.approx(1e-6)
    assert [step_lr(1e-4, iteration, 3, decay_epochs=2) for iteration in range(7, 12)] == schedule[7:]


@pytest.mark.parametrize("iteration, batches", [(-1, 3), (0, 0)])
def test_bad_arguments_raise(iteration, batches):
    with pytest.raises(ValueError):
        step_lr(1e-4, iteration, batches)
