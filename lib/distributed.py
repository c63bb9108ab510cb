"""Multi-process training helpers: process-group setup from torchrun's environment and a
differentiable variable-length all-gather.

One process per GPU (NCCL) or several CPU processes (gloo). ``all_gather_cat`` is the
objective's ``gather`` hook: it concatenates each rank's tensor along dim 0 in rank order,
as the release's gather across GPUs does for the prototypes (docs/method.md §2.5 step 8).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


class DeviceUnavailableError(RuntimeError):
    """The device asked for does not exist on this machine."""


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in the run: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def check_cuda_devices(needed: int, asked: str, instead: str) -> None:
    """Raise :class:`DeviceUnavailableError` unless torch sees at least ``needed`` CUDA GPUs.

    ``asked`` says how the GPUs were asked for (``GPU_ID 0,1``; the launchers pass ``GPU_ID`` on
    as ``CUDA_VISIBLE_DEVICES``, from which CUDA drops an index that does not exist) and
    ``instead`` how to run on the CPU; the message names both.
    """
    seen = torch.cuda.device_count()
    if seen < needed:
        found = "no CUDA GPU" if seen == 0 else f"{seen} CUDA GPU{'s' if seen > 1 else ''} of the {needed} needed"
        raise DeviceUnavailableError(f"{asked}: torch sees {found} on this machine "
                                     f"(`nvidia-smi -L` lists its GPUs; {instead} runs on the CPU)")


def setup_process_group(device: str) -> ProcessGroup:
    """Join the process group that torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without torchrun's variables the run is a single process on ``device``. ``device`` is
    ``'cpu'`` (gloo backend) or ``'cuda'`` (NCCL, one GPU per process chosen by ``LOCAL_RANK``).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        check_cuda_devices(local_rank + 1, "--device cuda", "--device cpu")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return ProcessGroup(rank=rank, world_size=world_size, device=torch_device)


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def teardown_process_group() -> None:
    """Leave the process group, if one was joined."""
    if _joined():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process; a no-op in a single-process run."""
    if _joined():
        dist.barrier()


def gather_objects(value: object) -> list[object]:
    """Every rank's ``value`` in rank order (picklable objects), on every process."""
    if not _joined():
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``tensor`` over the processes (a detached copy); ``tensor`` itself
    in a single-process run. A non-finite value on any process makes the mean non-finite."""
    if not _joined():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def _gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """All ranks' ``tensor`` concatenated along dim 0, and each rank's row count.

    Rows are padded to the longest rank's count for the collective and stripped afterwards.
    """
    world_size = dist.get_world_size()
    length = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
    lengths = [torch.empty_like(length) for _ in range(world_size)]
    dist.all_gather(lengths, length)
    row_counts = [int(n.item()) for n in lengths]
    padded = tensor.new_zeros((max(row_counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    pieces = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(pieces, padded)
    gathered = torch.cat([piece[:n] for piece, n in zip(pieces, row_counts)], dim=0)
    return gathered, row_counts


class _AllGatherCat(torch.autograd.Function):
    """Forward: every rank's rows concatenated. Backward: each rank receives the sum over
    ranks of the gradient of its own rows, so the losses of every process train the rows
    this process contributed (DDP's gradient average then divides by the world size, as
    for every other loss term)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        gathered, row_counts = _gather_rows(tensor)
        ctx.start = sum(row_counts[: dist.get_rank()])
        ctx.length = tensor.shape[0]
        return gathered

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.length]


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` along dim 0 across processes in rank order.

    Ranks may hold different numbers of rows (padded to the longest for the collective,
    stripped afterwards). Differentiable for floating tensors that require grad. Without
    an initialised process group this is the identity, as the release's gather is on one
    device.
    """
    if not _joined() or dist.get_world_size() == 1:
        return tensor
    if tensor.dim() == 0:
        raise ValueError("all_gather_cat needs a tensor with a dim 0 to concatenate along, got a 0-d tensor")
    if tensor.requires_grad:
        return _AllGatherCat.apply(tensor)
    return _gather_rows(tensor)[0]
