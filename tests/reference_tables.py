"""Readers for the TSV tables and the float32 tolerance table of ``../shared/reference``."""
from __future__ import annotations

import re
from pathlib import Path


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header line, as dicts."""
    header, *lines = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines if line]


def parse_shape(text: str) -> tuple[int, ...]:
    """``'96x3x4x4'`` -> ``(96, 3, 4, 4)``; ``'scalar'`` -> ``()``."""
    return () if text == "scalar" else tuple(int(d) for d in text.split("x"))


def float32_tolerances(readme: Path) -> dict[str, float]:
    """Per-output max |diff| of the reference float32 run, from ../shared/reference/README.md §5's table."""
    section = readme.read_text().split("**Float32 tolerance.**", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([0-9.]+e-?\d+)", section, flags=re.MULTILINE)
    return {name: float(value) for name, value in rows}


def float32_loss_tolerance(readme: Path) -> float:
    """Largest |float32 − float64| of a loss in the reference's float32 run of the loss pipeline (README §6)."""
    section = readme.read_text().split("**Float32 tolerance for the loss pipeline.**", 1)[1]
    return float(re.search(r"differed from the float64 ones by at most ([0-9.]+e-?\d+)", section.replace("\n", " ")).group(1))
