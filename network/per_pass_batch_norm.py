"""BatchNorm over an interleaved batch of several passes, each normalised with its own statistics (docs/method.md §1.7).

The training forward can run the plain and the augmented pass as one batch (``joint_passes``
of :class:`network.model.EmbeddingModel`). BatchNorm is then the only layer that looks across
samples: in training it must take each pass's own batch mean and variance, and update its
running statistics once per pass, exactly as two separate calls of the network would.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_passes = 1
"""Passes interleaved in the batch of the forward now running; set by :func:`interleaved_passes`.
A plain module global (one value per process), which ``torch.compile`` reads as a guard of the
compiled code on every PyTorch version (Dynamo of PyTorch 2.11 cannot trace a ``ContextVar``)."""


class PerPassBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d``; in training within :func:`interleaved_passes`, per pass of the batch.

    The batch ``[B*P, C, h, w]`` holds the ``P`` passes of each image next to each other
    (``image 0 pass 0, image 0 pass 1, image 1 pass 0, ...``). Viewed as ``[B, P*C, h, w]``,
    channel ``p*C + c`` is channel ``c`` of pass ``p``, so one batch-norm call normalises every
    pass with its own mean ``s_p`` and variance (affine weights repeated per pass).

    Running statistics (momentum ``m``): P separate calls apply ``r <- (1 - m) r + m s_p`` for
    ``p = 0 .. P-1``. Here pass 0 updates a copy of ``r`` and every later pass a zero vector
    (giving ``m s_p``); the results are then folded in pass order, ``r <- m s_p + (1 - m) r``.
    The counter ``num_batches_tracked`` advances by ``P``. State-dict entries are BatchNorm2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        passes, channels = _passes, x.shape[1]
        if not self.training or passes == 1:
            return super().forward(x)
        grouped = x.reshape(x.shape[0] // passes, passes * channels, *x.shape[2:])
        running_mean = F.pad(self.running_mean, (0, (passes - 1) * channels))
        running_var = F.pad(self.running_var, (0, (passes - 1) * channels))
        normalised = F.batch_norm(grouped, running_mean, running_var, self.weight.repeat(passes),
                                  self.bias.repeat(passes), True, self.momentum, self.eps)
        with torch.no_grad():
            for buffer, per_pass in ((self.running_mean, running_mean), (self.running_var, running_var)):
                folded, *later = per_pass.split(channels)
                for update in later[:-1]:
                    folded = torch.add(update, folded, alpha=1 - self.momentum)
                torch.add(later[-1], folded, alpha=1 - self.momentum, out=buffer)
            self.num_batches_tracked.add_(passes)
        return normalised.view_as(x)


@contextmanager
def interleaved_passes(passes: int) -> Iterator[None]:
    """Within the block, every :class:`PerPassBatchNorm2d` in training treats its batch as ``passes``
    interleaved passes; afterwards, as before the block (also when the block raises)."""
    global _passes
    previous, _passes = _passes, passes
    try:
        yield
    finally:
        _passes = previous
