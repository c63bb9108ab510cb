"""A check of every training sample before the first step (docs/method.md §3.1, §3.2).

Each sample is read as the training loader reads it: every file must exist and decode, the
scribble may only hold 0/1/2, and the RGB image must be larger than the crop border on both
sides. Maps whose size differs from the RGB image are repaired by the loader (resized to
it), so they are reported as repairs, not errors. Samples are checked in parallel processes
with a progress bar; every bad file is reported before one :class:`DataError` stops the run.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib.cpus import available_cpus
from lib.io import atomic_write_text
from spml.data.errors import DataError, collect_repairs, log_repair_once
from spml.data.image_io import read_depth, read_gray, read_rgb, read_scribble, size_repair
from spml.data.lists import TrainSample
from spml.data.transforms import CROP_BORDER

logger = logging.getLogger("spml.data")

SHOWN_PROBLEMS = 10  # problems quoted in the error message; all of them go to the log and the report
_CHUNK = 16


class SampleCheck(NamedTuple):
    """What reading one sample found: unusable files (one line each) and repairs ``(path, repair)``."""

    problems: list[str]
    repairs: list[tuple[str, str]]


def check_training_sample(sample: TrainSample) -> SampleCheck:
    """Read every file of ``sample`` as the training loader does and say what is wrong with it."""
    problems: list[str] = []
    with collect_repairs() as repairs:
        rgb_size = None
        try:
            height, width = read_rgb(sample.rgb).shape[:2]
            rgb_size = (height, width)
            if min(height, width) <= CROP_BORDER:
                problems.append(f"RGB image too small for the training crop: {sample.rgb} "
                                f"({width}x{height}, both sides must exceed {CROP_BORDER} px)")
        except DataError as error:
            problems.append(str(error))
        for path, reader in ((sample.depth, read_depth), (sample.scribble, read_scribble),
                             (sample.hed, read_gray), (sample.contour, read_gray)):
            try:
                shape = reader(path).shape
            except DataError as error:
                problems.append(str(error))
                continue
            repair = size_repair(shape, *rgb_size) if rgb_size else None
            if repair is not None:
                log_repair_once(path, repair)
    return SampleCheck(problems, list(repairs))


def validate_training_samples(samples: Sequence[TrainSample], workers: int | None = None,
                              report_path: str | os.PathLike | None = None) -> None:
    """Check every sample (:func:`check_training_sample`) with ``workers`` processes (default:
    every available core), showing a progress bar; log each repair once.

    If any file is unusable, one :class:`DataError` says how many there are and quotes them:
    all of them up to :data:`SHOWN_PROBLEMS`, else the first ones and where the rest are
    (``report_path`` lists every problem, one per line, when given; else the rest are logged).
    """
    workers = max(1, min(workers or available_cpus(), len(samples)))
    problems: list[str] = []
    with logging_redirect_tqdm(), tqdm(total=len(samples), desc="checking training data", unit="sample",
                                       leave=False) as progress:
        checks = _run(samples, workers, progress)
        for check in checks:
            problems += check.problems
            for path, repair in check.repairs:
                log_repair_once(path, repair)
    if not problems:
        logger.info("checked %d training samples: every file is readable", len(samples))
        return
    where = ""
    if report_path is not None:
        atomic_write_text("\n".join(problems) + "\n", report_path)
        where = f" (all listed in {report_path})"
    elif len(problems) > SHOWN_PROBLEMS:
        for problem in problems[SHOWN_PROBLEMS:]:
            logger.error("%s", problem)
        where = " (the others logged above)"
    shown = "; ".join(problems[:SHOWN_PROBLEMS]) + ("; ..." if len(problems) > SHOWN_PROBLEMS else "")
    raise DataError(f"{len(problems)} unusable training file(s) in {len(samples)} samples{where}: {shown}")


def _run(samples: Sequence[TrainSample], workers: int, progress: tqdm) -> list[SampleCheck]:
    """The checks of ``samples`` in order, from a process pool (or this process for one worker)."""
    checks = []
    if workers == 1:
        for sample in samples:
            checks.append(check_training_sample(sample))
            progress.update()
        return checks
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for check in pool.map(check_training_sample, samples, chunksize=_CHUNK):
            checks.append(check)
            progress.update()
    return checks

