"""Speed benchmarks. Subcommands:

objective  forward+backward of spml.losses.DHFRObjective (docs/method.md §2) on synthetic
           224×224 batches, against a straightforward formulation that clusters and scores
           each image in its own Python iteration (kept here only for the comparison).

train      the training step (spml.training.step, the step the training loop runs, release
           settings, full memory bank): each phase timed with a device synchronisation
           between phases, steps/s without synchronisation, host-sync points of one step
           (lib.profiling) and peak memory; eager float32, and on CUDA also the CUDA-graph
           replay in each --precisions; each for the training forward's two passes run one
           after the other or as one batch (--passes separate joint), and with SFNet eager
           or compiled by torch.compile (--compile off on; the row's setup_s includes the
           compilation).

profile    where an eager training step's time goes (torch.profiler, CPU and CUDA activity):
           device time and kernel launches (CPU: self CPU time and ops) per phase, and the
           --top kernels (CPU: ops) by device time with the op that launched each;
           --trace DIR also writes a Chrome trace; --compile profiles the compiled step.

eval       the eval forward at batch 1/8/32: eager float32 and, on CUDA, the graph replay
           (network.cuda_graphs.GraphedEval) in each --precisions.

loader     augmented training samples per second for each DataLoader worker count, on the
           training files of --data-root or of a synthetic dataset in a temporary folder.

all        train, eval and loader, one table each; --json writes every row.

Each subcommand takes only its own options (speed.py SUBCOMMAND --help lists them). A bad
option, a --data-root without training samples or a --json file that cannot be written stops
with one line and exit status 2 before anything is timed.

Examples:
  python pyscripts/benchmark/speed.py all --devices cuda --json speed.json
  python pyscripts/benchmark/speed.py train --devices cpu --batch-size 2 --steps 3
  python pyscripts/benchmark/speed.py train --devices cuda --precisions fp32 tf32 --passes separate joint
  python pyscripts/benchmark/speed.py train --devices cuda --precisions fp32 --passes joint --compile off on
  python pyscripts/benchmark/speed.py profile --devices cuda --json profile.json --trace trace
  python pyscripts/benchmark/speed.py objective --batch-sizes 4 16 --repeats 3
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import bisect
import json
import resource
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from lib.cli import ArgumentParser, non_negative_int, output_file, positive_int
from lib.distributed import ProcessGroup
from lib.interrupts import exit_status
from lib.io import WriteError, atomic_write_text, output_folder_problem
from lib.precisions import check_precision_device
from lib.profiling import count_cuda_syncs, count_host_syncs
from network import build_model
from network.compilation import CompileUnavailableError, check_compile_support, compile_network
from network.cuda_graphs import GraphedEval, graphed_training_forward
from network.precision import PRECISIONS, set_float32_precision
from spml.clustering import grid_initial_labels, grid_num_clusters, pixel_features, resize_labels, segment_prototypes, spherical_kmeans
from spml.config import default_config, default_joint_passes
from spml.losses import DHFRObjective
from spml.losses.hypersphere import semantic_annotation_loss
from spml.losses.objective import saliency_losses
from spml.losses.parted_ce import SIDE_WEIGHTS
from spml.losses.prototype_accuracy import prototype_accuracy
from spml.losses.segsort import segsort_loss
from spml.data.errors import DataError
from spml.data.lists import TrainSample, scan_train_samples, write_train_list
from spml.training.reporting import StepReporter
from spml.training.sampling import make_loader, training_batches
from spml.training.step import (PHASES, Forward, LoggedValues, TrainingState, backward, batch_to_device,
                                make_training_state, network_outputs, training_step, update)

INPUT_SIZE, EMBEDDING_SIZE, EMBEDDING_DIM = 224, 56, 64
REPO_ROOT = Path(__file__).resolve().parents[2]
WARMUP_STEPS = 3
PROFILE_NAME_WIDTH = 100
"""Characters of a kernel's name shown in the profile table (the JSON keeps it whole)."""
SYNTHETIC_TRAIN_SAMPLES = 64
PASSES = ("separate", "joint")
"""How the training forward runs its plain and augmented pass: two calls, or one batch (``JOINT_PASSES=1``)."""
COMPILE_CHOICES = ("off", "on")
"""SFNet eager, or compiled by ``torch.compile`` (``COMPILE=1``, :mod:`network.compilation`)."""


def default_passes(device: torch.device) -> str:
    """The training loop's default on ``device`` (unset ``JOINT_PASSES``, :func:`spml.config.default_joint_passes`)."""
    return PASSES[default_joint_passes(device.type)]


