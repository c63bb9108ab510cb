"""What the training loop reports (docs/method.md §4): the progress bar, TensorBoard scalars and
the image strip, each step's losses read one step late.

A step's :class:`~spml.training.step.LoggedValues` are read after the next step has been issued,
so on a GPU the read finds the copy done and the host never waits for the device here. A
non-finite loss therefore stops the run one step later than it happened, naming the step it
happened in; :meth:`StepReporter.flush` reads what is pending and runs before every checkpoint,
so no checkpoint is written after a non-finite loss.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from spml.training.step import LoggedValues
from spml.training.strip import image_strip


class StepReporter:
    """Progress bar over ``[first_iteration, max_iteration)`` and, on the main process, TensorBoard
    events in ``log_dir`` every ``tensorboard_step`` iterations (scalars, lr, image strip)."""

    def __init__(self, first_iteration: int, max_iteration: int, tensorboard_step: int,
                 lr_at: Callable[[int], float], log_dir: Path | None, image_size: int) -> None:
        self.progress = tqdm(range(first_iteration, max_iteration), initial=first_iteration, total=max_iteration,
                             disable=log_dir is None, dynamic_ncols=True)
        self.writer = SummaryWriter(log_dir=str(log_dir)) if log_dir is not None else None
        self.tensorboard_step, self.lr_at, self.image_size = tensorboard_step, lr_at, image_size
        self._pending: LoggedValues | None = None

    def logs_scalars_at(self, iteration: int) -> bool:
        """Whether ``iteration`` is a TensorBoard iteration: the training loop asks the objective for
        its diagnostic accuracy on these only (on every process, so that their values stack alike)."""
        return iteration % self.tensorboard_step == 0

    def iterations(self) -> tqdm:
        """The iterations to run, with the progress bar."""
        return self.progress

    def step(self, logged: LoggedValues, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        """Report the previous step's values and keep ``logged`` for later; the image strip of a
        TensorBoard iteration is made now (the outputs of a CUDA-graph replay are overwritten by
        the next one)."""
        self.flush()
        self._pending = logged
        if self.writer is not None and self.logs_scalars_at(logged.iteration):
            self.writer.add_image("train/strip", image_strip(batch, outputs, self.image_size), logged.iteration)

    def flush(self) -> None:
        """Read and report the pending values (raises :class:`~spml.training.step.NonFiniteLossError`)."""
        if self._pending is None:
            return
        iteration, values = self._pending.iteration, self._pending.read()
        self._pending = None
        lr = self.lr_at(iteration)
        self.progress.set_postfix(loss=f"{values['loss']:.3f}", sem=f"{values['sem_ann_loss']:.3f}",
                                  pce=f"{values['partedCE_loss']:.3f}", lr=f"{lr:.1e}", refresh=False)
        if self.writer is not None and self.logs_scalars_at(iteration):
            for name, value in values.items():
                self.writer.add_scalar(f"train/{name}", value, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)

    def close(self, report_pending: bool = True) -> None:
        """Report what is pending (unless the run stopped on an error or Ctrl-C: ``report_pending``
        False) and close the bar and the event file."""
        try:
            if report_pending:
                self.flush()
        finally:
            self.progress.close()
            if self.writer is not None:
                self.writer.close()
