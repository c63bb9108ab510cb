"""Scribble RGB-D data (SPEC §3): image reading, list files, preprocessing and datasets."""
from spml.data.errors import DataError

__all__ = ["DataError"]
