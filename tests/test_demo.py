"""bashscripts/demo.sh checks its device, its numbers and the spelling of the variables before it
generates anything (the demo itself runs for minutes and is run by hand, README "Quickstart")."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("demo_gpu, message", [
    ("gpu0", "bashscripts/demo.sh: error: DEMO_GPU=gpu0: expected a GPU index such as 0, or cpu"),
    # CUDA drops an index that does not exist, so GPU 99 is absent on any machine.
    ("99", "bashscripts/demo.sh: error: DEMO_GPU=99: torch sees no CUDA GPU on this machine "
           "(`nvidia-smi -L` lists its GPUs; DEMO_GPU=cpu runs on the CPU)"),
])
def test_a_device_the_demo_cannot_use_stops_it_before_anything_is_written(repo_root, tmp_path, demo_gpu, message):
    _assert_refused(repo_root, tmp_path, {"DEMO_GPU": demo_gpu}, message)


@pytest.mark.parametrize("variables, message", [
    ({"DEMO_ITERATION": "5"}, "error: DEMO_ITERATION=5: not a setting of the launchers; did you mean DEMO_ITERATIONS? "
                              "(unset DEMO_ITERATION)"),
    ({"DEMO_ITERATIONS": "five"}, "bashscripts/demo.sh: error: DEMO_ITERATIONS=five: expected a positive integer, "
                                  "got 'five'"),
    ({"DEMO_NUM_TEST": "0"}, "bashscripts/demo.sh: error: DEMO_NUM_TEST=0: expected a positive integer, got '0'"),
    ({"DEMO_LR": "0"}, "bashscripts/demo.sh: error: DEMO_LR=0: expected a number > 0, got '0'"),
])
def test_a_bad_or_misspelt_variable_stops_the_demo_before_anything_is_written(repo_root, tmp_path, variables, message):
    _assert_refused(repo_root, tmp_path, {"DEMO_GPU": "cpu", **variables}, message)


def _assert_refused(repo_root, tmp_path, variables: dict[str, str], message: str) -> None:
    demo_dir = tmp_path / "demo"
    run = subprocess.run(["bash", "bashscripts/demo.sh"], cwd=repo_root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable, "DEMO_DIR": str(demo_dir), **variables})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [message]
    assert not demo_dir.exists()
