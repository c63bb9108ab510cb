"""Export the DHFR network to ONNX, verify the file with onnxruntime and time it against PyTorch (CPU).

The graph takes ``image`` and ``depth`` (``[B, 3, 224, 224]`` float32, as ``model(image, depth)``
takes them: ImageNet-normalised RGB, depth /255 on three channels) and returns the final
saliency map ``div1`` (``[B, 1, 224, 224]`` probabilities), plus the 64-d ``embedding``
(``[B, 64, 56, 56]``) with ``--embedding``. ``--batch dynamic`` (default) leaves B free;
``--batch N`` fixes it. The TorchScript exporter (``dynamo=False``) is used: it traces the
window attention with its shift and saliency masks and the cross padding into plain ONNX ops
(the torch.export-based exporter stops on the batch dimension of this network).

Verification: onnxruntime (CPU) and PyTorch (CPU, float32) run the same inputs: ``image`` and
``depth`` of the npz file ``--inputs`` (without it, the forward fixture's two samples,
``../shared/reference/forward_eval.npz``, or seeded random inputs of the same shape when that
file is absent), in batches of 1 and 2 for a dynamic graph, in one batch of N for a fixed one.
The largest |difference| of each output is printed; above ``--tolerance`` (1e-4) the file is
not written and the exit status is 1. Then both runtimes are timed at batch 1 (batch N for a
fixed N), median of ``--timing-runs`` runs.

    python pyscripts/tools/export_onnx.py --checkpoint CKPT --out model.onnx \
        [--batch dynamic|N] [--opset N] [--embedding] [--report report.json]

Exit status: 0 verified and written, 1 verification failed (or a write failed), 2 unusable
arguments or inputs, found before anything is exported or written (one line).
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import json
import os
import statistics
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.cli import USAGE_ERROR, ArgumentParser, non_negative_int, output_file, positive_float, positive_int
from lib.interrupts import exit_status
from lib.io import WriteError, atomic_path, atomic_write_text
from network import CheckpointError
from network.sfnet import INPUT_SIZE
from spml.evaluation.inference import load_model

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INPUTS = REPO_ROOT.parent / "shared" / "reference" / "forward_eval.npz"
INPUT_NAMES = ("image", "depth")
DEFAULT_OPSET = 17
OPSETS = range(13, 21)
"""Opsets the TorchScript exporter writes (LayerNormalization is a single op from 17 on)."""
TOLERANCE = 1e-4
DYNAMIC = "dynamic"


class OnnxOutputs(nn.Module):
    """``model(image, depth)`` reduced to a tuple of the exported outputs (``div1``[, ``embedding``])."""

    def __init__(self, model: nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image, depth)
        return tuple(outputs[name] for name in self.output_names)


def output_names(embedding: bool) -> tuple[str, ...]:
    return ("div1", "embedding") if embedding else ("div1",)


def dynamic_axes(batch: int | None, names: tuple[str, ...]) -> dict[str, dict[int, str]] | None:
    """The exporter's ``dynamic_axes``: a free batch dimension on every input and output, or None for a fixed batch."""
    return None if batch is not None else {name: {0: "batch"} for name in (*INPUT_NAMES, *names)}


def export_onnx(model: nn.Module, path: Path, batch: int | None, opset: int, embedding: bool) -> None:
    """Trace ``model`` (eval mode, CPU, float32) into an ONNX file at ``path`` (written in place)."""
    names = output_names(embedding)
    wrapper = OnnxOutputs(model, names).eval()  # eval: the exporter restores the wrapper's mode afterwards
    example = torch.zeros(batch or 1, 3, INPUT_SIZE, INPUT_SIZE)
    with warnings.catch_warnings():  # the legacy exporter and the traced shape check announce themselves
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper, (example, example), str(path), dynamo=False, opset_version=opset,
            input_names=list(INPUT_NAMES), output_names=list(names), dynamic_axes=dynamic_axes(batch, names),
        )


