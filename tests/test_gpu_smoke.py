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
    assert "anisora plan: expected clips/s on one H100" in table


def test_the_anisora_plan_counts_the_released_architectures():
    """Parameter counts of the meta-built released architectures against their published
    sizes: SAM 2.1 Hiera-B+ 80.8 M, GroundingDINO-base ~233 M, BLIP ViT-L/16 ~304 M, the
    Idefics2-8B-based regressors ~8 B; bf16 memory is 2 bytes a parameter."""
    from scoring.anime_reward.anisora.plan import anisora_reward_plan, plan_rows

    plan = {m.name.split(" (")[0]: m for m in anisora_reward_plan()}
    assert round(plan["SAM 2.1 Hiera-B+"].params / 1e6, 1) == 80.9
    assert 232e6 < plan["GroundingDINO-base"].params < 234e6
    assert 303e6 < plan["BLIP ViT-L/16 IP recogniser"].params < 305e6
    regressor = plan["Mantis-8B-Idefics2 regressor"]
    assert 8.0e9 < regressor.params < 8.5e9
    assert regressor.bf16_gib == regressor.params * 2 / 2**30
    rows = dict(plan_rows(list(plan.values())))
    assert "clips/s" in rows["anisora plan: expected clips/s on one H100"]
