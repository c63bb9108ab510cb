"""Shared test fixtures: locations of the repository and of ``../shared``."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def _shared_dir(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        pytest.skip(f"{path} is absent: these tests need the shared fixtures beside the repository")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``: numerical fixtures from the authors' release."""
    return _shared_dir("reference")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data``: real RGB-D samples and pysodmetrics fixtures."""
    return _shared_dir("data")