def _compile_label(compiled: bool) -> str:
    """The row's ``compile`` column: one of :data:`COMPILE_CHOICES`."""
    return COMPILE_CHOICES[compiled]


def _smooth_field(generator: torch.Generator, batch_size: int, channels: int, size: int) -> torch.Tensor:
    """Uniform noise on a 14×14 grid, bilinearly upsampled to ``size``: ``[B, C, size, size]`` in [0, 1]."""
    coarse = torch.rand(batch_size, channels, 14, 14, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def synthetic_objective_inputs(batch_size: int, device: torch.device, seed: int = 0) -> tuple[dict, dict, torch.Tensor]:
    """Network outputs (leaf tensors requiring grad), labels and the image, shaped like a training batch.

    Embeddings and instance labels are smooth random fields (instance: mostly low values, like
    an edge map, quantised to 2..200),
    giving several hundred segments per image as real training batches do; scribbles are a
    background band and a foreground band, the rest unknown.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 1, INPUT_SIZE, INPUT_SIZE)
    outputs = {name: torch.rand(shape, generator=generator) for name in (*SIDE_WEIGHTS, "contour_div1", "div1_aug")}
    for name in ("embedding", "embedding_aug"):
        outputs[name] = _smooth_field(generator, batch_size, EMBEDDING_DIM, EMBEDDING_SIZE) + 0.1 * torch.randn(
            batch_size, EMBEDDING_DIM, EMBEDDING_SIZE, EMBEDDING_SIZE, generator=generator
        )
    outputs = {name: tensor.to(device).requires_grad_() for name, tensor in outputs.items()}
    field = _smooth_field(generator, batch_size, 1, INPUT_SIZE)
    semantic = torch.full((batch_size, INPUT_SIZE, INPUT_SIZE), 2, dtype=torch.long)
    semantic[:, 8:24] = 0
    semantic[:, 100:116, 60:160] = 1
    labels = {
        "semantic_label": semantic,
        "instance_label": (2 + 4 * (49 * field.squeeze(1) ** 4).round()).long(),
        "contour_sum_label": torch.rand(batch_size, INPUT_SIZE, INPUT_SIZE, generator=generator),
    }
    image = torch.randn(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
    return outputs, {name: tensor.to(device) for name, tensor in labels.items()}, image.to(device)


def looped_objective(outputs: dict, labels: dict, image: torch.Tensor) -> dict:
    """The straightforward formulation, for timing only: k-means, segments and img_sim image by image,
    with the autograd-differentiated reference :func:`~spml.losses.segsort.segsort_loss`.

    Release defaults, single process, empty memory bank; the same numbers as
    :class:`DHFRObjective` (checked by :func:`time_objective`).
    """
    config = default_config()
    net, weights = config.network, config.loss
    embedding = outputs["embedding"]
    num_images, _, height, width = embedding.shape
    grid = tuple(net.kmeans_num_clusters)
    initial = grid_initial_labels(height, width, grid, device=embedding.device)
    semantic, instance = (resize_labels(labels[key], (height, width)) for key in ("semantic_label", "instance_label"))
    pixels, own, prototypes, prototype_labels, img_sim = [], [], [], [], 0.0
    for pass_embedding in (embedding, outputs["embedding_aug"]):
        for position in range(num_images):
            z, zl = (t.squeeze(0) for t in pixel_features(pass_embedding[position : position + 1]))
            clusters = spherical_kmeans(zl.detach().unsqueeze(0), initial, grid_num_clusters(height, width, grid), net.kmeans_iterations).squeeze(0)
            combined = semantic[position].reshape(-1) * net.label_divisor + instance[position].reshape(-1)
            combined_range = int(combined.max()) + 1
            keys, index = torch.unique(clusters * combined_range + combined, return_inverse=True)
            segment_label = keys % combined_range
            own.append(index + sum(len(p) for p in prototypes))
            pixels.append(z)
            prototypes.append(segment_prototypes(z, index, len(keys)))
            prototype_labels.append(segment_label // net.label_divisor)
            per_pixel = segsort_loss(
                zl.unsqueeze(0),
                instance[position].reshape(1, -1),
                index.unsqueeze(0),
                segment_prototypes(zl, index, len(keys)).unsqueeze(0),
                (segment_label % net.label_divisor).unsqueeze(0),
                torch.ones(1, len(keys), dtype=torch.bool, device=embedding.device),
                weights.img_sim_concentration,
                weights.margin,
            )
            img_sim = img_sim + per_pixel.mean() / num_images
    all_prototypes, all_labels = torch.cat(prototypes), torch.cat(prototype_labels)
    num_classes = config.dataset.num_classes
    sem_ann = semantic_annotation_loss(
        torch.cat(pixels), semantic.reshape(-1).repeat(2), torch.cat(own), all_prototypes, all_labels,
        num_classes, weights.sem_ann_concentration, weights.margin, segsort=segsort_loss,
        num_kept_pixels=2 * int((semantic < num_classes).sum()), num_kept_prototypes=int((all_labels < num_classes).sum()),
    )
    losses = {
        "sem_ann_loss": weights.sem_ann_loss_weight * sem_ann,
        "img_sim_loss": weights.img_sim_loss_weight * img_sim,
        **saliency_losses(outputs, labels, image, weights),
    }
    return {**losses, "loss": sum(losses.values()), "accuracy": prototype_accuracy(all_prototypes.detach(), all_labels)}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_forward_backward(objective: Callable[[dict, dict, torch.Tensor], dict], outputs: dict, labels: dict, image: torch.Tensor,
                           repeats: int) -> tuple[float, float]:
    """Median seconds of ``objective(...)["loss"].backward()`` over ``repeats`` runs (after one warm-up), and the loss."""
    losses = []

    def step() -> None:
        for tensor in outputs.values():
            tensor.grad = None
        total = objective(outputs, labels, image)["loss"]
        total.backward()
        losses.append(float(total.detach()))

    return _median_seconds(step, outputs["embedding"].device, repeats), losses[-1]


def time_objective(devices: list[str], batch_sizes: list[int], repeats: int) -> list[dict]:
    """Time the batched and the looped objective for every device and batch size."""
    rows = []
    cases = [(device, batch_size) for device in devices for batch_size in batch_sizes]
    for device_name, batch_size in tqdm(cases, desc="objective", unit="case"):
        device = torch.device(device_name)
        outputs, labels, image = synthetic_objective_inputs(batch_size, device)
        batched_seconds, batched_loss = _time_forward_backward(DHFRObjective().to(device), outputs, labels, image, repeats)
        looped_seconds, looped_loss = _time_forward_backward(looped_objective, outputs, labels, image, repeats)
        if abs(batched_loss - looped_loss) > 1e-4 * abs(looped_loss):
            raise RuntimeError(f"batched and looped objective disagree on {device_name}, batch {batch_size}: {batched_loss} vs {looped_loss}")
        rows.append(
            {"device": device_name, "batch_size": batch_size, "batched_s": batched_seconds, "looped_s": looped_seconds, "loss": batched_loss}
        )
    return rows


def _median_seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of ``step()`` over ``repeats`` runs, after one warm-up run."""
    seconds = []
    for run in range(repeats + 1):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        if run:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _training_batch(batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A loader-like batch on the CPU (pinned for a GPU): synthetic labels, image and depth."""
    _, labels, image = synthetic_objective_inputs(batch_size, torch.device("cpu"))
    batch = {**labels, "image": image, "depth": torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE)}
    return {name: tensor.pin_memory() if device.type == "cuda" else tensor for name, tensor in batch.items()}


def _peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset, or this process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def backward_of_one_step(network: Callable, objective: DHFRObjective, state, batch: dict, precision: str) -> None:
    """A training step up to its gradients: forward, objective with the memory bank, the logging read, backward
    (an ordinary iteration: no accuracy, see :class:`TrainingRun`)."""
    image, depth, labels = batch_to_device(batch, next(state.model.parameters()).device)
    result = objective(network_outputs(network, image, depth, precision), labels, image, state.memory, accuracy=False)
    LoggedValues(result, 0).read()
    backward(state, result["loss"])
    state.memory.push(result["memory_state"])


@dataclass
class TrainingRun:
    """The training step of ``spml.training.step`` at release settings on a synthetic batch, ready to repeat.

    Its steps are the training loop's ordinary iterations, which leave out the objective's
    diagnostic accuracy (computed on TensorBoard iterations only, 1 in 100 by default).
    """

    network: Forward
    objective: DHFRObjective
    state: TrainingState
    batch: dict[str, torch.Tensor]
    lr: float
    clamp: float
    precision: str = "fp32"

    def steps(self, count: int) -> None:
        """``count`` steps, each one's losses read by the training loop's :class:`StepReporter`
        (after the next step is issued; no bar, no TensorBoard)."""
        reporter = StepReporter(0, count, 1, lambda _: self.lr, None, INPUT_SIZE)
        for iteration in reporter.iterations():
            step = training_step(self.network, self.objective, self.state, self.batch, self.lr, self.clamp,
                                 self.precision, iteration, accuracy=False)
            reporter.step(step.logged, self.batch, step.outputs)
        reporter.close()


def warm_training_run(device: torch.device, batch_size: int, graphs: bool, passes: str, precision: str = "fp32",
                      warmup_steps: int = WARMUP_STEPS, compiled: bool = False) -> TrainingRun:
    """Model (seed 0, train mode, its two passes as ``passes``, one of :data:`PASSES`, says, SFNet
    compiled when ``compiled``), objective, optimiser state and batch as the training loop builds them; the
    network replayed from CUDA graphs when ``graphs``. ``warmup_steps`` steps have run, so the
    memory bank is full (it holds two steps) and the kernels are chosen (and compiled)."""
    train_config = default_config().train
    torch.manual_seed(0)
    model = build_model(joint_passes=passes == "joint").to(device).train()
    if compiled:
        compile_network(model)
    objective = DHFRObjective().to(device)
    set_float32_precision(precision)
    state = make_training_state(model, train_config.base_lr, default_config().loss.memory_bank_size, precision, device)
    network = graphed_training_forward(model, batch_size, precision) if graphs else model
    run = TrainingRun(network, objective, state, _training_batch(batch_size, device), train_config.base_lr,
                      train_config.grad_clamp, precision)
    run.steps(warmup_steps)
    return run


def time_training(device: torch.device, batch_size: int, graphs: bool, steps: int, precision: str = "fp32",
                  passes: str | None = None, compiled: bool = False) -> dict:
    """The training step of ``spml.training.step`` at release settings in ``precision`` (``passes``:
    one of :data:`PASSES`; by default as the training loop runs them on ``device``, :func:`default_passes`): phases
    (synchronised), steps/s (unsynchronised, each step's losses read after the next step is issued,
    as the training loop does), peak memory and the host-sync points of one step up to its
    gradients and, apart, of the optimiser update (CPU Adam reads each parameter's step count).

    The memory bank is full (:func:`warm_training_run`) before anything is timed, as in a real run;
    ``setup_s`` is the time that took (with the graph capture and the compilation, if any).
    """
    passes = passes or default_passes(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    setup_start = time.perf_counter()
    run = warm_training_run(device, batch_size, graphs, passes, precision, compiled=compiled)
    setup_seconds = time.perf_counter() - setup_start
    network, objective, state, batch, lr, clamp = run.network, run.objective, run.state, run.batch, run.lr, run.clamp
    phase_seconds: dict[str, list[float]] = {name: [] for name in PHASES}
    for _ in range(steps):
        marks = [_now(device)]
        image, depth, labels = batch_to_device(batch, device)
        marks.append(_now(device))
        outputs = network_outputs(network, image, depth, precision)
        marks.append(_now(device))
        result = objective(outputs, labels, image, state.memory, accuracy=False)
        marks.append(_now(device))
        LoggedValues(result, 0).read()
        marks.append(_now(device))
        backward(state, result["loss"])
        marks.append(_now(device))
        update(state, lr, clamp)
        state.memory.push(result["memory_state"])
        marks.append(_now(device))
        for name, start, end in zip(PHASES, marks, marks[1:]):
            phase_seconds[name].append(end - start)
    start = _now(device)
    run.steps(steps)
    unsynchronised = (_now(device) - start) / steps
    # The CPU counter names the ops; on CUDA, PyTorch's sync debug mode counts the waits.
    if device.type == "cpu":
        syncs = count_host_syncs(lambda: backward_of_one_step(network, objective, state, batch, precision))
        optimizer_syncs = count_host_syncs(lambda: update(state, lr, clamp))
        sync_counts = {"host_syncs": sum(syncs.values()), "host_sync_ops": dict(syncs),
                       "optimizer_host_syncs": sum(optimizer_syncs.values())}
    else:
        sync_counts = {"host_syncs": count_cuda_syncs(lambda: backward_of_one_step(network, objective, state, batch, precision)),
                       "optimizer_host_syncs": count_cuda_syncs(lambda: update(state, lr, clamp))}
    set_float32_precision("fp32")
    row = {"device": str(device), "batch_size": batch_size, "mode": "cuda-graph" if graphs else "eager",
           "precision": precision, "passes": passes, "compile": _compile_label(compiled), "setup_s": setup_seconds,
           **{f"{name}_ms": 1e3 * statistics.median(values) for name, values in phase_seconds.items()},
           "step_ms": 1e3 * unsynchronised, "steps_per_s": 1 / unsynchronised,
           "peak_memory_gib": _peak_memory_gib(device), **sync_counts}
    row["phases_total_ms"] = sum(row[f"{name}_ms"] for name in PHASES)
    return row


def _phase_spans(events: list) -> list[tuple[float, float, str]]:
    """``(start, end, phase)`` in µs of each :data:`PHASES` label the step recorded on the host, in start order."""
    return sorted((event.time_range.start, event.time_range.end, event.name) for event in events
                  if event.device_type == DeviceType.CPU and event.is_user_annotation and event.name in PHASES)


def _device_work(events: list, cuda: bool) -> Iterator[tuple[str, str | None, float, float]]:
    """``(name, op, host start µs, µs)`` of each piece of device work. On CUDA: each kernel, copy or
    memset (the profiler's CUDA-type events, which it hangs on the host op that launched them as
    ``kernels``), with that op and its start; on the CPU: each op's self CPU time (labels left out)."""
    for event in events:
        if event.device_type != DeviceType.CPU or event.is_async:
            continue
        if cuda:
            for kernel in event.kernels:
                yield kernel.name, event.name, event.time_range.start, kernel.duration
        elif not event.is_user_annotation:
            yield event.name, None, event.time_range.start, event.self_cpu_time_total


def summarise_profile(events: list, cuda: bool, steps: int, top: int) -> tuple[list[dict], list[dict]]:
    """Phase rows and the ``top`` kernel rows (ops on the CPU) of the profiler ``events`` of ``steps``
    training steps, per step; see :func:`profile_training`."""
    spans = _phase_spans(events)
    starts = [start for start, _, _ in spans]
    per_phase = {name: [0.0, 0] for name in (*PHASES, "other")}  # [µs, calls]
    per_kernel: dict[str, list] = {}  # [µs, calls, µs by launching op]
    for name, op, start, duration in _device_work(events, cuda):
        index = bisect.bisect_right(starts, start) - 1
        phase = spans[index][2] if index >= 0 and start < spans[index][1] else "other"
        for totals in (per_phase[phase], per_kernel.setdefault(name, [0.0, 0, Counter()])):
            totals[0] += duration
            totals[1] += 1
        if op is not None:
            per_kernel[name][2][op] += duration
    if cuda:  # kernels the profiler tied to no host op: none expected, shown if any
        kernels = [event for event in events if event.device_type == DeviceType.CUDA and not event.is_user_annotation]
        per_phase["unlinked"] = [sum(event.time_range.elapsed_us() for event in kernels)
                                 - sum(duration for duration, _ in per_phase.values()),
                                 len(kernels) - sum(calls for _, calls in per_phase.values())]
    total_us = sum(duration for duration, _ in per_phase.values())
    per_phase["total"] = [total_us, sum(calls for _, calls in per_phase.values())]
    phases = [{"phase": name, "device_ms": duration / 1e3 / steps, "calls": round(calls / steps)}
              for name, (duration, calls) in per_phase.items() if name in (*PHASES, "total") or calls]
    ranked = sorted(per_kernel.items(), key=lambda item: item[1][0], reverse=True)[:top]
    kernels = [{"name": name, **({"op": ops.most_common(1)[0][0]} if ops else {}), "calls": round(calls / steps),
                "ms_per_step": duration / 1e3 / steps, "mean_us": duration / calls, "share_pct": 100 * duration / total_us}
               for name, (duration, calls, ops) in ranked]
    return phases, kernels


def profile_training(device: torch.device, batch_size: int, steps: int, top: int, trace_dir: Path | None = None,
                     warmup_steps: int = WARMUP_STEPS, precision: str = "fp32",
                     passes: str | None = None, compiled: bool = False) -> dict[str, list[dict]]:
    """Where the time of an eager training step in ``precision`` goes: ``steps`` steps of :func:`warm_training_run`
    recorded with ``torch.profiler`` (CPU, and CUDA on a GPU; eager so the kernels carry the ops'
    names; a CUDA-graph replay runs the same kernels); ``passes`` as in :func:`time_training`.

    ``phases``: per :data:`PHASES` label (work attributed by the host time of the op that ran or
    launched it, so backward ops on autograd's device thread count too; ``other`` and, on CUDA,
    ``unlinked`` kernels tied to no host op appear only if there are any) and ``total``: device
    milliseconds per step (CUDA kernel time; on the CPU, self CPU time of the ops) and ``calls``
    per step (kernel launches; ops on the CPU). ``top``: the ``top`` kernels (ops on the CPU) by
    device time, with the op that launched most of each kernel's time (CUDA). ``trace_dir`` also
    receives the Chrome trace.
    """
    passes = passes or default_passes(device)
    run = warm_training_run(device, batch_size, graphs=False, passes=passes, precision=precision,
                            warmup_steps=warmup_steps, compiled=compiled)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        run.steps(steps)
        _synchronize(device)
    set_float32_precision("fp32")
    phases, kernels = summarise_profile(profiler.events(), device.type == "cuda", steps, top)
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(trace_dir / f"profile_{device.type}_batch{batch_size}.json"))
    head = {"device": str(device), "batch_size": batch_size, "precision": precision, "passes": passes,
            "compile": _compile_label(compiled)}
    return {"phases": [{**head, **row} for row in phases], "top": [{**head, **row} for row in kernels]}


def time_eval(device: torch.device, batch_sizes: list[int], precisions: list[str], repeats: int) -> list[dict]:
    """Eval forward at each batch size: eager float32, and on CUDA the graph replay in each precision."""
    torch.manual_seed(0)
    model = build_model().to(device).eval()
    rows = []
    for batch_size in tqdm(batch_sizes, desc="eval", unit="batch size"):
        image = torch.randn(batch_size, 3, INPUT_SIZE, INPUT_SIZE, device=device)
        depth = torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE, device=device)

        def eager() -> None:
            with torch.no_grad():
                model(image, depth)

        row = {"device": str(device), "batch_size": batch_size, "eager_ms": 1e3 * _median_seconds(eager, device, repeats)}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            for precision in precisions:
                set_float32_precision(precision)
                graphed = GraphedEval(model, precision)
                row[f"graph_{precision}_ms"] = 1e3 * _median_seconds(lambda: graphed(image, depth), device, repeats)
                del graphed
            set_float32_precision("fp32")
            row["graph_peak_memory_gib"] = _peak_memory_gib(device)
        rows.append(row)
    return rows


def time_loader(data_root: Path | None, workers: list[int], batch_size: int, batches: int,
                samples: list[TrainSample] | None = None) -> list[dict]:
    """Augmented training samples per second: one sample at a time in this process (one worker's
    rate), then the training DataLoader (``spml.training.sampling.make_loader``) per worker count.

    The training samples of ``data_root`` (``samples``, if already scanned by
    :func:`loader_samples`); without ``data_root`` a synthetic dataset is written to a temporary folder.
    """
    with tempfile.TemporaryDirectory() as scratch:
        if data_root is None:
            data_root = Path(scratch) / "data"
            subprocess.run([sys.executable, str(REPO_ROOT / "pyscripts/tools/make_synthetic_data.py"), "--root",
                            str(data_root), "--num-train", str(SYNTHETIC_TRAIN_SAMPLES), "--num-test", "1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = default_config()
        config.dataset.data_dir = str(data_root)
        config.train.batch_size = batch_size
        list_path = Path(scratch) / "train.txt"
        write_train_list(scan_train_samples(data_root) if samples is None else samples, list_path, data_root)
        group = ProcessGroup(rank=0, world_size=1, device=torch.device("cpu"))
        rows = []
        for count in tqdm(workers, desc="loader", unit="worker count"):
            config.train.num_workers = count
            loader, sampler, batches_per_epoch = make_loader(config, group, list_path)
            stream = training_batches(loader, sampler, 0, batches_per_epoch)
            next(stream)  # workers started
            start = time.perf_counter()
            for _ in range(batches):
                next(stream)
            rate = batches * batch_size / (time.perf_counter() - start)
            rows.append({"workers": count, "samples_per_s": rate})
            del stream, loader
        return rows


def _now(device: torch.device) -> float:
    _synchronize(device)
    return time.perf_counter()


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``columns`` (floats to 3 significant digits)."""
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "–")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> dict:
    rows = []
    for device_name in args.devices:
        device = torch.device(device_name)
        for passes in args.passes or [default_passes(device)]:
            for compiled in (choice == _compile_label(True) for choice in args.compile):
                rows.append(time_training(device, args.batch_size, False, args.steps, passes=passes, compiled=compiled))
                if device.type == "cuda" and not args.eager:
                    rows += [time_training(device, args.batch_size, True, args.steps, precision, passes, compiled)
                             for precision in args.precisions]
    print(_table(rows, ["device", "batch_size", "mode", "precision", "passes", "compile",
                        *(f"{name}_ms" for name in PHASES), "phases_total_ms", "step_ms", "steps_per_s", "host_syncs",
                        "optimizer_host_syncs", "peak_memory_gib", "setup_s"]))
    return {"train": rows}


def run_profile(args: argparse.Namespace) -> dict:
    phases, top = [], []
    for device_name in args.devices:
        result = profile_training(torch.device(device_name), args.batch_size, args.steps, args.top, args.trace,
                                  precision=args.precision, passes=args.passes, compiled=args.compile)
        phases += result["phases"]
        top += result["top"]
    print(_table(phases, ["device", "batch_size", "precision", "passes", "compile", "phase", "device_ms", "calls"]))
    print()
    shown = [{**row, "name": _shorten(row["name"], PROFILE_NAME_WIDTH)} for row in top]
    print(_table(shown, ["device", "name", "op", "calls", "ms_per_step", "mean_us", "share_pct"]))
    return {"profile_phases": phases, "profile_top": top}


def run_eval(args: argparse.Namespace) -> dict:
    rows = [row for device in args.devices
            for row in time_eval(torch.device(device), args.eval_batch_sizes, args.precisions, args.repeats)]
    columns = ["device", "batch_size", "eager_ms", *(f"graph_{precision}_ms" for precision in args.precisions),
               "graph_peak_memory_gib"]
    print(_table(rows, columns))
    return {"eval": rows}


def run_loader(args: argparse.Namespace) -> dict:
    rows = time_loader(args.data_root, args.workers, args.batch_size, args.loader_batches, args.train_samples)
    print(_table(rows, ["workers", "samples_per_s"]))
    return {"loader": rows}


def run_all(args: argparse.Namespace) -> dict:
    return {**run_train(args), **run_eval(args), **run_loader(args)}


def _default_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run_objective(args: argparse.Namespace) -> dict:
    rows = time_objective(args.devices, args.batch_sizes, args.repeats)
    print(f"{'device':<8}{'batch':>6}{'batched s':>12}{'looped s':>12}{'speed-up':>10}")
    for row in rows:
        speed_up = row["looped_s"] / row["batched_s"]
        print(f"{row['device']:<8}{row['batch_size']:>6}{row['batched_s']:>12.3f}{row['looped_s']:>12.3f}{speed_up:>9.2f}x")
    return {"objective": rows}


def build_parser() -> argparse.ArgumentParser:
    """The subcommands, each with only the options it uses: small parent parsers of the options
    some share (each option's help names the part of ``all`` that uses it)."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    output, devices, batch, repeats, precisions, train, evaluation, loader = (
        argparse.ArgumentParser(add_help=False) for _ in range(8))
    output.add_argument("--json", type=output_file, default=None, metavar="FILE",
                        help="also write the results to FILE")
    devices.add_argument("--devices", nargs="+", default=_default_devices(), help="default: cpu, and cuda when present")
    batch.add_argument("--batch-size", type=positive_int, default=4, help="training batch (default 4)")
    repeats.add_argument("--repeats", type=positive_int, default=10,
                         help="eval: timed runs per batch size, after one warm-up (default 10)")
    precisions.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS,
                            help="train, eval: graph-replay precisions timed on CUDA")
    train.add_argument("--steps", type=positive_int, default=20, help="train: timed training steps per mode (default 20)")
    train.add_argument("--eager", action="store_true", help="train: skip the CUDA-graph mode")
    train.add_argument("--passes", nargs="+", default=None, choices=PASSES,
                       help="train: the forward's two passes as two calls and/or one batch (JOINT_PASSES=1); "
                            "default: as training runs them on each device")
    train.add_argument("--compile", nargs="+", default=[_compile_label(False)], choices=COMPILE_CHOICES,
                       help="train: SFNet eager and/or compiled by torch.compile (COMPILE=1; compiling takes minutes)")
    evaluation.add_argument("--eval-batch-sizes", type=positive_int, nargs="+", default=[1, 8, 32],
                            help="eval: batch sizes timed (default 1 8 32)")
    loader.add_argument("--workers", type=non_negative_int, nargs="+", default=[0, 1, 2],
                        help="loader: DataLoader worker counts (default 0 1 2)")
    loader.add_argument("--loader-batches", type=positive_int, default=20,
                        help="loader: batches timed per worker count (default 20)")
    loader.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="loader: a data root in the release layout, its training files scanned "
                             "(default: a synthetic dataset in a temporary folder)")

    subcommands = parser.add_subparsers(dest="command", required=True)
    objective = subcommands.add_parser("objective", parents=[devices, output],
                                       help="forward+backward of DHFRObjective, batched vs per-image loop")
    objective.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[4, 16], help="default 4 16")
    objective.add_argument("--repeats", type=positive_int, default=3,
                           help="timed runs per case, after one warm-up (default 3)")
    objective.set_defaults(run=run_objective)
    profile_command = subcommands.add_parser(
        "profile", parents=[devices, batch, output],
        help="eager training step under torch.profiler: time per phase, top kernels (ops on CPU)")
    profile_command.add_argument("--steps", type=positive_int, default=3,
                                 help="profiled training steps, after the warm-up (default 3)")
    profile_command.add_argument("--top", type=positive_int, default=25,
                                 help="kernels (ops on CPU) listed, most device time first (default 25)")
    profile_command.add_argument("--trace", type=Path, default=None, metavar="DIR", help="also write a Chrome trace to DIR")
    profile_command.add_argument("--precision", default="fp32", choices=PRECISIONS, help="training precision (CUDA only)")
    profile_command.add_argument("--passes", default=None, choices=PASSES,
                                 help="the training forward's two passes: two calls or one batch (JOINT_PASSES=1); "
                                      "default: as training runs them on the device")
    profile_command.add_argument("--compile", action="store_true", help="profile the step with SFNet compiled (COMPILE=1)")
    profile_command.set_defaults(run=run_profile)
    for name, run, description, parents in (
        ("train", run_train, "training step: phases, steps/s, host syncs, peak memory (eager and CUDA graph)",
         [devices, batch, precisions, train]),
        ("eval", run_eval, "eval forward: eager and, on CUDA, the graph replay per precision",
         [devices, repeats, precisions, evaluation]),
        ("loader", run_loader, "augmented training samples per second per DataLoader worker count (CPU)",
         [batch, loader]),
        ("all", run_all, "train, eval and loader", [devices, batch, repeats, precisions, train, evaluation, loader]),
    ):
        subcommands.add_parser(name, parents=[*parents, output], help=description).set_defaults(run=run)
    return parser


