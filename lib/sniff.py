"""What a file obviously is, from its first bytes: empty, an HTML page, a zip archive."""
from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 512
ZIP_MAGIC = b"PK\x03\x04"
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer for a shorter file)."""
    with open(path, "rb") as file:
        return file.read(size)


def looks_like_html(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a web page (e.g. a download site's warning)."""
    return head.lstrip().lower().startswith(_HTML_STARTS)
