"""One training step (docs/method.md §4): the forward with the augmented pass, the objective with
the memory bank, backward, the element-wise gradient clamp, Adam, the memory-bank push.

Shared by ``pyscripts/train/train.py`` and the speed benchmark, so both time and run the same step.
The step does not wait for the device to report its losses: :class:`LoggedValues` copies them to
the host in the background and is read later (the training loop reads a step's values after it
has issued the next step), so that on a GPU the host prepares the next step while the device
still runs this one. Each phase of :func:`training_step` runs under a
``torch.profiler.record_function`` label named in :data:`PHASES` (a few µs each when no profiler
runs), so a profile tells the phases apart.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from lib.distributed import mean_over_processes
from network.precision import autocast
from spml.losses import DHFRObjective, MemoryBank
from spml.training.errors import TrainingError

# The objective's weighted losses, their sum and the prototype accuracy (docs/method.md §2); the
# accuracy only on the steps that ask the objective for it.
LOGGED_KEYS = ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss", "loss",
               "accuracy")
LABEL_KEYS = ("semantic_label", "instance_label", "contour_sum_label")
PHASES = ("to_device", "forward", "objective", "logging", "backward", "update")
"""The phases of :func:`training_step` in order; its profiler labels."""


class NonFiniteLossError(TrainingError):
    """A loss became NaN or infinite."""


@dataclass
class TrainingState:
    """What a step changes and a checkpoint keeps: weights, optimiser, grad scaler, memory bank."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    memory: MemoryBank


class LoggedValues:
    """The :data:`LOGGED_KEYS` of one step's result (mean over processes), on their way to the host.

    Made without waiting for the device: on CUDA the values are copied into pinned host memory
    behind the step's kernels and :meth:`read` waits only for that copy.
    """

    def __init__(self, result: dict, iteration: int) -> None:
        self.iteration = iteration
        self.keys = tuple(key for key in LOGGED_KEYS if key in result)
        logged = mean_over_processes(torch.stack([result[key].detach() for key in self.keys]))
        self._host = logged.to("cpu", non_blocking=True)
        self._copied = None
        if logged.device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()

    def read(self) -> dict[str, float]:
        """The values as floats; raises :class:`NonFiniteLossError` naming the iteration and the
        first non-finite value."""
        with record_function("logging"):
            if self._copied is not None:
                self._copied.synchronize()
            values = dict(zip(self.keys, self._host.tolist()))
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(f"iteration {self.iteration}: non-finite {name} = {value}; stopping")
        return values


@dataclass(frozen=True)
class StepResult:
    """``logged``: the step's :class:`LoggedValues` (not yet read); ``outputs``: the network's outputs."""

    logged: LoggedValues
    outputs: dict[str, Tensor]


def make_optimizer(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam without weight decay (docs/method.md §4), as PyTorch's fused kernel on any device (on
    the 2-core CPU 23 ms a step against 93 ms for the per-parameter loop)."""
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def make_training_state(model: nn.Module, lr: float, memory_bank_size: int, precision: str,
                        device: torch.device) -> TrainingState:
    """A fresh state for ``model`` (already on ``device``); a grad scaler for ``precision == "fp16"``
    (:mod:`network.precision`)."""
    return TrainingState(
        model=model,
        optimizer=make_optimizer(model.parameters(), lr),
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        memory=MemoryBank(size=memory_bank_size),
    )


Forward = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""The network as the step calls it: the model, its DDP wrapper or its CUDA-graph replay."""


def batch_to_device(batch: dict[str, Tensor], device: torch.device) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``image``, ``depth`` and the :data:`LABEL_KEYS` labels of a loader batch, on ``device``."""
    labels = {key: batch[key].to(device, non_blocking=True) for key in LABEL_KEYS}
    return batch["image"].to(device, non_blocking=True), batch["depth"].to(device, non_blocking=True), labels


def network_outputs(network: Forward, image: Tensor, depth: Tensor, precision: str) -> dict[str, Tensor]:
    """The training outputs (both passes, docs/method.md §1.7) in ``precision``, returned as float32."""
    with autocast(precision, image.device):
        outputs = network(image, depth)
    return {name: output.float() for name, output in outputs.items()}


def backward(state: TrainingState, loss: Tensor) -> None:
    """Fresh gradients of ``loss`` (scaled, then unscaled, under a float16 grad scaler)."""
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
    else:
        loss.backward()


def update(state: TrainingState, lr: float, grad_clamp: float) -> None:
    """Element-wise gradient clamp to ``[−grad_clamp, grad_clamp]``, then Adam at ``lr`` (docs/method.md §4)."""
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    nn.utils.clip_grad_value_(state.model.parameters(), grad_clamp, foreach=True)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()


def training_step(network: Forward, objective: DHFRObjective, state: TrainingState, batch: dict[str, Tensor],
                  lr: float, grad_clamp: float, precision: str = "fp32", iteration: int = 0,
                  accuracy: bool = True) -> StepResult:
    """One optimiser step at learning rate ``lr`` on ``batch`` (``image``, ``depth`` and the
    :data:`LABEL_KEYS`; moved to the model's device here): forward in ``precision``, objective
    with the memory bank, :func:`backward`, :func:`update`, memory-bank push. ``network`` is
    ``state.model``, its DDP wrapper or its CUDA-graph replay. ``accuracy``: whether the objective
    computes its diagnostic accuracy this step (every process of a run must agree).

    The losses are not read here: the caller reads ``result.logged`` (which raises
    :class:`NonFiniteLossError`) before it saves anything, at the latest.
    """
    with record_function("to_device"):
        image, depth, labels = batch_to_device(batch, next(state.model.parameters()).device)
    with record_function("forward"):
        outputs = network_outputs(network, image, depth, precision)
    with record_function("objective"):
        result = objective(outputs, labels, image, state.memory, accuracy=accuracy)
    with record_function("logging"):
        logged = LoggedValues(result, iteration)
    with record_function("backward"):
        backward(state, result["loss"])
    with record_function("update"):
        update(state, lr, grad_clamp)
        state.memory.push(result["memory_state"])
    return StepResult(logged, outputs)
