"""One training step (docs/method.md §4): the forward with the augmented pass, the objective with
the memory bank, backward, the element-wise gradient clamp, Adam, the memory-bank push.

Shared by ``pyscripts/train/train.py`` and the speed benchmark, so both time and run the same step.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lib.distributed import mean_over_processes
from spml.losses import DHFRObjective, MemoryBank
from spml.training.errors import TrainingError

# The objective's weighted losses, their sum and the prototype accuracy (docs/method.md §2).
LOGGED_KEYS = ("sem_ann_loss", "img_sim_loss", "partedCE_loss", "ssc_loss", "smo_loss", "contour_loss", "loss",
               "accuracy")
LABEL_KEYS = ("semantic_label", "instance_label", "contour_sum_label")


class NonFiniteLossError(TrainingError):
    """A loss became NaN or infinite; the step stopped before the update."""


@dataclass
class TrainingState:
    """What a step changes and a checkpoint keeps: weights, optimiser, grad scaler, memory bank."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    memory: MemoryBank


@dataclass(frozen=True)
class StepResult:
    """``values``: :data:`LOGGED_KEYS` as floats (mean over processes); ``outputs``: the network's outputs."""

    values: dict[str, float]
    outputs: dict[str, Tensor]


def make_optimizer(parameters: Iterable[nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam without weight decay (docs/method.md §4); the fused kernel on CUDA."""
    if device.type == "cuda":
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    return torch.optim.Adam(parameters, lr=lr)


def make_training_state(model: nn.Module, lr: float, memory_bank_size: int, mixed_precision: bool,
                        device: torch.device) -> TrainingState:
    """A fresh state for ``model`` (already on ``device``); a grad scaler only for float16 on CUDA."""
    return TrainingState(
        model=model,
        optimizer=make_optimizer(model.parameters(), lr, device),
        scaler=torch.amp.GradScaler("cuda") if mixed_precision and device.type == "cuda" else None,
        memory=MemoryBank(size=memory_bank_size),
    )


def autocast_context(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision: float16 autocast on CUDA, bfloat16 on CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def training_step(network: nn.Module, objective: DHFRObjective, state: TrainingState, batch: dict[str, Tensor],
                  lr: float, grad_clamp: float, mixed_precision: bool = False, iteration: int = 0) -> StepResult:
    """One optimiser step at learning rate ``lr`` on ``batch`` (``image``, ``depth`` and the
    :data:`LABEL_KEYS`; moved to the model's device here). ``network`` is ``state.model`` or its
    DDP wrapper. Raises :class:`NonFiniteLossError` naming ``iteration`` and the loss before any
    update when a loss is not finite."""
    device = next(state.model.parameters()).device
    image = batch["image"].to(device, non_blocking=True)
    depth = batch["depth"].to(device, non_blocking=True)
    labels = {key: batch[key].to(device, non_blocking=True) for key in LABEL_KEYS}
    with autocast_context(mixed_precision, device):
        outputs = network(image, depth)
    outputs = {name: output.float() for name, output in outputs.items()}
    result = objective(outputs, labels, image, state.memory)

    logged = mean_over_processes(torch.stack([result[key].detach() for key in LOGGED_KEYS]))
    values = dict(zip(LOGGED_KEYS, logged.tolist()))
    for name, value in values.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(f"iteration {iteration}: non-finite {name} = {value}; stopping")

    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(result["loss"]).backward()
        state.scaler.unscale_(state.optimizer)
    else:
        result["loss"].backward()
    nn.utils.clip_grad_value_(state.model.parameters(), grad_clamp, foreach=True)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    state.memory.push(result["memory_state"])
    return StepResult(values, outputs)
