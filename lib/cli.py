"""Command-line parsing that answers a bad flag with one line: ``prog: error: argument --flag: ...``."""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import NoReturn

from lib.io import output_file_problem

USAGE_ERROR = 2  # exit status of a usage or input error
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse ``type``: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def output_file(text: str) -> Path:
    """argparse ``type``: a file to write into an existing, writable folder, not a folder itself
    (:func:`lib.io.output_file_problem`); checked when the arguments are parsed, nothing created."""
    problem = output_file_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return Path(text)


def device_name(text: str) -> str:
    """argparse ``type``: ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is present is checked later)."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
