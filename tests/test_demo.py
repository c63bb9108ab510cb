"""bashscripts/demo.sh checks its device before it generates anything (the demo itself runs for
minutes and is run by hand, README "Quickstart")."""
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
    demo_dir = tmp_path / "demo"
    run = subprocess.run(["bash", "bashscripts/demo.sh"], cwd=repo_root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable, "DEMO_GPU": demo_gpu, "DEMO_DIR": str(demo_dir)})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [message]
    assert not demo_dir.exists()
