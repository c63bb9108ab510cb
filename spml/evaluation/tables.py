"""Score tables: ``scores.md``, ``scores.csv`` and ``scores.json`` (atomic writes).

``scores`` maps a row name to one row of values, in display order. The test score has one
row per test set (the dict of :meth:`SaliencyScores.results`); the method comparison has one
table per set with one row per method, and extra count columns. A row that is ``None``, or
a value that is ``None`` or absent, is shown as :data:`ABSENT` ("–") in Markdown and CSV and
is ``null`` in JSON. With the defaults the JSON is exactly ``{ROW: {"S", "maxF", ..., "MAE", "n"}}``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lib.io import atomic_write_text
from spml.evaluation.scores import SCORE_KEYS

Value = float | int | None
Row = Mapping[str, Value] | None
Scores = Mapping[str, Row]
ABSENT = "–"
TABLE_FILES = ("scores.md", "scores.csv", "scores.json")


def _value(row: Row, key: str) -> Value:
    return None if row is None else row.get(key)


def format_cell(value: Value) -> str:
    """Markdown cell: integers as they are, floats to 4 decimals, a missing value as "–"."""
    if value is None:
        return ABSENT
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def markdown_table(
    scores: Scores, protocol: str, row_label: str = "set", columns: Sequence[str] = SCORE_KEYS, title: str = "Scores"
) -> str:
    """The scores as a Markdown table, values to 4 decimals, with the protocol in its caption."""
    lines = [
        f"{title} ({protocol} protocol)",
        "",
        f"| {row_label} | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    lines += [f"| {name} | " + " | ".join(format_cell(_value(row, key)) for key in columns) + " |"
              for name, row in scores.items()]
    return "\n".join(lines) + "\n"


def csv_table(scores: Scores, row_label: str = "set", columns: Sequence[str] = SCORE_KEYS) -> str:
    """The scores as CSV with full precision, one row per entry ("–" where absent)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([row_label, *columns])
    for name, row in scores.items():
        writer.writerow([name, *(ABSENT if _value(row, key) is None else _value(row, key) for key in columns)])
    return buffer.getvalue()


def json_table(scores: Scores, columns: Sequence[str] = SCORE_KEYS) -> str:
    """The scores as JSON ``{ROW: {column: value}}``, an absent row as ``null``."""
    rows = {name: None if row is None else {key: row.get(key) for key in columns} for name, row in scores.items()}
    return json.dumps(rows, indent=2) + "\n"


def write_score_tables(
    scores: Scores,
    save_dir: str | os.PathLike,
    protocol: str,
    row_label: str = "set",
    columns: Sequence[str] = SCORE_KEYS,
    title: str = "Scores",
) -> list[Path]:
    """Write ``scores.md``, ``scores.csv`` and ``scores.json`` under ``save_dir``; return their paths."""
    save_dir = Path(save_dir)
    contents = (
        markdown_table(scores, protocol, row_label, columns, title),
        csv_table(scores, row_label, columns),
        json_table(scores, columns),
    )
    for name, text in zip(TABLE_FILES, contents):
        atomic_write_text(text, save_dir / name)
    return [save_dir / name for name in TABLE_FILES]
