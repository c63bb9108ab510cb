"""Score tables of all test sets: ``scores.md``, ``scores.csv`` and ``scores.json`` (atomic writes).

``scores`` maps a set name to the dict of :meth:`SaliencyScores.results`, in the order the sets
were scored; the JSON is exactly ``{SET: {"S", "maxF", ..., "MAE", "n"}}``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from lib.io import atomic_write_text
from spml.evaluation.scores import SCORE_KEYS

Scores = dict[str, dict[str, float | int]]


def _cells(row: dict[str, float | int]) -> list[str]:
    return [str(row[key]) if key == "n" else f"{row[key]:.4f}" for key in SCORE_KEYS]


def markdown_table(scores: Scores, protocol: str) -> str:
    """The scores as a Markdown table, values to 4 decimals, with the protocol in its caption."""
    lines = [
        f"Scores ({protocol} protocol)",
        "",
        "| set | " + " | ".join(SCORE_KEYS) + " |",
        "|---|" + "---:|" * len(SCORE_KEYS),
    ]
    lines += [f"| {name} | " + " | ".join(_cells(row)) + " |" for name, row in scores.items()]
    return "\n".join(lines) + "\n"


def csv_table(scores: Scores) -> str:
    """The scores as CSV with full precision, one row per set."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["set", *SCORE_KEYS])
    for name, row in scores.items():
        writer.writerow([name, *(row[key] for key in SCORE_KEYS)])
    return buffer.getvalue()


def write_score_tables(scores: Scores, save_dir: str | os.PathLike, protocol: str) -> list[Path]:
    """Write ``scores.md``, ``scores.csv`` and ``scores.json`` under ``save_dir``; return their paths."""
    save_dir = Path(save_dir)
    contents = {
        "scores.md": markdown_table(scores, protocol),
        "scores.csv": csv_table(scores),
        "scores.json": json.dumps({name: {key: row[key] for key in SCORE_KEYS} for name, row in scores.items()}, indent=2)
        + "\n",
    }
    for name, text in contents.items():
        atomic_write_text(text, save_dir / name)
    return [save_dir / name for name in contents]
