"""Fixture ``deterministic_checkpoint``: the network with the deterministic test weights, saved
with ``network.save_checkpoint`` (release layout) once per test module."""
from __future__ import annotations

from pathlib import Path

import pytest

from deterministic_weights import deterministic_state_dict
from network import build_model, save_checkpoint


@pytest.fixture(scope="module")
def deterministic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model()
    model.load_state_dict(deterministic_state_dict(model))
    path = tmp_path_factory.mktemp("checkpoint") / "model-1.pth"
    save_checkpoint(model, path)
    return path
