"""The network replayed from CUDA graphs: the training forward and backward, and the eval forward.

Eagerly, one training step of this network launches about 8 600 small kernels and the GPU
waits on the CPU most of the time. Capturing the network once and replaying the capture
removes that launch cost (measured on an H100: README.md, "GPU fast paths").

* :func:`graphed_training_forward` — ``torch.cuda.make_graphed_callables`` over the
  train-mode forward with its augmented pass (docs/method.md §1.7); autograd replays the
  captured backward. DropPath draws its masks from the default CUDA generator at every replay
  (graph-safe Philox offsets), in the same order as eagerly, and BatchNorm updates its running
  statistics in place, so a graphed run follows the eager one.
* :class:`GraphedEval` — the eval forward, captured once per batch size it meets.

Both need CUDA, fixed input shapes per capture, parameters updated in place (every
``torch.optim`` optimiser does) and one process: DistributedDataParallel's gradient hooks are
not captured, so multi-GPU training runs eagerly. A model whose SFNet is compiled
(:mod:`network.compilation`) is captured the same way: the warm-up runs compile it.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import torch
from torch import Tensor, nn

from network.model import check_input_shapes
from network.precision import autocast
from network.sfnet import INPUT_SIZE, OUTPUT_NAMES

TRAINING_OUTPUT_NAMES = (*OUTPUT_NAMES, "div1_aug", "embedding_aug")
"""Keys of the training forward's result: SFNet's outputs, then the augmented pass's two."""
WARMUP_ITERATIONS = 3

Forward = Callable[[Tensor, Tensor], dict[str, Tensor]]


def _cuda_device(model: nn.Module) -> torch.device:
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError(f"CUDA graphs need the model on a CUDA device; it is on {device}")
    return device


@contextmanager
def no_garbage_collection() -> Iterator[None]:
    """Collect Python's garbage now, then keep its collector off until the block ends.

    A capture in global mode is invalidated by CUDA work outside it, such as freeing the dead
    graphs and tensors of earlier work (their memory and stream events) when Python's cyclic
    collector happens to run in the middle of the capture. PyTorch no longer collects before
    a capture (``torch.compiler.config.force_cudagraph_gc``), so the captures here do. (On an
    H100 the fp16 graphed-training test failed with "operation failed due to a previous error
    during capture" after the other graph tests and passed alone.)
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _OutputTuple(nn.Module):
    """The model with its dict result as a tuple in ``names`` order (graph capture takes tensors)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, image: Tensor, depth: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(image, depth)
        return tuple(outputs[name] for name in self.names)


def graphed_training_forward(model: nn.Module, batch_size: int, precision: str = "fp32") -> Forward:
    """``forward(image, depth)`` -> the training outputs, replayed from CUDA graphs (forward and backward).

    ``model`` is in training mode on a CUDA device; inputs must be ``[batch_size, 3, 224, 224]``.
    Captured under :func:`network.precision.autocast` for ``precision`` (TF32 is set process-wide
    by :func:`network.precision.set_float32_precision` before the capture).
    The capture's warm-up runs leave no trace: BatchNorm buffers, the CUDA random generator and
    the gradients are restored, so the first real step is the eager run's first step.
    """
    device = _cuda_device(model)
    if not model.training:
        raise ValueError("graphed_training_forward needs the model in training mode")
    shape = (batch_size, 3, INPUT_SIZE, INPUT_SIZE)
    sample_generator = torch.Generator(device).manual_seed(0)
    sample = tuple(torch.randn(shape, device=device, generator=sample_generator) for _ in range(2))
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    rng_state = torch.cuda.get_rng_state(device)
    with autocast(precision, device), no_garbage_collection():
        graphed = torch.cuda.make_graphed_callables(
            _OutputTuple(model, TRAINING_OUTPUT_NAMES), sample, num_warmup_iters=WARMUP_ITERATIONS
        )
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    torch.cuda.set_rng_state(rng_state, device)
    model.zero_grad(set_to_none=True)

    def forward(image: Tensor, depth: Tensor) -> dict[str, Tensor]:
        if tuple(image.shape) != shape or tuple(depth.shape) != shape:
            raise ValueError(f"the CUDA-graph forward was captured for inputs {list(shape)}; "
                             f"got image {list(image.shape)} and depth {list(depth.shape)}")
        return dict(zip(TRAINING_OUTPUT_NAMES, graphed(image, depth)))

    return forward


class GraphedEval:
    """``graphed(image, depth)`` -> the eval outputs (float32 copies), replayed from CUDA graphs.

    One graph per batch size met, captured on first use (the last, smaller batch of a test set
    gets its own); all graphs share one memory pool, which is safe because each replay's
    outputs are copied out before the next replay. ``precision`` is one of
    :data:`network.precision.PRECISIONS` (autocast for bf16/fp16; TF32 is set process-wide by
    :func:`network.precision.set_float32_precision`).
    """

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        self.device = _cuda_device(model)
        self.model = model.eval()
        self.precision = precision
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, Tensor, dict[str, Tensor]]] = {}
        self._pool = None

    def __call__(self, image: Tensor, depth: Tensor) -> dict[str, Tensor]:
        check_input_shapes(image, depth)
        batch_size = image.shape[0]
        if batch_size not in self._graphs:
            self._graphs[batch_size] = self._capture(batch_size)
        graph, static_image, static_depth, static_outputs = self._graphs[batch_size]
        static_image.copy_(image, non_blocking=True)
        static_depth.copy_(depth, non_blocking=True)
        graph.replay()
        return {name: output.float().clone() for name, output in static_outputs.items()}

    @torch.no_grad()
    def _capture(self, batch_size: int) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor, dict[str, Tensor]]:
        static_image = torch.zeros(batch_size, 3, INPUT_SIZE, INPUT_SIZE, device=self.device)
        static_depth = torch.zeros_like(static_image)
        side_stream = torch.cuda.Stream(self.device)
        side_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side_stream), autocast(self.precision, self.device):
            for _ in range(WARMUP_ITERATIONS):
                self.model(static_image, static_depth)
        torch.cuda.current_stream(self.device).wait_stream(side_stream)
        graph = torch.cuda.CUDAGraph()
        with no_garbage_collection(), torch.cuda.graph(graph, pool=self._pool), autocast(self.precision, self.device):
            static_outputs = self.model(static_image, static_depth)
        self._pool = graph.pool()
        return graph, static_image, static_depth, static_outputs