class InputsError(ValueError):
    """``--inputs`` is not an npz file with usable ``image`` and ``depth`` arrays; the message names it."""


def verification_inputs(path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(image, depth) float32 ``[N, 3, 224, 224]`` and where they come from: the npz file ``path``
    (``--inputs``); without it the forward fixture, or seeded random inputs of its shape when
    the fixture is absent. Raises :class:`InputsError` when the file is not such an npz file."""
    if path is None:
        if not DEFAULT_INPUTS.is_file():
            generator = np.random.default_rng(0)
            shape = (2, 3, INPUT_SIZE, INPUT_SIZE)
            image = generator.standard_normal(shape).astype(np.float32)
            depth = generator.random(shape).astype(np.float32)
            return image, depth, f"seeded random inputs ({DEFAULT_INPUTS} not found)"
        path = DEFAULT_INPUTS
    if not path.is_file():
        raise InputsError(f"--inputs {path}: file not found")
    arrays = _npz_inputs(path)
    if arrays is None:
        raise InputsError(f"--inputs {path}: not an npz file")
    missing = [name for name in INPUT_NAMES if name not in arrays]
    if missing:
        raise InputsError(f"--inputs {path}: no '{missing[0]}' array")
    image, depth = arrays["image"], arrays["depth"]
    if image.ndim != 4 or not len(image) or image.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE) or depth.shape != image.shape:
        raise InputsError(f"--inputs {path}: 'image' and 'depth' must both be [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], N >= 1, "
                         f"got {list(image.shape)} and {list(depth.shape)}")
    return image.astype(np.float32), depth.astype(np.float32), str(path)


def _npz_inputs(path: Path) -> dict[str, np.ndarray] | None:
    """The ``image`` and ``depth`` arrays of the npz file ``path`` (those it has), or None if it is not an npz file."""
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):  # an .npy file: one array
            return None
        with data:
            return {name: data[name] for name in INPUT_NAMES if name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def verification_batches(image: np.ndarray, depth: np.ndarray, batch: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dynamic: the samples one by one and all together; fixed N: one batch of N, cycling through the samples."""
    if batch is None:
        return [(image[i:i + 1], depth[i:i + 1]) for i in range(len(image))] + [(image, depth)]
    index = np.arange(batch) % len(image)
    return [(image[index], depth[index])]


def torch_outputs(model: nn.Module, image: np.ndarray, depth: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
    with torch.inference_mode():
        outputs = model(torch.from_numpy(image), torch.from_numpy(depth))
    return [outputs[name].numpy() for name in names]


def max_differences(session, model: nn.Module, batches: list[tuple[np.ndarray, np.ndarray]],
                    names: tuple[str, ...]) -> dict[str, float]:
    """Largest |onnxruntime - PyTorch| of each output over all ``batches``."""
    worst = dict.fromkeys(names, 0.0)
    for image, depth in batches:
        onnx_out = session.run(list(names), {"image": image, "depth": depth})
        for name, ours, reference in zip(names, onnx_out, torch_outputs(model, image, depth, names)):
            worst[name] = max(worst[name], float(np.abs(ours - reference).max()))
    return worst


def median_seconds(run: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_batch(text: str) -> int | None:
    if text == DYNAMIC:
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'dynamic' nor a positive integer")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint in the release layout")
    parser.add_argument("--out", required=True, type=output_file,
                        help="the ONNX file to write")
    parser.add_argument("--batch", type=parse_batch, default=None, metavar="dynamic|N",
                        help="batch dimension: 'dynamic' (default) or a fixed size")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, choices=OPSETS, metavar="N",
                        help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    parser.add_argument("--embedding", action="store_true", help="also output the embedding")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="npz with 'image' and 'depth' to verify on (default: the forward fixture "
                             f"{DEFAULT_INPUTS}, or seeded random inputs when it is absent)")
    parser.add_argument("--tolerance", type=positive_float, default=TOLERANCE,
                        help=f"largest allowed |ONNX - PyTorch|, > 0 (default {TOLERANCE:g})")
    parser.add_argument("--timing-runs", type=non_negative_int, default=10, help="timed runs per runtime (0: no timing)")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads(), help="CPU threads of both runtimes")
    parser.add_argument("--report", type=output_file, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.report is not None and args.report.resolve() == args.out.resolve():
        parser.error(f"--report {args.report}: the same file as --out")
    return args


class VerificationError(Exception):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


def export_and_verify(model: nn.Module, args: argparse.Namespace, inputs: tuple[np.ndarray, np.ndarray, str],
                      onnx, onnxruntime) -> dict:
    """Export to ``args.out`` (installed only once verified), verify on ``inputs`` (:func:`verification_inputs`),
    time; return the numbers."""
    names = output_names(args.embedding)
    image, depth, source = inputs
    report: dict = {"opset": args.opset, "batch": args.batch or DYNAMIC, "outputs": list(names), "inputs": source}
    with atomic_path(args.out) as tmp:
        start = time.perf_counter()
        export_onnx(model, tmp, args.batch, args.opset, args.embedding)
        report["export_seconds"] = time.perf_counter() - start
        onnx.checker.check_model(os.fspath(tmp))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(os.fspath(tmp), options, providers=["CPUExecutionProvider"])
        batches = verification_batches(image, depth, args.batch)
        report["max_abs_diff"] = max_differences(session, model, batches, names)
        print(f"exported {', '.join(INPUT_NAMES)} -> {', '.join(names)} (opset {args.opset}, batch "
              f"{report['batch']}) in {report['export_seconds']:.1f} s")
        print(f"onnxruntime vs PyTorch on {source}, batch sizes {sorted({len(b[0]) for b in batches})}: max |diff| "
              + ", ".join(f"{name} {value:.2e}" for name, value in report["max_abs_diff"].items()))
        failed = [name for name, value in report["max_abs_diff"].items() if not value <= args.tolerance]
        if failed:
            raise VerificationError(f"onnxruntime differs from PyTorch by more than {args.tolerance:g} "
                                    f"({', '.join(failed)}); {args.out} not written")
    if args.timing_runs > 0:
        timed_image, timed_depth = verification_batches(image, depth, args.batch or 1)[0]
        session = onnxruntime.InferenceSession(os.fspath(args.out), options, providers=["CPUExecutionProvider"])
        feeds = {"image": timed_image, "depth": timed_depth}
        report["timing"] = {
            "batch": len(timed_image), "threads": args.threads, "runs": args.timing_runs,
            "onnxruntime_ms": 1e3 * median_seconds(lambda: session.run(list(names), feeds), args.timing_runs),
            "pytorch_ms": 1e3 * median_seconds(
                lambda: torch_outputs(model, timed_image, timed_depth, names), args.timing_runs),
        }
        timing = report["timing"]
        print(f"CPU, batch {timing['batch']}, {args.threads} thread(s), median of {args.timing_runs} runs: "
              f"onnxruntime {timing['onnxruntime_ms']:.0f} ms, PyTorch {timing['pytorch_ms']:.0f} ms")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        print(f"error: {error.name} is not installed (python3 -m pip install onnx onnxruntime)", file=sys.stderr)
        return USAGE_ERROR
    try:
        inputs = verification_inputs(args.inputs)
        model = load_model(args.checkpoint, torch.device("cpu"))
    except (InputsError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    torch.set_num_threads(args.threads)
    try:
        report = export_and_verify(model, args, inputs, onnx, onnxruntime)
        print(f"written: {args.out}")
        if args.report:
            atomic_write_text(json.dumps(report, indent=2) + "\n", args.report)
    except (VerificationError, WriteError) as error:  # the paths were checked up front: a full disk, say
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "export_onnx.py"))
