"""The release's step learning-rate schedule (docs/method.md §4).

``lr = base_lr · factor^(epoch // decay_epochs)`` where the release counts epochs from 1
and adds one each time the data iterator is exhausted and restarts. Deriving the epoch from
the iteration and the number of batches per epoch gives the same lr after a resume.
"""
from __future__ import annotations


def epoch_of_iteration(iteration: int, batches_per_epoch: int) -> int:
    """Release epoch number (from 1) of 0-based ``iteration`` with ``batches_per_epoch`` batches."""
    if batches_per_epoch < 1:
        raise ValueError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return iteration // batches_per_epoch + 1


def step_lr(
    base_lr: float,
    iteration: int,
    batches_per_epoch: int,
    decay_epochs: int = 60,
    decay_factor: float = 0.1,
) -> float:
    """Learning rate of 0-based ``iteration``: ``base_lr · decay_factor^(epoch // decay_epochs)``."""
    if decay_epochs < 1:
        raise ValueError(f"decay_epochs must be at least 1, got {decay_epochs}")
    epoch = epoch_of_iteration(iteration, batches_per_epoch)
    return base_lr * decay_factor ** (epoch // decay_epochs)
