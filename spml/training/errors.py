"""Why a training run stops (docs/method.md §4): bad input (exit status 2) or a failure on the way (1)."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """A run that cannot go on (exit status 1)."""


class InputError(TrainingError):
    """A setting, file or folder the run cannot use; found before the first step (exit status 2)."""
