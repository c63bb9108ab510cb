"""Scribble RGB-D data (docs/method.md §3): image reading, list files, preprocessing and datasets."""
from spml.data.errors import DataError

__all__ = ["DataError"]
