"""``bench/gpu_smoke.py --cpu-small``: the GPU proof's whole sequence (released-layout folder
through load_generator, encoding, decode, GAPO and SFT steps, train + resume, generation with the
saved LoRA) runs on CPU, so the script a GPU host runs is known to work before it gets there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_smoke_runs_in_its_cpu_small_mode():
    done = subprocess.run(
        [sys.executable, "bench/gpu_smoke.py", "--cpu-small"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert "resumed at" in table and "step 3 of 3" in table
    assert "1 video(s), sampler dpm" in table
    for row in ("encoding phase", "full decode", "GAPO seconds/step", "SFT seconds/step"):
        assert row in table
