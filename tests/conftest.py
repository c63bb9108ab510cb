"""Shared test fixtures: locations of the repository and of ``../shared``, the deterministic model, logging restored."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spml.training.settings import misspelt_variables

# Launchers started by any test run this interpreter, activated virtual environment or not.
os.environ["PYTHON"] = sys.executable
# A variable of this machine's environment that the launchers would take for a misspelt setting
# (say COMPILER, close to COMPILE) must not stop the tests' launchers: the tests set what they need.
for _name in misspelt_variables(os.environ):
    del os.environ[_name]

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


@pytest.fixture(scope="session")
def deterministic_model():
    """The network with the deterministic weights of ../shared/reference/README.md §1, built once
    per session, in eval mode. Shared: a test that trains or changes it works on a ``copy.deepcopy``."""
    from deterministic_weights import deterministic_state_dict
    from network import build_model

    model = build_model()
    model.load_state_dict(deterministic_state_dict(model))
    return model.eval()


@pytest.fixture(scope="session")
def deterministic_checkpoint(deterministic_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`deterministic_model` saved once per session with ``network.save_checkpoint`` (release layout)."""
    from network import save_checkpoint

    path = tmp_path_factory.mktemp("checkpoint") / "model-1.pth"
    save_checkpoint(deterministic_model, path)
    return path


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """For a test that calls ``lib.logging.setup_logging`` in this process: afterwards the root
    logger's handlers and level are as before and warnings are no longer routed to logging (left
    on, a later test's ``setup_logging`` could not route them again)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    root.handlers[:], root.level = saved
