"""SFNet compiled with ``torch.compile``: fused kernels instead of one kernel per op.

Eagerly, and also replayed from a CUDA graph, every op of SFNet is at least one kernel: about
2 000 in a train-mode forward+backward of one pass (``JOINT_PASSES=1``: of both), whatever the
batch, most of them small elementwise ops (BatchNorm, activations, residual adds, the
attention's logit terms). A CUDA graph removes their launch cost but not their run time and
memory traffic. Inductor (``torch.compile``'s default backend) fuses chains of such ops into
one generated kernel each; convolutions and matmuls stay cuDNN/cuBLAS calls.

What stays as eagerly:

* the weights: :func:`compile_network` compiles ``model.sfnet`` in place, so module tree,
  parameters, buffers and state-dict keys do not change, and checkpoints are the same files;
* DropPath: its masks stay eager ``bernoulli_`` calls (Inductor's ``fallback_random``), drawn
  from the default generator in the eager order, so a compiled run draws the eager run's masks;
* BatchNorm: running statistics are updated in place, also per pass within
  :func:`network.per_pass_batch_norm.interleaved_passes` (the pass count is a guard of the
  compiled code, so one and two passes each get their own compilation);
* the embedding model's own forward (the augmented input, the pass interleaving) runs eagerly
  around the compiled SFNet calls.

The compiled module can itself be captured as a CUDA graph (:mod:`network.cuda_graphs`).
Compilation happens at the first call for each input shape and mode (train/eval): minutes.
:func:`check_compile_support` checks beforehand that Inductor has its code generator here, and
:func:`compile_failure` puts a failed compilation on one line.
"""
from __future__ import annotations

from network.model import EmbeddingModel

COMPILE_BACKENDS = ("inductor", "aot_eager")
"""``inductor``: generated fused kernels (the fast path). ``aot_eager``: the same graph capture
and autograd split, run with eager kernels; for tests and for telling a tracing problem from a
code-generation one."""


def compile_network(model: EmbeddingModel, backend: str = "inductor") -> EmbeddingModel:
    """``model`` with ``model.sfnet`` compiled in place by ``torch.compile``; returns ``model``.

    One graph per call (``fullgraph``: a graph break raises instead of silently running part of
    the network eagerly) and static shapes (one compilation per batch size met).
    """
    if backend not in COMPILE_BACKENDS:
        raise ValueError(f"compile backend must be one of {', '.join(COMPILE_BACKENDS)}; got '{backend}'")
    options = {"fallback_random": True} if backend == "inductor" else None
    model.sfnet.compile(backend=backend, fullgraph=True, dynamic=False, options=options)
    return model


class CompileUnavailableError(RuntimeError):
    """Inductor cannot generate kernels on this machine (what is missing is named)."""


def check_compile_support(device_type: str) -> None:
    """Raise :class:`CompileUnavailableError` naming what Inductor lacks to generate kernels for
    ``device_type``: Triton on CUDA, a C++ compiler on the CPU. Compilation itself starts only at
    the first forward, after the run's expensive preparation."""
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise CompileUnavailableError("torch.compile needs Triton for CUDA kernels (pip install triton), "
                                          "which this Python lacks")
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as error:  # Inductor's InvalidCxxCompiler, whatever its wording
        raise CompileUnavailableError(f"torch.compile on the CPU needs a C++ compiler (g++ or clang++, or set CXX): "
                                      f"{str(error).strip().splitlines()[0]}") from None


def compile_failure(error: BaseException) -> str | None:
    """A failed ``torch.compile`` on one line: the cause Dynamo wraps (its message starts with
    ``backend='inductor' raised:``, the cause on the next line); ``None`` for any other error."""
    from torch._dynamo.exc import TorchDynamoException

    if not isinstance(error, TorchDynamoException):
        return None
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("raised:"):
        return lines[1]
    return lines[0] if lines else type(error).__name__