def _compiles(args: argparse.Namespace) -> bool:
    """Whether the command compiles SFNet: ``profile --compile``, or ``on`` among ``train --compile``."""
    choice = getattr(args, "compile", False)
    return choice if isinstance(choice, bool) else _compile_label(True) in choice


def loader_samples(parser: argparse.ArgumentParser, data_root: Path | None, batch_size: int) -> list[TrainSample] | None:
    """The training samples of ``--data-root`` (scanned here, once), or None for the synthetic dataset;
    stops with one line on a data root that is not a folder or holds less than one ``--batch-size`` batch."""
    if data_root is None:
        if batch_size > SYNTHETIC_TRAIN_SAMPLES:
            parser.error(f"--batch-size {batch_size}: the synthetic dataset of the loader benchmark has "
                         f"{SYNTHETIC_TRAIN_SAMPLES} samples; give a --data-root with more")
        return None
    if not data_root.is_dir():
        parser.error(f"--data-root {data_root}: {'not a folder' if data_root.exists() else 'folder not found'}")
    try:
        samples = scan_train_samples(data_root)
    except DataError as error:
        parser.error(f"--data-root {data_root}: {error}")
    if len(samples) < batch_size:
        parser.error(f"--data-root {data_root}: {len(samples)} training samples make no batch of --batch-size {batch_size}")
    return samples


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with one line (exit status 2), before anything is built, on a device this machine does not
    have, on ``profile --precision`` other than fp32 off CUDA (training precisions need a GPU), on
    ``--compile`` where Inductor lacks its code generator, on a ``--trace`` folder that cannot be
    written and on the loader's data (:func:`loader_samples`, kept as ``args.train_samples``).
    Numbers and the ``--json`` file are checked by the parser's types."""
    for name in getattr(args, "devices", []):
        try:
            device = torch.device(name)
        except RuntimeError:
            parser.error(f"--devices {name}: not a device (cpu, cuda or cuda:N)")
        if device.type not in ("cpu", "cuda"):
            parser.error(f"--devices {name}: not a device (cpu, cuda or cuda:N)")
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error(f"--devices {name}: no CUDA device on this machine")
        if _compiles(args):
            try:
                check_compile_support(device.type)
            except CompileUnavailableError as error:
                parser.error(f"--compile: {error} (--devices {name})")
        precision = getattr(args, "precision", "fp32")  # profile's; train and eval time --precisions on CUDA only
        try:
            check_precision_device(precision, device.type, f"--precision {precision}")
        except ValueError as error:
            parser.error(f"{error} (--devices {name})")
    if getattr(args, "trace", None) is not None and (problem := output_folder_problem(args.trace)) is not None:
        parser.error(f"--trace {args.trace}: {problem}")
    if hasattr(args, "workers"):  # loader, all
        args.train_samples = loader_samples(parser, args.data_root, args.batch_size)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    results = args.run(args)
    if args.json:
        try:
            atomic_write_text(json.dumps(results, indent=2) + "\n", args.json)
        except WriteError as error:  # checked up front; a full disk or a folder removed meanwhile
            parser.exit(1, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(exit_status(main, "speed.py"))
